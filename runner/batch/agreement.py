"""What a worker would compute, so a cluster writes one analysis whichever worker runs a file.

A result depends on more than the profile: the runner's and Essentia's versions and the models
in the worker's own cache (a model that is absent is left out with ``missing: skip``; another
pin gives other numbers). Before a distributed batch the client asks every worker for its
``describe`` and compares it with its own (runner.batch.dask_workers); ``differences`` says
what differs, in words, for the one line that refuses the cluster.
"""

from __future__ import annotations

from typing import Any

from runner import __version__, compile, registry
from runner import profile as load
from runner.batch.sending import SentProfile, local_profile
from runner.compile import Plan
from runner.errors import ExtractorError
from runner.models.stage import ModelStage, prepare

View = dict[str, Any]  # what a worker would compute (describe)


def describe(plan: Plan, stage: ModelStage | None) -> View:
    """The versions, compiled profile and models that decide ``plan``'s results here, the
    result hash they make, and the note on what is left out (None: nothing)."""
    essentia = registry.quiet_essentia()
    return {
        "runner": __version__,
        "essentia": f"{essentia.__version__} ({getattr(essentia, '__version_git_sha__', '')})",
        "profile": plan.profile.digest(),
        "models": {model: dict(files) for model, files in sorted(stage.pins.items())}
        if stage is not None else {},
        "left_out": sorted(stage.left_out) if stage is not None else [],
        "hash": plan.digest,
        "note": stage.note() if stage is not None and stage.missing else None,
    }


def describe_profile(profile: str | SentProfile, overrides: list[str] | tuple[str, ...],
                     essentia_base: str) -> View:
    """``describe`` for a profile compiled here, its models looked up in this machine's cache
    (nothing is loaded). Run on the client and, through Dask, on every worker."""
    plan = compile.compile_profile(load.load_profile(local_profile(profile), list(overrides),
                                                     essentia_base))
    stage = prepare(plan, warn=False, load=False)
    return describe(plan, stage)


def differences(client: View, worker: View) -> list[str]:
    """What the worker would compute otherwise than the client, one phrase each (empty: the
    same analysis)."""
    found = []
    for key, name in (("runner", "extractor-profiles"), ("essentia", "Essentia"),
                      ("profile", "compiled profile")):
        if worker[key] != client[key]:
            found.append(f"{name} {worker[key]} (the client: {client[key]})")
    mine, theirs = client["models"], worker["models"]
    for model in sorted(set(mine) | set(theirs)):
        if model not in theirs:
            found.append(f"model {model} absent (present on the client)")
        elif model not in mine:
            found.append(f"model {model} present (absent on the client)")
        else:
            for name in sorted(set(mine[model]) | set(theirs[model])):
                here, there = mine[model].get(name, "-"), theirs[model].get(name, "-")
                if here != there:
                    found.append(f"model {model} file {name} sha256 {there[:12]} "
                                 f"(the client: {here[:12]})")
    if not found and worker["hash"] != client["hash"]:
        found.append(f"result hash {worker['hash']} (the client: {client['hash']})")
    return found


def refusal(address: str, found: list[str], others: int = 0) -> str:
    """The one line that refuses a worker (``others``: how many more workers differ)."""
    more = f" (and {others} more worker{'s' if others > 1 else ''} differ)" if others else ""
    return (f"Dask worker {address} would compute another analysis than this client: "
            f"{'; '.join(found)}{more}; give the workers and the client the same versions "
            "and models, or --allow-mixed")


def check_worker(work: Any, expected: View, allow_mixed: bool, address: str) -> None:
    """Refuse (ExtractorError) a worker whose job (``work.describe()``) would compute another
    analysis than the client's ``expected``; with ``allow_mixed``, record in its outputs which
    worker wrote them and how it differs (``work.record``)."""
    found = differences(expected, work.describe())
    if found and not allow_mixed:
        raise ExtractorError(refusal(address, found))
    if allow_mixed:
        work.record("mixed_cluster", {"allowed": True, "worker": address,
                                      "client_hash": expected["hash"], "differences": found})
