"""Library profiles: a per-track graph, then one summary across tracks.

The per-track outputs are made by the batch engine into a folder beside the summary (so they
are reused, resumed and isolated like any batch), then the values the profile's ``summary``
section names are aggregated across tracks with Essentia's PoolAggregator.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from runner import __version__, registry
from runner.batch import BatchResult, Job, Words
from runner.errors import ProfileError
from runner.output import render, validate_output, write_atomic
from runner.pools import pool_values, to_plain
from runner.profile import Profile, did_you_mean, load_schema
from runner.tree import flatten

# how the summary command names its counts: "3 analysed, 2 reused, 0 failed"
SUMMARY_WORDS = Words(done="analysed", skipped="reused",
                      claimed="left out: claimed by another run")


def summary_section(profile: Profile) -> dict[str, Any]:
    """The profile's ``summary`` section, its names checked: what ``joint_distributions``
    and ``total_duration`` refer to must be named in ``distributions`` and ``descriptors``
    (a renamed value would otherwise silently drop out of the summary)."""
    spec = profile.data.get("summary")
    if not spec:
        raise ProfileError(f"'{profile.name}' is not a library profile (it has no 'summary' "
                           "section)", source=profile.source)
    counted = spec.get("distributions") or {}
    for name, parts in (spec.get("joint_distributions") or {}).items():
        for part in parts:
            if part not in counted:
                raise profile.error(("summary", "joint_distributions", name),
                                    f"'{part}' is not one of the distributions "
                                    f"({', '.join(counted) or 'none'})",
                                    hint=did_you_mean(part, counted))
    duration = spec.get("total_duration")
    named = spec.get("descriptors") or {}
    if duration is not None and duration not in named:
        raise profile.error(("summary", "total_duration"), f"'{duration}' is not one of the "
                            "descriptors", hint=did_you_mean(duration, named))
    return spec



def summarise(profile: Profile, digest: str, jobs: list[Job], batch: BatchResult
              ) -> dict[str, Any]:
    """The summary document of the per-track outputs of ``jobs``."""
    spec = summary_section(profile)
    stats = spec.get("statistics") or ["mean", "stdev", "median", "min", "max"]
    names: dict[str, str] = spec.get("descriptors") or {}
    counted: dict[str, str] = spec.get("distributions") or {}
    # another run's files (claimed) may not be written yet, or be older outputs: left out
    failed = {str(o.job.input) for o in batch.failures + batch.claimed}
    rows: list[dict[str, Any]] = []
    for job in jobs:
        if str(job.input) in failed or not job.output.exists():
            continue
        flat = flatten(json.loads(job.output.read_text(encoding="utf-8")))
        row: dict[str, Any] = {"path": str(job.input)}
        for short, path in {**names, **counted}.items():
            if path in flat:
                row[short] = flat[path]
        rows.append(row)
    essentia = registry.quiet_essentia()
    pool = essentia.Pool()
    for row in rows:
        for short in names:
            value = row.get(short)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                pool.add(short, float(value))
    statistics: dict[str, dict[str, Any]] = {stat: {} for stat in stats}
    present = pool.descriptorNames()
    if present:
        aggregated = essentia.standard.PoolAggregator(
            defaultStats=[], exceptions={name: list(stats) for name in present})(pool)
        for key, value in pool_values(aggregated).items():
            name, _, stat = key.rpartition(".")
            statistics[stat][name] = to_plain(value)
    distributions = {
        short: dict(Counter(str(row[short]) for row in rows if short in row).most_common())
        for short in counted
    }
    for name, parts in (spec.get("joint_distributions") or {}).items():  # e.g. key_scale
        distributions[name] = dict(Counter(
            " ".join(str(row[part]) for part in parts) for row in rows
            if all(part in row for part in parts)).most_common())
    duration_name = spec.get("total_duration")
    duration = sum(float(row.get(duration_name, 0.0)) for row in rows) if duration_name else 0.0
    return {
        "summary": {
            "tracks": len(rows),
            "failed": len(batch.failures),
            "total_duration": duration,
            "statistics": statistics,
            "distributions": distributions,
            "rows": rows,
        },
        "metadata": {
            "profile": {"name": profile.name, "hash": digest},
            "version": {"essentia": essentia.__version__, "runner": __version__},
        },
    }


def write_summary(doc: dict[str, Any], output: Path) -> None:
    validate_output(doc, load_schema("summary.output.schema.json"), str(output))
    write_atomic(output, render(doc, "json", 2))
