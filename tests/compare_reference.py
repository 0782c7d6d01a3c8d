"""Run essentia.standard.MusicExtractor and our music profile on one file; print a JSON report.

Runs in its own process (tests call it with subprocess) so each comparison starts clean.
Usage: python tests/compare_reference.py AUDIO [--runs N] [--set KEY=VALUE ...]

With --runs N, MusicExtractor runs N times and the report also gives, per descriptor, how far
its own runs disagree ("self"): it is not deterministic on audio with digital silence.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def main() -> None:
    import essentia
    import essentia.standard as std

    from runner.extract import Extractor

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    path = sys.argv[1]
    rest = sys.argv[2:]
    runs = 1
    if "--runs" in rest:
        at = rest.index("--runs")
        runs = int(rest[at + 1])
        del rest[at:at + 2]
    overrides = [a for a in rest if a != "--set"]
    params = {}
    for item in overrides:  # the same settings, given to MusicExtractor as parameters
        key, value = item.split("=", 1)
        params[{"options.lowlevel.frameSize": "lowlevelFrameSize",
                "options.lowlevel.hopSize": "lowlevelHopSize",
                "options.analysisSampleRate": "analysisSampleRate",
                "options.startTime": "startTime",
                "options.endTime": "endTime",
                "options.rhythm.method": "rhythmMethod",
                "options.lowlevel.silentFrames": "lowlevelSilentFrames",
                "options.tonal.silentFrames": "tonalSilentFrames"}[key]] = (
            value if not value.replace(".", "").isdigit()
            else (int(value) if value.isdigit() else float(value)))
    refs = [std.MusicExtractor(**params)(path)[0] for _ in range(runs)]
    ref = refs[0]
    doc, _ = Extractor("music", overrides).analyse(path)
    ours = flatten(doc)
    report = {"missing": [], "diff": {}, "extra": sorted(set(ours) - set(ref.descriptorNames()))}
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
        for other in refs[1:]:
            a = np.asarray(other[name], dtype=float)
            if a.shape == r.shape and r.size:
                self_rel = max(self_rel, float(np.max(np.abs(a - r) / scale)))
        report["diff"][name] = {
            "rel": float(np.max(np.abs(r - o) / scale)) if r.size else 0.0,
            "abs": float(np.max(np.abs(r - o))) if r.size else 0.0,
            "self": self_rel,
        }
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of Essentia's C++ objects


if __name__ == "__main__":
    main()
