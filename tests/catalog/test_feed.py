"""A batch's --catalog: outputs reach the catalog as the batch finishes them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from runner.catalog import connect
from runner.catalog.feed import CatalogFeed
from tests.catalog.conftest import find_json
from tests.test_cli import command, run


def tracks(db: str) -> int:
    conn = connect(db, read_only=True)
    try:
        return conn.execute("SELECT count(*) FROM tracks")[0][0]
    finally:
        conn.close()


def test_a_batch_with_catalog_ends_with_a_queryable_catalog(analysed, tmp_path):
    out = tmp_path / "out"
    result = run("streaming-extractor-rhythm", str(analysed["lib"]), "--output", str(out),
                 "--catalog", "-j", "2")
    assert result.returncode == 0, result.stderr
    assert "catalog: 6 added, 0 updated, 0 removed, 0 unchanged" in result.stderr.splitlines()
    rows = find_json(str(out), "--bpm", "120..130")
    assert [r["path"] for r in rows] == ["rock/fast.wav", "rock/mid.wav"]
    listed = run("extractor", "find", "--db", str(out), "--paths", "--bpm", "120..130")
    assert listed.stdout.splitlines() == [str(analysed["lib"] / "rock" / "fast.wav"),
                                          str(analysed["lib"] / "rock" / "mid.wav")]
    again = run("streaming-extractor-rhythm", str(analysed["lib"]), "--output", str(out),
                "--catalog-db", str(tmp_path / "other.sqlite"))
    assert "catalog: 6 added, 0 updated, 0 removed, 0 unchanged" in again.stderr.splitlines()


def test_the_feed_commits_in_batches_as_files_finish(music_outputs, db_url, tmp_path):
    folder = tmp_path / "growing"
    folder.mkdir()
    feed = CatalogFeed(folder, db_url, every_files=2, every_seconds=3600)
    finished = sorted(music_outputs.rglob("*.json"))
    seen = []
    for i, path in enumerate(finished):
        target = folder / path.relative_to(music_outputs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)  # the batch wrote it
        feed.add(target)
        if i % 2 == 1:
            seen.append(tracks(db_url))  # a reader, between two transactions
    report = feed.close()
    assert seen == [2, 4, 6]
    assert report.line() == "catalog: 6 added, 0 updated, 0 removed, 0 unchanged"
    assert tracks(db_url) == 6


def test_a_dask_batch_feeds_the_catalog_from_the_scheduler_side(analysed, tmp_path):
    """The Dask run reports finished files to the submitting process: the one writer."""
    distributed = pytest.importorskip("distributed")
    from tests.test_dask import env

    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None,
                                  env={"PYTHONPATH": env()["PYTHONPATH"],
                                       "TF_CPP_MIN_LOG_LEVEL": "3"}) as cluster:
        out = tmp_path / "out"
        result = subprocess.run(
            [command("streaming-extractor-rhythm"), str(analysed["lib"]), "--output",
             str(out), "--catalog", "--dask-scheduler", cluster.scheduler_address],
            capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "catalog: 6 added, 0 updated, 0 removed, 0 unchanged" in result.stderr.splitlines()
    assert len(find_json(str(out))) == 6
