"""``--write-on client``: distributed batches without a shared filesystem.

The client reads each input and sends its bytes with the task; the worker analyses a copy in
its own TMPDIR (under the input's own file name, which the output records) and sends back the
files the job wrote (the output, and its frames or embeddings beside it); the client writes
them atomically where it planned, so resume, claims and failures.jsonl work as in a local
batch. Memory stays bounded on both sides: the inputs in flight are at most the cluster's
threads and ``IN_FLIGHT_BYTES`` together (one file at least), and an input larger than
``MAX_SEND_BYTES`` is refused (not streamed): analyse it with ``--write-on workers`` or on one
machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from runner import procs
from runner.analysis import spool
from runner.batch.inputs import Job
from runner.batch.work import FileWork, Outcome, analyse_one

MAX_SEND_BYTES = 1 << 30  # 1 GiB: larger inputs are refused
IN_FLIGHT_BYTES = 1 << 30  # bytes of inputs sent and not yet answered, at most
INPUT = "\0input\0"  # stands for the input's path in messages coming back
# What a task sends back: status, message, seconds, warnings, {file name: bytes}.
SentResult = tuple[str, str, float, list[str], dict[str, bytes]]

# A profile file sent by the client (--write-on client): (its file name, its text).
SentProfile = tuple[str, str]


def local_profile(profile: str | SentProfile) -> str:
    """A profile name or path as given, or a sent profile written (once) under this machine's
    TMPDIR with its own file name, so messages and outputs name it as the client does.
    A sent profile is one file: what it ``extends`` must be a built-in profile or present
    at the same path on the worker."""
    if isinstance(profile, str):
        return profile
    name, text = profile
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), "extractor-profiles-sent", digest)
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    return path


def input_size(job: Job) -> int:
    """The input's size in bytes (0 when it cannot be read: reading it will say why)."""
    try:
        return os.path.getsize(job.input)
    except OSError:
        return 0


def read_input(job: Job) -> bytes | Outcome:
    """The input's bytes, or the failed outcome that says why they are not sent."""
    size = input_size(job)
    if size > MAX_SEND_BYTES:
        return Outcome(job, "failed", f"{job.input}: {size / (1 << 30):.1f} GiB, more than "
                       f"--write-on client sends to a worker ({MAX_SEND_BYTES >> 30} GiB); "
                       "analyse it with --write-on workers or on one machine")
    try:
        return Path(job.input).read_bytes()
    except OSError as exc:
        return Outcome(job, "failed", f"{job.input}: cannot read: {exc.strerror or exc}")


def analyse_copy(analyse: FileWork, name: str, data: bytes, output_name: str) -> SentResult:
    """On the worker: analyse ``data`` as a file called ``name``; the files written for
    ``output_name`` come back. The copy lives in a spool-named folder of the worker's TMPDIR,
    removed afterwards (or, if the worker is killed, by the next run there)."""
    folder = tempfile.mkdtemp(prefix=f"{spool.PREFIX}{procs.tag()}.")
    try:
        src = os.path.join(folder, "in", name)
        out = os.path.join(folder, "out")
        os.makedirs(os.path.dirname(src))
        os.makedirs(out)
        with open(src, "wb") as handle:
            handle.write(data)
        del data
        status, message, seconds, warnings = analyse_one(
            analyse, src, os.path.join(out, output_name))
        files = {}
        if status == "done":
            for entry in sorted(os.listdir(out)):
                if not entry.endswith(".tmp"):
                    with open(os.path.join(out, entry), "rb") as handle:
                        files[entry] = handle.read()
        return status, message.replace(src, INPUT), seconds, warnings, files
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_results(job: Job, files: dict[str, bytes]) -> None:
    """On the client: the files a worker sent back, beside the planned output, each written
    atomically; the output itself last, so an output that exists is complete with its
    companions."""
    from runner.output import write_bytes_atomic  # loads the output modules: only when used

    folder = Path(job.output).parent
    folder.mkdir(parents=True, exist_ok=True)
    main = Path(job.output).name
    for name in sorted(files, key=lambda n: n == main):
        if os.sep in name or name in ("", ".", ".."):
            raise ValueError(f"a worker sent back a file named {name!r}")
        write_bytes_atomic(folder / name, files[name])
