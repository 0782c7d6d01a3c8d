"""Statistics over frames with Essentia's PoolAggregator, then one nested result document."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from runner import registry
from runner.analysis import Analysis
from runner.compile import Plan
from runner.pools import give_back_freed_memory, pool_values, to_plain

# Statistics of one column that do not depend on the others: for these, a wide descriptor can
# be aggregated a band of columns at a time with the same results (cov and icov cannot).
# Why a statistic is undefined (runner.aggregate writes it as null; see Analysis.undefined).
FEW = "too few frames"
CONSTANT = "frames that do not vary"
MATRIX_STATS = frozenset({"cov", "icov"})  # SingleGaussian's: they need every column at once
PER_COLUMN = frozenset({"min", "max", "median", "mean", "var", "stdev", "skew", "kurt",
                        "dmean", "dvar", "dmean2", "dvar2"})
# Long tracks (runner.analysis.long_tracks) are aggregated stage by stage and part by part (see
# EarlyAggregation). Frame values per PoolAggregator call in that case (4 MB of float32; 16 MB
# added 12 MiB to the 60-minute peak).
PART_VALUES = 1 << 20


def aggregate(plan: Plan, analysis: Analysis, done: EarlyAggregation | None = None
              ) -> dict[str, Any]:
    """Descriptor name -> value: statistics for frame-wise descriptors, single values as is.

    ``done``: descriptors already aggregated (and removed from the pool) as their stages
    finished (long tracks, see EarlyAggregation); the rest are aggregated here in one call.
    """
    frames = analysis.frames
    remaining = set(frames.descriptorNames())
    present = set(remaining)
    flat: dict[str, Any] = {}
    if done is not None:
        if done.error is not None:
            raise done.error
        present |= done.names
        flat.update({name: to_plain(value) for name, value in done.values.items()})
    wanted = {d.name: tuple(d.stats) for d in plan.descriptors
              if not d.single and d.name in remaining}
    undefined = analysis.undefined
    if done is not None:
        undefined.update(done.undefined)
    if wanted:
        try:
            aggregated = pool_values(_aggregator(tuple(sorted(wanted.items())))(frames))
        except RuntimeError:  # a singular covariance (silence): those apart (_statistics)
            matrix = {name: tuple(s for s in stats if s in MATRIX_STATS)
                      for name, stats in wanted.items()}
            plain = {name: tuple(s for s in stats if s not in MATRIX_STATS)
                     for name, stats in wanted.items()}
            plain = {name: stats for name, stats in plain.items() if stats}
            aggregated = pool_values(_aggregator(tuple(sorted(plain.items())))(frames))
            for name, stats in matrix.items():
                if stats:
                    aggregated.update(_statistics(frames, name, stats, undefined))
        for name, value in aggregated.items():
            flat[name] = to_plain(value)
        for name, stats in wanted.items():
            if "icov" in stats and flat.get(f"{name}.icov") is not None:
                _drop_rank_deficient(frames, name, flat, undefined)
    for desc in plan.descriptors:
        if not desc.single and desc.name not in present and desc.empty is not None:
            for stat in desc.stats:  # e.g. no beats found: Essentia writes zeros
                flat[f"{desc.name}.{stat}"] = to_plain(desc.empty)
    for name, value in analysis.singles.items():
        flat[name] = to_plain(value)
    return flat


class EarlyAggregation:
    """Early aggregation of long tracks: the statistics of descriptors whose stage has
    finished, computed (by parts) and removed from the frame pool before the later stages
    run, so their frames do not stay in memory beside those stages' work. The executor calls
    ``after_stage`` after each stage of a track its LongTracks policy finds long."""

    def __init__(self, plan: Plan) -> None:
        self.stats = {d.name: tuple(d.stats) for d in plan.descriptors if not d.single}
        self.finished: dict[int, list[str]] = {}  # stage -> descriptors final after it
        for desc in plan.descriptors:
            if not desc.single:
                node = plan.nodes.get(desc.ref.node)
                stage = node.stage if node is not None else 0
                self.finished.setdefault(stage, []).append(desc.name)
        self.names: set[str] = set()
        self.values: dict[str, Any] = {}
        self.error: RuntimeError | None = None  # raised by aggregate(), where it is reported
        self.undefined: dict[str, str] = {}  # statistics written as null (see _statistics)

    def clear(self) -> None:
        """Before the next file."""
        self.names.clear()
        self.values.clear()
        self.undefined.clear()
        self.error = None

    def after_stage(self, stage: int, frames: Any) -> None:
        """Aggregate (and remove from ``frames``) what is final once ``stage`` is done."""
        if self.error is not None:
            return
        present = set(frames.descriptorNames())
        ready = {}
        for done_stage, names in self.finished.items():
            if done_stage <= stage:
                ready.update({n: self.stats[n] for n in names if n in present})
        try:
            self.values.update(aggregate_by_parts(frames, ready, undefined=self.undefined))
        except RuntimeError as exc:  # e.g. the covariance of silence cannot be inverted
            self.error = exc
        self.names |= set(ready) - set(frames.descriptorNames())


def aggregate_by_parts(frames: Any, wanted: dict[str, tuple[str, ...]],
                       part_values: int | None = None,
                       undefined: dict[str, str] | None = None
                       ) -> dict[str, Any]:
    """Statistics of the numeric frame-wise descriptors, one part per PoolAggregator call.

    Essentia's Python binding copies the whole pool it hands to PoolAggregator (about four
    times its values: 357 MiB on an hour of the music profile). Here each descriptor is moved
    out of ``frames`` into a pool of its own, a band of columns at a time when it is wide and
    its statistics are per column, so the copy stays near ``part_values`` (default
    ``PART_VALUES``, read when called), and the memory of
    a removed descriptor is given back before the next. The statistics are PoolAggregator's own, on
    the same values: the results are identical. Descriptors of other types stay in
    ``frames``; the removed ones are gone from it afterwards. An inverse covariance that
    does not exist is None, and its name is added to ``undefined`` (see _statistics).
    """
    essentia = registry.quiet_essentia()
    cpp = frames.cppPool
    results: dict[str, Any] = {}
    kinds = {name: cpp.__keyType__(name) for name in wanted}
    # One value per frame first: each removal shrinks the pool before the wide descriptors are
    # copied out of it (a copy sits beside what is left of the pool: 60 minutes of melbands128
    # copied first made the process grow by 59 MiB, copied after the scalars by far less).
    for name in sorted(wanted, key=lambda n: (kinds[n] != "VECTOR_REAL", n)):
        stats, kind = wanted[name], kinds[name]
        if kind not in ("VECTOR_REAL", "VECTOR_VECTOR_REAL"):
            continue
        values = cpp.__value__(name, kind)
        if not isinstance(values, np.ndarray) or values.ndim != (1 if kind == "VECTOR_REAL"
                                                                  else 2):
            continue  # ragged or a single frame: left to the whole-pool call
        cpp.remove(name)
        width = 1 if values.ndim == 1 else values.shape[1]
        rows = len(values)
        columns = width
        if values.ndim == 2 and set(stats) <= PER_COLUMN:
            columns = max(1, min(width, (part_values or PART_VALUES) // max(1, len(values))))
        parts: dict[str, list[Any]] = {}
        for start in range(0, width, columns):
            part = essentia.Pool()
            if values.ndim == 1:
                part.cppPool.__merge__(name, kind, values, "")
            else:
                block = np.ascontiguousarray(values[:, start:start + columns])
                part.cppPool.__merge__(name, kind, list(block), "")
                del block
            for key, value in _statistics(part, name, stats, undefined).items():
                parts.setdefault(key, []).append(value)
            del part
        del values
        give_back_freed_memory()
        for key, pieces in parts.items():
            results[key] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        if "icov" in stats and results.get(f"{name}.icov") is not None and (
                rows <= width):
            results[f"{name}.icov"] = None  # rank-deficient: see _drop_rank_deficient
            if undefined is not None:
                undefined[f"{name}.icov"] = FEW
    return results


def _statistics(pool: Any, name: str, stats: tuple[str, ...],
                undefined: dict[str, str] | None) -> dict[str, Any]:
    """PoolAggregator's statistics of one descriptor of ``pool``. Where its covariance is
    singular (digital silence, frames that never change) Essentia refuses the inverse, and
    with it every statistic of the descriptor: then the others are computed without it, the
    covariance unbiased like SingleGaussian's (in float64, stored as float32; None for a
    single frame), and ``icov`` is None (written as null), its name added to ``undefined``
    with the reason."""
    try:
        return pool_values(_aggregator(((name, stats),))(pool))
    except RuntimeError:
        if not {"cov", "icov"} & set(stats):
            raise
    rest = tuple(s for s in stats if s not in MATRIX_STATS)
    results = pool_values(_aggregator(((name, rest),))(pool)) if rest else {}
    frames = np.atleast_2d(np.asarray(pool[name], dtype=np.float64))
    if "cov" in stats:
        results[f"{name}.cov"] = (np.cov(frames, rowvar=False, ddof=1).astype(np.float32)
                                  if len(frames) > 1 else None)
        if results[f"{name}.cov"] is None and undefined is not None:
            undefined[f"{name}.cov"] = FEW
    if "icov" in stats:
        results[f"{name}.icov"] = None
        if undefined is not None:
            undefined[f"{name}.icov"] = FEW if len(frames) <= frames.shape[1] else CONSTANT
    return results


def _drop_rank_deficient(frames: Any, name: str, flat: dict[str, Any],
                         undefined: dict[str, str]) -> None:
    """An inverse covariance from no more frames than dimensions does not exist (the
    covariance has rank frames - 1), although rounding may let Essentia invert it into
    meaningless numbers (a 50 ms file): written as null, like a refused one."""
    cpp = frames.cppPool
    if name not in set(cpp.descriptorNames()):
        return
    values = cpp.__value__(name, cpp.__keyType__(name))
    rows = 1 if np.ndim(values) == 1 else len(values)
    width = len(flat.get(f"{name}.icov") or [])
    if rows <= width:
        flat[f"{name}.icov"] = None
        undefined[f"{name}.icov"] = FEW


@lru_cache(maxsize=64)
def _aggregator(exceptions: tuple[tuple[str, tuple[str, ...]], ...]) -> Any:
    """One PoolAggregator per set of statistics, reused for every file: creating one with a
    large ``exceptions`` map leaks about 30 KB in Essentia's parameter conversion, which a
    library run would pay per file."""
    std = registry.quiet_essentia().standard
    return std.PoolAggregator(defaultStats=[], exceptions={k: list(v) for k, v in exceptions})
