"""Shared by compare_reference.py and compare_freesound_reference.py: arguments and the report.

The report (JSON) compares every descriptor of Essentia's extractor with our output:
"missing" (not in ours), "extra" (only in ours), and per descriptor "rel"/"abs" differences,
"equal" for strings, or "shape" for a shape mismatch. With several reference runs, "self" is
the range of the reference's own values relative to its first run (which "rel" and "abs"
compare against): Essentia is not deterministic on audio with digital silence.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

from runner.tree import flatten


def parse(argv: list[str], params: dict[str, str], flags: tuple[str, ...] = ()
          ) -> tuple[str, int, set[str], list[str], dict[str, Any]]:
    """AUDIO [--runs N] [flags] [--set KEY=VALUE ...] -> path, runs, flags, overrides, params.

    ``params`` maps our option names to the reference extractor's parameters, so both sides
    get the same settings.
    """
    path, rest = argv[0], list(argv[1:])
    runs = 1
    if "--runs" in rest:
        at = rest.index("--runs")
        runs = int(rest[at + 1])
        del rest[at:at + 2]
    given = {f for f in flags if f in rest}
    overrides = [a for a in rest if a != "--set" and a not in flags]
    converted = {}
    for item in overrides:
        key, value = item.split("=", 1)
        converted[params[key]] = _value(value)
    return path, runs, given, overrides, converted


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def compare(refs: list[Any], doc: dict[str, Any]) -> dict[str, Any]:
    """Compare reference pools (one per run) with our nested output."""
    ref, ours = refs[0], flatten(doc)
    report: dict[str, Any] = {
        "missing": [], "diff": {}, "extra": sorted(set(ours) - set(ref.descriptorNames())),
    }
    for name in ref.descriptorNames():
        if name not in ours:
            report["missing"].append(name)
            continue
        r, o = ref[name], ours[name]
        if isinstance(r, str) or (isinstance(r, list) and r and isinstance(r[0], str)):
            report["diff"][name] = {"equal": r == o, "ref": r, "ours": o}
            continue
        r = np.asarray(r, dtype=float)
        o = np.asarray(o, dtype=float)
        if r.shape != o.shape:
            report["diff"][name] = {"shape": [list(r.shape), list(o.shape)]}
            continue
        scale = np.maximum(np.abs(r), 1e-6)
        self_rel = 0.0
        runs_of = [np.asarray(other[name], dtype=float) for other in refs]
        if any(a.shape != r.shape for a in runs_of):
            self_rel = float("inf")
        elif r.size and len(runs_of) > 1:
            stacked = np.stack(runs_of)
            self_rel = float(np.max((stacked.max(axis=0) - stacked.min(axis=0)) / scale))
        report["diff"][name] = {
            "rel": float(np.max(np.abs(r - o) / scale)) if r.size else 0.0,
            "abs": float(np.max(np.abs(r - o))) if r.size else 0.0,
            "self": self_rel,
        }
    return report


def emit(report: dict[str, Any]) -> None:
    """Print the report and leave without tearing down Essentia's C++ objects."""
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)


# Statistics that are draws from the noise Essentia adds to silent frames (see the tests).
NOISE_DRAWN = frozenset(
    {"min", "max", "var", "stdev", "dmean", "dvar", "dmean2", "dvar2", "cov", "icov"})
VERSION_KEYS = frozenset({"metadata.version.extractor"})  # names this runner, by design
FRAME_STATS = NOISE_DRAWN | {"mean", "median"}
# With digital silence a third of the gap file's frames are noise, so even a mean or median can
# move with the noise although the reference's own runs happened to agree: seen 2.1e-3
# (lowlevel.melbands_kurtosis.median, 1 comparison in 20 with 8 reference runs all equal).
NOISY_FRAME_FLOOR = 1e-2


def problems(report: dict[str, Any], limit_for: Any, noisy: bool, abs_floor: float,
             abs_floors: dict[str, float] | None = None) -> list[str]:
    """Descriptors of a report that disagree beyond ``limit_for(name)`` (relative).

    With ``noisy``, statistics drawn from the noise (NOISE_DRAWN) are skipped, even where the
    reference's own runs happened to agree (one more run can still draw a noise frame beyond
    them: seen in CI, freesound barkbands_skewness.min 1.4e-2 apart with 8 equal runs);
    every other limit grows by 10x the reference's own range, and statistics of frames are
    allowed at least NOISY_FRAME_FLOOR. Differences below
    ``abs_floor`` (absolute; ``abs_floors`` for the descriptors named there) never count.
    """
    found = []
    for name, d in report["diff"].items():
        if name in VERSION_KEYS:
            continue
        if "equal" in d:
            if not d["equal"]:
                found.append(f"{name}: {d['ref']!r} != {d['ours']!r}")
            continue
        if "shape" in d:
            found.append(f"{name}: shape {d['shape']}")
            continue
        limit = limit_for(name)
        if noisy:
            if name.rsplit(".", 1)[-1] in NOISE_DRAWN:
                continue
            limit += 10 * d["self"]
            if name.rsplit(".", 1)[-1] in FRAME_STATS:
                limit = max(limit, NOISY_FRAME_FLOOR)
        if d["rel"] > limit and d["abs"] > (abs_floors or {}).get(name, abs_floor):
            found.append(f"{name}: relative difference {d['rel']:.2e} > {limit:.2e}")
    return found
