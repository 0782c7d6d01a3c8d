"""The spool (runner.spool): the file is decoded once, and what later passes read from disk is
exactly the signal the first pass analysed, whatever its length; where that cannot be made
exact the later passes decode again and the results are the same."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from runner import spool as spool_module
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
    from runner import aggregate, compile, load
    from runner.run import Executor

    plan = compile.compile_profile(load.load_profile("music", overrides))
    executor = Executor(plan)
    executor.spool_audio = spool_audio
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

    stage0 = spooled.networks[(0, 0)]
    assert stage0.source.paramValue("filename") == str(path)
    later = [net for key, net in spooled.networks.items() if key != (0, 0)]
    assert later and all(key[-1] is True for key in spooled.networks if key != (0, 0))
    assert all(net.source.paramValue("filename").endswith("signal.wav") for net in later)
    assert os.listdir(tmpdir_) == []  # removed when the file's analysis ended
    assert all(net.source.paramValue("filename") == str(path)
               for key, net in decoded.networks.items())


def test_a_bad_file_between_good_ones_leaves_no_spool_and_changes_nothing(tmp_path, tmpdir_):
    """A failed analysis drops its networks and their spool; the next file is unaffected."""
    from runner import compile, load
    from runner.errors import AudioError
    from runner.run import Executor

    good = write_audio(tmp_path / "a.wav", click_track(6.0, seed=6))
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"RIFF" + os.urandom(3000))
    plan = compile.compile_profile(load.load_profile("tonal"))
    executor = Executor(plan)
    first = dict(executor.analyse(str(good)).singles)
    assert executor.networks[(0, 0)].spool is not None
    with pytest.raises(AudioError):
        executor.analyse(str(bad))
    assert os.listdir(tmpdir_) == []
    again = dict(executor.analyse(str(good)).singles)
    assert again.keys() == first.keys()
    for name, value in first.items():
        assert np.array_equal(np.asarray(value), np.asarray(again[name])), name
    assert f"{AUDIO}.signal" not in executor.analyse(str(good)).values
