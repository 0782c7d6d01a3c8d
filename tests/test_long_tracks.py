"""The long-track policy (runner.analysis.long_tracks): one decision, LongTracks.is_long, on the
decoded length; the header only chooses where a file runs (a process of its own). Long or not,
a document is the same to the bit."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import compile
from runner import profile as load
from runner.analysis import Executor, LongTracks, NetworkKey, long_tracks
from runner.extract import Extractor
from tests.conftest import SR, click_track, write_audio
from tests.data.make_demo import demo

MUSIC = ["options.highlevel.compute=false"]


def _plan(name: str, overrides: list[str] | None = None) -> compile.Plan:
    return compile.compile_profile(load.load_profile(name, overrides))


@pytest.fixture(scope="module")
def two_seconds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exactly 2 s of audio (88200 samples): Duration measures 2.0 in float32, exactly."""
    path = tmp_path_factory.mktemp("long") / "two.wav"
    return write_audio(path, click_track(2.0, seed=7)[:2 * SR])


def test_the_decision_is_a_strict_threshold_on_the_analysed_seconds():
    policy = LongTracks(_plan("beats"), 600.0)
    assert not policy.is_long(0.0)
    assert not policy.is_long(600.0)  # the boundary itself is not long
    assert policy.is_long(600.001)
    assert not LongTracks(_plan("beats"), None).is_long(1e9)  # None: no track is long


def test_a_profile_writing_frames_has_no_long_tracks(monkeypatch, two_seconds):
    """Frame values written too must all stay in the pool: no early aggregation, no split."""
    monkeypatch.setattr(long_tracks, "LONG_TRACK_SECONDS", 1.0)
    assert LongTracks.for_plan(_plan("beats")).seconds == 1.0  # read when asked
    framed = LongTracks.for_plan(_plan("beats", ["output.frames=true"]))
    assert not framed.enabled and not framed.expects_long(str(two_seconds))
    assert Extractor("beats", ["output.frames=true"]).early is None


@pytest.mark.parametrize(("threshold", "long"), [(3.0, False), (2.0, False), (1.99, True)])
def test_short_boundary_and_long_files(two_seconds, threshold, long):
    """A 2 s file: short under a 3 s threshold and at exactly 2 s; long under 1.99 s. The
    header's promise (batch) and the analysis (decoded length) agree on an honest file."""
    plan = _plan("lowlevel")
    policy = LongTracks(plan, threshold)
    assert policy.expects_long(str(two_seconds)) is long
    analysis = Executor(plan, long_tracks=policy).analyse(str(two_seconds))
    assert analysis.audio["analysis_length"] == 2.0
    assert analysis.long_track is long


def test_a_long_file_is_aggregated_early_and_gives_the_same_document(monkeypatch, tmp_path):
    path = write_audio(tmp_path / "m.wav", demo(6.0, seed=4))
    short = Extractor("music", MUSIC)
    whole, plain = short.analyse(str(path))
    assert not plain.long_track and not short.wants_own_process(str(path))
    monkeypatch.setattr(long_tracks, "LONG_TRACK_SECONDS", 5.0)
    extractor = Extractor("music", MUSIC)
    assert extractor.wants_own_process(str(path))
    doc, analysis = extractor.analyse(str(path))
    assert analysis.long_track and extractor.early is not None and extractor.early.names
    assert NetworkKey(stage=1, group=0, part=1, split=True, spooled=True) in (
        extractor.executor.networks.built)
    assert doc == whole


def test_a_short_file_after_a_long_one_runs_its_passes_whole(monkeypatch, tmp_path):
    """The networks a long track's split pass built are not those of a short track: the
    next, short, file gets every descriptor, as in a fresh process."""
    monkeypatch.setattr(long_tracks, "LONG_TRACK_SECONDS", 4.0)
    longer = write_audio(tmp_path / "long.wav", demo(6.0, seed=4))
    shorter = write_audio(tmp_path / "short.wav", demo(3.0, seed=6))
    extractor = Extractor("music", MUSIC)
    assert extractor.analyse(str(longer))[1].long_track
    doc, analysis = extractor.analyse(str(shorter))
    assert not analysis.long_track
    assert doc == Extractor("music", MUSIC).analyse(str(shorter))[0]


def test_a_header_that_lies_chooses_the_process_not_the_analysis(tmp_path):
    """A cut MP3 whose header still says 30 s: the batch gives it a process of its own (the
    header is all it can ask), but 1 s is decoded, and that is analysed as a short track."""
    whole = write_audio(tmp_path / "whole.mp3", click_track(30.0))
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 30])
    plan = _plan("lowlevel")
    policy = LongTracks(plan, 10.0)
    assert policy.expects_long(str(cut))
    analysis = Executor(plan, long_tracks=policy).analyse(str(cut))
    assert analysis.audio["analysis_length"] < 2.0
    assert not analysis.long_track
    assert any(w.startswith("truncated:") for w in analysis.warnings)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert not policy.expects_long(str(tmp_path / "bad.wav"))  # analyse() reports it
