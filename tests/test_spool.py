"""The spool (runner.analysis.spool): the file is decoded once, and what later passes read from disk is
exactly the signal the first pass analysed, whatever its length; where that cannot be made
exact the later passes decode again and the results are the same."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from runner.analysis import STAGE0
from runner.analysis import spool as spool_module
from runner.compile import AUDIO
from tests.conftest import SR, click_track, write_audio


def _essentia():
    from runner import registry

    return registry.quiet_essentia()


def _spool_through(signal: np.ndarray, expected: float, sr: float = SR):
    """Stream ``signal`` through a network with a Spool attached; return (spool, wav path)."""
    es = _essentia()
    source = es.streaming.VectorInput(signal)
    spool = spool_module.Spool(es, sr)
    keep = spool.attach(source.data)
    spool.begin(expected)
    es.run(source)
    return spool, spool.finish(), keep


def _read(path: str) -> np.ndarray:
    return _essentia().standard.AudioLoader(filename=path)()[0][:, 0]


B = spool_module.BLOCK


@pytest.fixture
def tmpdir_(tmp_path, monkeypatch):
    """A TMPDIR of the test's own, to see what the spool leaves there."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("length", [1, 5, B - 1, B, B + 1, 2 * B, 2 * B + 3])
@pytest.mark.parametrize("count_tail", [False, True])
def test_the_spooled_wav_holds_exactly_the_signal(length, count_tail):
    """Blocks are padded with zeros; the header says where the signal ends, whether the
    length comes from Duration or from counting the last block. The signal ends in zeros
    here, so a length guessed from the data would be wrong, and short ones are all zeros."""
    rng = np.random.default_rng(length)
    signal = (rng.standard_normal(length) * 0.3).astype(np.float32)
    signal[-min(length, 3):] = 0.0
    if length > B:
        signal[:B] = 0.0  # a silent block: FrameCutter's default would write noise into it
    spool, wav, _ = _spool_through(signal, expected=1e9 if count_tail else float(length))
    assert wav is not None and os.path.getsize(wav) == spool_module.HEADER + 4 * length
    assert np.array_equal(_read(wav), signal)
    folder = spool.folder
    spool.close()
    assert not os.path.exists(folder)


def test_a_length_that_cannot_be_known_exactly_is_never_guessed(monkeypatch, tmpdir_):
    """Past 2**24 samples Duration's float32 count is not exact: without the tail counter
    there is no spool (the later passes decode again), with it there is."""
    monkeypatch.setattr(spool_module, "EXACT", 1000)
    signal = np.ones(5000, dtype=np.float32)
    spool, wav, _ = _spool_through(signal, expected=10.0)  # the header promised a short file
    assert wav is None and os.listdir(tmpdir_) == []
    spool, wav, _ = _spool_through(signal, expected=1e9)
    assert wav is not None and np.array_equal(_read(wav), signal)


def test_the_header_is_copied_in_front_where_blocks_cannot_be_inserted(monkeypatch):
    """tmpfs cannot insert a block at the start of a file: the data is copied behind it."""
    monkeypatch.setattr(spool_module, "_fallocate", lambda: None)
    signal = (np.random.default_rng(1).standard_normal(B + 7) * 0.2).astype(np.float32)
    spool, wav, _ = _spool_through(signal, expected=float(signal.size))
    assert np.array_equal(_read(wav), signal)
    assert os.listdir(spool.folder) == ["signal.wav"]
    spool.close()


def _profile_runs(tmp_path, overrides, path, spool_audio):
    from runner import aggregate, compile
    from runner import profile as load
    from runner.analysis import Executor

    plan = compile.compile_profile(load.load_profile("music", overrides))
    executor = Executor(plan, spool_audio=spool_audio)
    analysis = executor.analyse(str(path))
    return executor, aggregate.aggregate(plan, analysis), dict(analysis.audio)


@pytest.mark.parametrize("case", ["48k_stereo_trimmed", "44k_mp3", "silence_padded_mp3"])
def test_later_passes_read_the_spool_not_the_file_and_agree_exactly(tmp_path, case, tmpdir_):
    """The music profile's later passes (main and tonal) read the spooled signal: the input is
    decoded once. Resampled, trimmed, stereo, MP3 or padded with digital silence, every
    statistic equals the one computed by decoding the file again for each pass."""
    overrides = ["options.highlevel.compute=false"]
    if case == "48k_stereo_trimmed":
        left = click_track(9.0, sr=48000, seed=3)
        stereo = np.stack([left, np.roll(left, 700) * 0.5], axis=1)
        path = write_audio(tmp_path / "s.wav", stereo, sr=48000)
        overrides += ["audio.start_time=1.5", "audio.end_time=7.25"]
    elif case == "silence_padded_mp3":
        # Digital silence at both ends and the encoder's delay and padding zeros, untrimmed:
        # silent frames are kept (not filled with noise) so the documents are deterministic;
        # the 2 s loudness frames (noise whatever the options) each reach some sound.
        zeros = np.zeros(int(0.6 * SR), np.float32)
        path = write_audio(tmp_path / "p.mp3",
                           np.concatenate([zeros, click_track(5.0, seed=5)[:5 * SR - 777], zeros]))
        overrides += ["options.lowlevel.silentFrames=keep", "options.tonal.silentFrames=keep"]
    else:
        path = write_audio(tmp_path / "m.mp3", click_track(8.0, seed=4))
        # FrameCutter puts random noise (seeded by the clock) into silent frames, so documents
        # of a file with silent frames (the MP3's encoder delay and padding) differ from run to
        # run, spool or not: the comparison leaves them out.
        overrides += ["audio.start_time=0.5", "audio.end_time=7.5"]
    spooled, stats, audio = _profile_runs(tmp_path, overrides, path, spool_audio=True)
    decoded, expected, expected_audio = _profile_runs(tmp_path, overrides, path, False)
    assert stats == expected and audio == expected_audio
    assert len(stats) > 500

    stage0 = spooled.networks.built[STAGE0]
    assert stage0.source.paramValue("filename") == str(path)
    later = [net for key, net in spooled.networks.built.items() if key != STAGE0]
    assert later and all(key.spooled for key in spooled.networks.built if key != STAGE0)
    assert all(net.source.paramValue("filename").endswith("signal.wav") for net in later)
    assert os.listdir(tmpdir_) == []  # removed when the file's analysis ended
    assert all(net.source.paramValue("filename") == str(path)
               for key, net in decoded.networks.built.items())


def test_a_bad_file_between_good_ones_leaves_no_spool_and_changes_nothing(tmp_path, tmpdir_):
    """A failed analysis drops its networks and their spool; the next file is unaffected."""
    from runner import compile
    from runner import profile as load
    from runner.analysis import Executor
    from runner.errors import AudioError

    good = write_audio(tmp_path / "a.wav", click_track(6.0, seed=6))
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"RIFF" + os.urandom(3000))
    plan = compile.compile_profile(load.load_profile("tonal"))
    executor = Executor(plan)
    first = dict(executor.analyse(str(good)).singles)
    assert executor.networks.built[STAGE0].spool is not None
    with pytest.raises(AudioError):
        executor.analyse(str(bad))
    assert os.listdir(tmpdir_) == []
    again = dict(executor.analyse(str(good)).singles)
    assert again.keys() == first.keys()
    for name, value in first.items():
        assert np.array_equal(np.asarray(value), np.asarray(again[name])), name
    assert f"{AUDIO}.signal" not in executor.analyse(str(good)).values


def test_a_run_removes_the_spool_folders_of_processes_that_are_gone(tmp_path):
    """kill -9 in the middle of a file leaves its spool folder; the next run on the machine
    removes it, and never a folder whose process is alive (or that it cannot tell about)."""
    import subprocess
    import time

    from runner import procs
    from tests.test_cli import MINI, command

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(tmp))
    song = write_audio(tmp_path / "song.wav", click_track(20.0))
    killed = subprocess.Popen([command("extractor"), "run", str(MINI), str(song),
                               str(tmp_path / "o.json")], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not any(  # its spool folder, not another transient file
            n.startswith(spool_module.PREFIX) for n in os.listdir(tmp)):
        time.sleep(0.005)
    killed.kill()  # in the middle of the file
    killed.wait()
    left = os.listdir(tmp)
    assert [n.startswith(f"{spool_module.PREFIX}{killed.pid}@") for n in left] == [True]

    live = tempfile.mkdtemp(prefix=f"{spool_module.PREFIX}{procs.tag()}.", dir=tmp)
    elsewhere = tempfile.mkdtemp(prefix=f"{spool_module.PREFIX}{killed.pid}@elsewhere.",
                                 dir=tmp)
    unowned_old = tempfile.mkdtemp(prefix=spool_module.PREFIX, dir=tmp)  # older versions
    os.utime(unowned_old, (time.time() - 2 * 86400,) * 2)
    unowned_new = tempfile.mkdtemp(prefix=spool_module.PREFIX, dir=tmp)
    pid_reused = tempfile.mkdtemp(prefix=f"{spool_module.PREFIX}{procs.tag()}.", dir=tmp)
    os.utime(pid_reused, (1e9,) * 2)  # last used before this process started: not its own
    short = write_audio(tmp_path / "short.wav", click_track(2.0))
    result = subprocess.run([command("extractor"), "run", str(MINI), str(short),
                             str(tmp_path / "o.json")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    kept = {os.path.join(tmp, n) for n in os.listdir(tmp)}
    assert kept == {live, elsewhere, unowned_new}


def test_owner_tags_and_liveness():
    from runner import procs

    assert procs.tag() == f"{os.getpid()}@{procs.host()}" and "@" not in procs.host()
    now = __import__("time").time()
    assert not procs.gone(os.getpid(), procs.host(), now)
    assert procs.gone(os.getpid(), procs.host(), now - 10 ** 6)  # a pid given again since
    assert not procs.gone(2 ** 22 + 1, "elsewhere", now)  # another machine: cannot tell
    assert procs.gone(2 ** 22 + 1, procs.host(), now)  # above the largest pid: no process
