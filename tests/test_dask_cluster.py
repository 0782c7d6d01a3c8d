"""One analysis whichever worker runs it (issue 25): a real ``dask scheduler`` and ``dask worker``
processes on free localhost ports, two workers with different model caches (EXTRACTOR_MODELS).

The client asks every worker what it would compute and refuses a cluster that differs, in one
line naming the worker; --allow-mixed runs and records the worker in each output; a worker
that joins after the client asked refuses its first file.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import noise_clip, piano_clip, tone, write_audio
from tests.dask_cluster import Cluster
from tests.test_cli import command
from tests.test_models import test_lock  # noqa: F401 - the tiny models' lock file (a fixture)

ROOT = Path(__file__).resolve().parent.parent
PROFILE = """\
name: mixed_models
audio: {sample_rate: 16000}
stats: {lowlevel: [mean]}
graph:
  fc: {algorithm: FrameCutter, params: {frameSize: 1024, hopSize: 512}, inputs: {signal: audio.signal}}
  win: {algorithm: Windowing, inputs: {frame: fc.frame}}
  spec: {algorithm: Spectrum, inputs: {frame: win.frame}}
  centroid: {algorithm: Centroid, params: {range: 8000}, inputs: {array: spec.spectrum}}
descriptors:
  lowlevel.spectral_centroid: centroid.centroid
models:
  section: highlevel
  missing: skip
  outputs:
    tags: tiny-musicnn
"""
ABSENT = "model tiny-musicnn absent (present on the client)"
ADVICE = "give the workers and the client the same versions and models, or --allow-mixed"


@pytest.fixture(scope="module")
def caches(test_lock, tmp_path_factory) -> dict[str, object]:  # noqa: F811
    """Cache ``with`` holds tiny-musicnn, cache ``without`` is empty; the client's env."""
    root = tmp_path_factory.mktemp("caches")
    with_model, without = root / "with", root / "without"
    without.mkdir()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3",
               EXTRACTOR_MODELS_LOCK=str(test_lock), XDG_CACHE_HOME=str(root / "xdg-client"))
    fetched = subprocess.run(
        [command("extractor"), "models", "fetch", "tiny-musicnn", "--quiet"],
        env=dict(env, EXTRACTOR_MODELS=str(with_model)), capture_output=True, text=True,
        timeout=120)
    assert fetched.returncode == 0, fetched.stderr
    assert list(with_model.rglob("tiny-musicnn.pb"))
    return {"with": with_model, "without": without, "env": env}


@pytest.fixture(scope="module")
def cluster(caches, tmp_path_factory) -> Iterator[tuple[Cluster, str, str]]:
    """Worker ``a`` has the model, worker ``b`` does not."""
    grid = Cluster(tmp_path_factory.mktemp("cluster"), caches["env"])
    try:
        a = grid.add_worker("a", caches["with"])
        b = grid.add_worker("b", caches["without"])
        yield grid, a, b
    finally:
        grid.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed-lib")
    for index in range(3):
        write_audio(root / f"piano{index}.wav", piano_clip(3.0 + index))
        write_audio(root / f"noise{index}.wav", noise_clip(3.0 + index))
    write_audio(root / "tone.wav", tone(3.0, 440.0))
    return root


def extract(caches, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "mixed.yaml"
    profile.write_text(PROFILE)
    env = dict(caches["env"], EXTRACTOR_MODELS=str(caches["with"]))  # the client has it
    return subprocess.run([command("extractor"), "run", str(profile), *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_workers_with_other_models_are_refused_in_one_line(caches, cluster, library, tmp_path):
    grid, _, b = cluster
    result = extract(caches, tmp_path, str(library), "out", "--dask-scheduler", grid.address)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: Dask worker {b} would compute another analysis than this client: "
        f"{ABSENT}; {ADVICE}")
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "out").rglob("*.json"))  # refused before any file


def test_allow_mixed_runs_and_each_output_names_its_worker(caches, cluster, library, tmp_path):
    grid, a, b = cluster
    result = extract(caches, tmp_path, str(library), "out", "--dask-scheduler", grid.address,
                     "--allow-mixed")
    assert result.returncode == 0, result.stderr
    # The announcement is the workers': b leaves the tags out, a computes everything.
    assert f"note: Dask worker {a}: every model present" in result.stderr
    assert (f"note: Dask worker {b}: highlevel: 1 of 1 outputs left out (tags), their models "
            "are not in the model cache") in result.stderr
    outputs = sorted((tmp_path / "out").glob("*.json"))
    assert len(outputs) == 7
    seen = set()
    for path in outputs:
        doc = json.loads(path.read_text())
        mixed = doc["metadata"]["mixed_cluster"]
        seen.add(mixed["worker"])
        assert mixed["allowed"] is True
        if mixed["worker"] == b:
            assert mixed["differences"] == [ABSENT]
            assert "highlevel" not in doc and doc["metadata"]["models"]["left_out"] == ["tags"]
        else:
            assert mixed["worker"] == a and mixed["differences"] == []
            assert sorted(doc["highlevel"]) == ["tags"]
            assert doc["metadata"]["profile"]["hash"] == mixed["client_hash"]
    assert seen == {a, b}  # two tasks in flight at a time: both idle workers get one
    again = extract(caches, tmp_path, str(library), "out", "--dask-scheduler", grid.address,
                    "--allow-mixed")
    assert "0 done, 7 skipped (up to date), 0 failed" in again.stderr  # either worker's hash


def test_a_worker_that_joins_after_the_survey_refuses_its_first_file(
        caches, library, tmp_path, monkeypatch):
    """The client asked worker ``a`` only; ``late`` (no model) joins, ``a`` leaves: the run
    stops at the first file ``late`` takes, with the same line, and writes nothing."""
    import distributed

    from runner.batch import collect, plan_outputs
    from runner.batch.agreement import describe_profile
    from runner.batch.dask_workers import DaskWorkers
    from runner.batch.extract_job import ExtractorWork
    from runner.errors import ExtractorError

    monkeypatch.setenv("EXTRACTOR_MODELS_LOCK", caches["env"]["EXTRACTOR_MODELS_LOCK"])
    monkeypatch.setenv("EXTRACTOR_MODELS", str(caches["with"]))
    profile = tmp_path / "mixed.yaml"
    profile.write_text(PROFILE)
    grid = Cluster(tmp_path, caches["env"])
    try:
        a = grid.add_worker("a", caches["with"])
        args = (str(profile), (), "music")
        workers = DaskWorkers((ExtractorWork, (*args, False)), grid.address,
                              describe=(describe_profile, args))
        assert workers.survey() == []  # a agrees, and has every model
        late = grid.add_worker("late", caches["without"])
        with distributed.Client(grid.address, timeout="20s") as client:
            client.retire_workers(workers=[a], close_workers=True)
        jobs, _ = plan_outputs(collect([str(library)]), tmp_path / "out", ".json")
        with pytest.raises(ExtractorError) as refused:
            workers.process(jobs, lambda outcome: None)
        assert str(refused.value) == (f"Dask worker {late} would compute another analysis than "
                                      f"this client: {ABSENT}; {ADVICE}")
        assert not list((tmp_path / "out").rglob("*.json"))
    finally:
        grid.close()
