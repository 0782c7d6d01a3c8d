"""Memory: networks reused for every file must not creep up (MTG/essentia#405), and a longer
track must not cost copies of its decoded signal (issue #3: an hour of 44.1 kHz audio is 635 MB)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from tests.conftest import SR, click_track, write_audio
from tests.data.make_demo import demo

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from runner.extract import Extractor

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    extractor = Extractor("music")  # compiled once, reused for every file
    paths, out = sys.argv[1:3], sys.argv[3]
    samples, docs = [], []
    for i in range(40):
        docs.append(extractor.extract(paths[i % 2], out))
        samples.append(rss_mib())
    same = [json.dumps(docs[i], sort_keys=True) == json.dumps(docs[i % 2], sort_keys=True)
            for i in range(len(docs))]
    print(json.dumps({"rss": samples, "same": same}))
    sys.stdout.flush()
    os._exit(0)
""")


def test_repeated_runs_do_not_grow_memory_and_repeat_exactly(tmp_path):
    """One compiled profile, its networks reused for 40 files (two alternating inputs)."""
    first = write_audio(tmp_path / "a.wav", click_track(5.0, bpm=120))
    second = write_audio(tmp_path / "b.wav", click_track(7.0, bpm=90, seed=4), sr=48000)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(first), str(second), str(tmp_path / "o.json")],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert all(report["same"])  # a reused network gives each file exactly its first result
    samples = report["rss"]
    warm, end = samples[9], samples[-1]
    # 30 more runs after warming up: allow allocator noise, not a per-run leak
    assert end - warm < 15, f"RSS grew from {warm:.0f} MiB to {end:.0f} MiB over 30 runs"


GROWTH_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    from runner.extract import Extractor

    def peak_kib():  # VmHWM: the peak resident set size since the last reset
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM")).split()[1])

    def extra_peak_kib(path):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        with open("/proc/self/status") as f:
            before = int(next(line for line in f if line.startswith("VmRSS")).split()[1])
        extractor.extract(path, sys.argv[3])
        return peak_kib() - before

    extractor = Extractor("music", ["options.highlevel.compute=false"], warn=False)
    short, longer = sys.argv[1:3]
    extractor.extract(short, sys.argv[3])  # builds the networks
    print(json.dumps([extra_peak_kib(short), extra_peak_kib(longer)]))
    sys.stdout.flush()
    os._exit(0)
""")


def test_a_longer_track_does_not_cost_copies_of_its_signal(tmp_path):
    """The music graph on 10 s and on 100 s of music, in one process (networks reused): the
    extra peak memory of the longer track must stay below two copies of the 90 s it adds
    (15 MB each). Holding the signal cost about five: a recording of it replayed by the later
    stages (pool and numpy copy), DynamicComplexity (input and a filtered copy), Danceability.
    What remains grows with the number of frames (frame-wise descriptors, the beat tracker's
    detection functions), about 1.5 copies here."""
    piece = demo(10.0, seed=2)
    short = write_audio(tmp_path / "short.wav", piece)
    longer = write_audio(tmp_path / "long.wav", np.tile(piece, 10))
    result = subprocess.run(
        [sys.executable, "-c", GROWTH_SCRIPT, str(short), str(longer), str(tmp_path / "o.json")],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    short_kib, long_kib = json.loads(result.stdout)
    copy_kib = 90 * SR * 4 / 1024  # float32 samples
    growth = long_kib - short_kib
    assert growth < 2 * copy_kib, (
        f"100 s needs {growth / 1024:.1f} MiB more than 10 s: "
        f"{growth / copy_kib:.1f} copies of the added signal")


def test_long_track_statistics_by_parts_equal_the_whole_pool_call(tmp_path, monkeypatch):
    """Long tracks are aggregated a descriptor (or a band of columns) at a time, so that
    PoolAggregator's copy of the pool stays small; the numbers must not change at all."""
    from runner import aggregate, compile
    from runner import profile as load
    from runner.analysis import Executor

    path = write_audio(tmp_path / "m.wav", demo(12.0, seed=3))
    plan = compile.compile_profile(load.load_profile("music", ["options.highlevel.compute=false"]))
    analysis = Executor(plan).analyse(str(path))
    whole = aggregate.aggregate(plan, analysis)  # one PoolAggregator call
    assert analysis.frames.descriptorNames()  # ... which leaves the frames in place
    monkeypatch.setattr(aggregate, "PART_VALUES", 3000)  # melbands128: 6 columns per call
    early = aggregate.EarlyAggregation(plan)
    early.after_stage(plan.stages - 1, analysis.frames)  # every descriptor, by parts
    parts = aggregate.aggregate(plan, analysis, done=early)
    assert parts == whole
    assert len(whole) > 500 and "lowlevel.melbands128.median" in whole
    assert analysis.frames.descriptorNames() == []  # moved out as they were aggregated


def test_long_track_statistics_aggregated_after_each_stage_are_the_same(tmp_path, monkeypatch):
    """Long tracks: a stage's descriptors are aggregated (and their frames let go) as soon as
    the stage has finished, through Extractor; the document must not change."""
    from runner import aggregate
    from runner.analysis import NetworkKey, long_tracks
    from runner.extract import Extractor

    path = write_audio(tmp_path / "m.wav", demo(12.0, seed=5))
    overrides = ["options.highlevel.compute=false"]
    short = Extractor("music", overrides)
    whole, _ = short.analyse(str(path))
    monkeypatch.setattr(long_tracks, "LONG_TRACK_SECONDS", 1.0)
    monkeypatch.setattr(aggregate, "PART_VALUES", 3000)
    extractor = Extractor("music", overrides)
    # batch.Batch gives such a file a worker of its own; an unreadable one is not long
    assert extractor.wants_own_process(str(path)) and not short.wants_own_process(str(path))
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert not extractor.wants_own_process(str(tmp_path / "bad.wav"))
    early, analysis = extractor.analyse(str(path))
    assert extractor.early is not None and len(extractor.early.names) > 40
    assert analysis.frames.descriptorNames() == []
    # the main pass ran as two networks
    assert NetworkKey(stage=1, group=0, part=1, split=True, spooled=True) in (
        extractor.executor.networks.built)
    assert early == whole


def test_a_long_main_pass_runs_its_value_chains_before_its_frame_chains():
    """Long tracks: RhythmExtractor2013's end-of-track transient (140 MiB per hour) must not
    coincide with the lowlevel frames, so the main pass runs as two networks, rhythm first;
    they share only the gain-normalised signal, whose outputs go nowhere twice. Passes whose
    parts would share a spectrum chain (the tonal pass) stay one network."""
    from runner import compile
    from runner import profile as load
    from runner.analysis import split_pass
    from runner.compile import stream_components

    plan = compile.compile_profile(load.load_profile("music", ["options.highlevel.compute=false"]))
    (main,) = stream_components(plan.nodes, 1)
    (first, first_stored), (frames, frames_stored) = split_pass(plan, main)
    assert {"rhythm_extractor", "onsets", "dance_variance", "loudness"} <= set(first)
    assert {"ll_frames", "melbands128", "eq_frames", "contrast"} <= set(frames)
    assert set(first) & set(frames) == {"signal"}
    assert "signal" in frames_stored and "signal" not in first_stored
    assert set(first) | set(frames) == set(main)
    for stage in range(2, plan.stages):
        for group in stream_components(plan.nodes, stage):
            assert len(split_pass(plan, group)) == 1


def test_a_stream_read_back_and_also_a_descriptor_is_stored_once(tmp_path, monkeypatch):
    """The HPCP frames are the descriptor tonal.hpcp and what the keys are computed from (their
    mean): the frame pool holds them once and they are read back from there (on an hour they
    were kept twice, 14 MiB). Each pass's recorded streams are let go before the hook that
    aggregates runs. The results equal those of recording the stream separately."""
    from runner import compile
    from runner import profile as load
    from runner.analysis import Executor, LongTracks
    from runner.analysis.values import Sinks

    path = write_audio(tmp_path / "m.wav", demo(12.0, seed=2))
    plan = compile.compile_profile(load.load_profile("tonal"))
    executor = Executor(plan, long_tracks=LongTracks(plan, 0.0))  # the hook runs: "long"
    assert executor.sinks.recorded_frames == {"hpcp_key.hpcp": "tonal.hpcp"}
    recorded: list[set[str]] = []
    left: list[int] = []
    original = Sinks.read_recorded

    def spy(self, stage):
        recorded.append(set(self.work.descriptorNames()))
        return original(self, stage)

    monkeypatch.setattr(Sinks, "read_recorded", spy)
    executor.after_stage = lambda stage, frames: left.append(
        len(executor.sinks.work.descriptorNames()))
    once = executor.analyse(str(path))
    once_singles, once_frames = dict(once.singles), set(once.frames.descriptorNames())
    assert recorded and not any("hpcp_key.hpcp" in names for names in recorded)
    assert "tonal.hpcp" in once_frames
    assert left and set(left) == {0}

    twice = Executor(plan)
    twice.sinks.recorded_frames = {}  # the stream recorded apart as well, as before
    separate = twice.analyse(str(path))
    assert any("hpcp_key.hpcp" in names for names in recorded[len(left):])
    assert separate.singles.keys() == once_singles.keys()
    for name, value in separate.singles.items():
        assert np.array_equal(np.asarray(value), np.asarray(once_singles[name])), name
    assert "tonal.key_edma.key" in once_singles
