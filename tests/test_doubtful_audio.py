"""Every real audio file gets an analysis; a doubtful one says why (metadata.warnings).

Silent, very short and silent-but-for-a-click files get a valid output from every built-in
profile, with no internal maths in any message; statistics that do not exist (the inverse
covariance of silence or of fewer frames than dimensions) are null. Files with more than two
channels are decoded with libsndfile and downmixed (runner/analysis/multichannel.py). A file that
decodes much shorter than its header says (a truncated MP3) is analysed and warned about.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runner import aggregate, registry
from runner.analysis import long_tracks, multichannel
from runner.errors import AudioError
from runner.extract import Extractor
from tests.conftest import SR, click_track, tone, write_audio
from tests.test_cli import run

PROFILES = ["music", "lowlevel", "rhythm", "tonal", "beats", "freesound_general",
            "freesound_music"]
INTERNAL = ("Essentia", "PoolAggregator", "SingleGaussian", "matrix", "Traceback", "<input>",
            "Error while")


def _walk(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, path)
    else:
        yield path, value


def _nulls(doc) -> set[str]:
    return {path for path, value in _walk(doc) if value is None
            and not path.startswith(".metadata")}


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("odd")
    click_only = np.zeros(4 * SR, np.float32)
    click_only[SR:SR + 2048] = click_track(1.0)[:2048]
    return {
        "silence_10s": write_audio(folder / "silence.wav", np.zeros(10 * SR, np.float32)),
        "note_50ms": write_audio(folder / "short.wav", click_track(1.0)[:int(0.05 * SR)]),
        "samples_44": write_audio(folder / "tiny.wav", click_track(1.0)[:44]),
        "silent_but_a_click": write_audio(folder / "click.wav", click_only),
    }


@pytest.mark.parametrize("profile", PROFILES)
def test_every_builtin_profile_analyses_silent_and_tiny_files(profile, odd_files):
    """A valid output (analyse() validates it against the profile's schema) for each file,
    with finite numbers or null, and the warning the file deserves."""
    extractor = Extractor(profile)
    for name, path in odd_files.items():
        doc, _ = extractor.analyse(str(path))
        warnings = doc["metadata"]["warnings"]
        for where, value in _walk(doc):
            assert not (isinstance(value, float) and not math.isfinite(value)), (name, where)
        assert not any(word in w for w in warnings for word in INTERNAL), warnings
        assert len(warnings) <= 1, (name, warnings)
        nulls = _nulls(doc)
        assert all(n.endswith(("icov", "cov")) for n in nulls), (name, nulls)
        if name == "silence_10s":
            assert len(warnings) == 1 and warnings[0].startswith("silent: digital silence")
        elif name == "silent_but_a_click":
            assert warnings == [] and not nulls
        elif nulls:  # only the music profiles have cov/icov
            assert warnings[0].startswith("too short: ") and all(n in warnings[0] for n in
                                                                 ("mfcc.icov", "gfcc.icov"))
        if profile in ("music", "lowlevel"):
            expected = {".lowlevel.mfcc.icov", ".lowlevel.gfcc.icov"}
            assert nulls == (set() if name == "silent_but_a_click" else expected), name


def test_a_few_samples_too_few_for_any_analysis_is_one_plain_line(tmp_path):
    """A one-sample file: FreesoundExtractor's envelope descriptors refuse it; the error says
    so in words (and goes to failures.jsonl in a batch)."""
    path = write_audio(tmp_path / "one.wav", np.full(1, 0.5, np.float32))
    with pytest.raises(AudioError) as caught:
        Extractor("freesound_general").analyse(str(path))
    assert str(caught.value) == f"{path}: too short to analyse: 1 sample of audio"
    doc, _ = Extractor("lowlevel").analyse(str(path))  # profiles that can, analyse it
    assert doc["metadata"]["warnings"]


def test_single_file_run_prints_one_warning_line(tmp_path, odd_files):
    out = tmp_path / "out.json"
    result = run("streaming-extractor-lowlevel", str(odd_files["silence_10s"]), str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines == [f"warning: {odd_files['silence_10s']}: silent: digital silence (every "
                     "sample is 0); the descriptors describe silence (tempo, key and the like "
                     "mean nothing); null where undefined: lowlevel.gfcc.icov, "
                     "lowlevel.mfcc.icov"]
    doc = json.loads(out.read_text())
    assert doc["metadata"]["warnings"] == [lines[0].split(": ", 2)[2]]
    assert doc["lowlevel"]["mfcc"]["icov"] is None
    assert doc["lowlevel"]["mfcc"]["cov"] == [[0.0] * 13] * 13  # it exists: all zeros


def test_a_clean_file_has_an_empty_warnings_list(clicks_wav):
    doc, _ = Extractor("beats").analyse(str(clicks_wav))
    assert doc["metadata"]["warnings"] == []


# -- undefined statistics ------------------------------------------------------------------------
def test_a_singular_covariance_gives_the_other_statistics_and_a_null_inverse():
    essentia = registry.quiet_essentia()
    pool = essentia.Pool()
    for _ in range(50):
        pool.add("x", np.ones(4, np.float32))  # frames that never change
    undefined: dict[str, str] = {}
    out = aggregate._statistics(pool, "x", ("mean", "cov", "icov"), undefined)
    assert list(out["x.mean"]) == [1.0] * 4
    assert np.array_equal(out["x.cov"], np.zeros((4, 4), np.float32))
    assert out["x.icov"] is None and undefined == {"x.icov": aggregate.CONSTANT}


def test_rank_deficient_covariances_have_no_inverse(tmp_path):
    """Fewer frames than dimensions: Essentia inverts rounding noise into large numbers; the
    output says null (and why) instead."""
    path = write_audio(tmp_path / "short.wav", click_track(1.0)[:int(0.1 * SR)])
    doc, analysis = Extractor("lowlevel").analyse(str(path))
    assert doc["lowlevel"]["mfcc"]["icov"] is None
    assert analysis.undefined == {"lowlevel.mfcc.icov": aggregate.FEW,
                                  "lowlevel.gfcc.icov": aggregate.FEW}
    assert doc["lowlevel"]["mfcc"]["cov"] is not None


def test_long_tracks_aggregated_stage_by_stage_give_the_same_nulls(monkeypatch, odd_files):
    """Long tracks are aggregated as their stages finish (aggregate.EarlyAggregation):
    a silent one gets the same output as in one piece."""
    whole, _ = Extractor("lowlevel").analyse(str(odd_files["silence_10s"]))
    monkeypatch.setattr(long_tracks, "LONG_TRACK_SECONDS", 1.0)
    early = Extractor("lowlevel")
    doc, _ = early.analyse(str(odd_files["silence_10s"]))
    assert early.early is not None and early.early.names  # the early path ran
    assert doc["lowlevel"]["mfcc"]["icov"] is None
    assert doc["metadata"]["warnings"] == whole["metadata"]["warnings"]
    assert doc["lowlevel"]["mfcc"]["cov"] == whole["lowlevel"]["mfcc"]["cov"]


# -- truncated files ------------------------------------------------------------------------------
def test_a_truncated_mp3_is_analysed_with_a_warning(tmp_path):
    whole = write_audio(tmp_path / "whole.mp3", click_track(60.0))
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 60])
    extractor = Extractor("beats")
    doc, _ = extractor.analyse(str(cut))
    (warning,) = doc["metadata"]["warnings"]
    assert warning.startswith("truncated: decoded 0.") and "its header says 60 s" in warning
    intact, _ = extractor.analyse(str(whole))
    assert intact["metadata"]["warnings"] == []


def test_a_truncated_wav_is_analysed_with_a_warning(tmp_path):
    whole = write_audio(tmp_path / "whole.wav", click_track(8.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 4])
    doc, _ = Extractor("beats").analyse(str(cut))
    assert doc["metadata"]["warnings"] == [
        "truncated: decoded 2.00 s of audio, its header says 8 s (a damaged or incomplete "
        "file?)"]


# -- more than two channels -----------------------------------------------------------------------
def _multichannel(path: Path, channels: np.ndarray, **kwargs) -> Path:
    soundfile.write(str(path), channels, SR, **kwargs)
    return path


def _layers(count: int, seconds: float = 4.0) -> np.ndarray:
    """A different signal in every channel (clicks at different tempi, quieter each)."""
    return np.stack([click_track(seconds, bpm=90 + 10 * i, seed=i) * 0.5 / (i + 1)
                     for i in range(count)], axis=1).astype(np.float32)


@pytest.mark.parametrize("count", [3, 6, 8])
def test_multichannel_wavs_are_downmixed_like_stereo_ones(tmp_path, count, monkeypatch):
    """The analysis of an N-channel WAV equals the analysis of its BS.775 stereo downmix
    written by the test; the output keeps the file's own properties and says it was mixed."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    layers = _layers(count)
    path = _multichannel(tmp_path / f"ch{count}.wav", layers, subtype="PCM_24")
    decoded = soundfile.read(str(path), dtype="float64")[0]
    c = math.sqrt(0.5)
    fl, fr, fc = decoded[:, 0], decoded[:, 1], decoded[:, 2]
    left, right = fl + c * fc, fr + c * fc
    if count >= 6:  # L R C LFE Ls Rs [Lside Rside]: the LFE (index 3) left out
        left, right = left + c * decoded[:, 4], right + c * decoded[:, 5]
    if count == 8:
        left, right = left + c * decoded[:, 6], right + c * decoded[:, 7]
    stereo = _multichannel(tmp_path / "stereo.wav",
                           np.stack([left, right], axis=1).astype(np.float32), subtype="FLOAT")
    extractor = Extractor("lowlevel")
    doc, _ = extractor.analyse(str(path))
    expected, _ = extractor.analyse(str(stereo))
    assert os.listdir(folder) == []  # the downmix is removed with the analysis
    props = doc["metadata"]["audio_properties"]
    assert props["number_channels"] == count and props["codec"] == "pcm_s24le"
    assert props["lossless"] and "md5_encoded" not in props
    assert doc["metadata"]["warnings"] == [
        f"downmixed from {count} channels to stereo (ITU-R BS.775, WAV/FLAC channel order); "
        "EBU R128 loudness is that of the stereo downmix"]
    for name in ("spectral_centroid", "mfcc", "loudness_ebu128"):
        ours, theirs = doc["lowlevel"][name], expected["lowlevel"][name]
        for key in ("mean", "integrated"):
            if key in ours:
                np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-4)
    assert doc["lowlevel"]["dynamic_complexity"] == pytest.approx(
        expected["lowlevel"]["dynamic_complexity"], rel=1e-4)


def test_only_the_lfe_is_left_out_of_a_5_1_downmix(tmp_path):
    sound = click_track(2.0)
    lfe_only = np.zeros((sound.size, 6), np.float32)
    lfe_only[:, 3] = sound
    doc, _ = Extractor("beats").analyse(str(_multichannel(tmp_path / "lfe.flac", lfe_only)))
    assert doc["metadata"]["warnings"][1].startswith("silent: digital silence")
    centre = np.zeros_like(lfe_only)
    centre[:, 2] = sound
    wav = multichannel.downmix(str(_multichannel(tmp_path / "c.flac", centre)), 6)
    try:
        mix = soundfile.read(wav.wav, dtype="float32")[0]
    finally:
        wav.remove()
    assert wav.codec == "flac"
    np.testing.assert_allclose(mix[:, 0], mix[:, 1])
    np.testing.assert_allclose(mix[:, 0], sound * np.float32(math.sqrt(0.5)), atol=1e-4)


def test_ogg_files_use_the_vorbis_channel_order(tmp_path):
    """In Vorbis order a 5.1 file's second channel is the centre (in WAV order: right)."""
    sound = tone(2.0, 440.0, amp=0.5)
    layers = np.zeros((sound.size, 6), np.float32)
    layers[:, 1] = sound
    path = _multichannel(tmp_path / "c.ogg", layers, format="OGG", subtype="VORBIS")
    mixed = multichannel.downmix(str(path), 6)
    try:
        mix = soundfile.read(mixed.wav, dtype="float64")[0]
    finally:
        mixed.remove()
    left, right = np.sqrt(np.mean(mix ** 2, axis=0))
    assert left == pytest.approx(right, rel=0.02) and left > 0.2
    assert mixed.codec == "vorbis" and "Vorbis channel order" in mixed.warning()


def _wavex(path: Path, layers: np.ndarray, mask: int) -> Path:
    """A 16-bit WAVE_FORMAT_EXTENSIBLE file with the given channel mask."""
    channels = layers.shape[1]
    data = (np.clip(layers, -1, 1) * 32767).astype("<i2").tobytes()
    pcm = bytes.fromhex("0100000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, SR, SR * 2 * channels, 2 * channels, 16,
                      22, 16, mask) + pcm
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_a_wav_with_a_channel_map_follows_it(tmp_path):
    """WAVE_FORMAT_EXTENSIBLE names its channels; its map wins over the default order: the
    third of four channels is the centre here (mask FL FR FC LFE), a rear left by default."""
    sound = tone(1.0, 440.0, amp=0.5)
    layers = np.zeros((sound.size, 4), np.float32)
    layers[:, 2] = sound
    mixed = multichannel.downmix(str(_wavex(tmp_path / "map.wav", layers, 0x0F)), 4)
    try:
        mix = soundfile.read(mixed.wav, dtype="float64")[0]
    finally:
        mixed.remove()
    assert "channel map from the file" in mixed.warning()
    np.testing.assert_allclose(mix[:, 0], mix[:, 1])
    assert np.abs(mix[:, 0]).max() == pytest.approx(0.5 * math.sqrt(0.5), rel=1e-3)


def test_more_than_eight_channels_are_mixed_with_equal_weight(tmp_path):
    layers = _layers(10, seconds=1.0)
    mixed = multichannel.downmix(str(_multichannel(tmp_path / "ten.wav", layers,
                                                   subtype="FLOAT")), 10)
    try:
        mix = soundfile.read(mixed.wav, dtype="float32")[0]
    finally:
        mixed.remove()
    np.testing.assert_allclose(mix[:, 0], layers.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(mix[:, 0], mix[:, 1])
    assert "equal weight" in mixed.warning()


def test_a_multichannel_file_libsndfile_cannot_read_is_one_line_with_a_fix(tmp_path):
    path = tmp_path / "surround.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(2000))
    with pytest.raises(AudioError) as caught:
        multichannel.downmix(str(path), 6)
    assert str(caught.value) == (
        f"{path}: 6-channel m4a audio cannot be decoded here (Essentia's decoder takes at "
        "most 2 channels, libsndfile does not read this file); convert it to FLAC or WAV, "
        "e.g. ffmpeg -i IN -c:a flac OUT.flac")


# -- the warning channel in batches --------------------------------------------------------------
def test_batches_show_count_and_list_warnings_and_keep_them_on_resume(tmp_path):
    lib, out = tmp_path / "lib", tmp_path / "out"
    lib.mkdir()
    write_audio(lib / "clean.wav", click_track(3.0))
    silent = write_audio(lib / "silent.wav", np.zeros(3 * SR, np.float32))
    (lib / "broken.mp3").write_bytes(b"not audio" * 100)
    first = run("streaming-extractor-beats", str(lib), "--output", str(out), "-j", "1")
    assert first.returncode == 1, first.stderr
    assert f"warning: {silent}: silent: digital silence" in first.stderr  # in the progress
    assert "2 done (1 with warnings), 0 skipped (up to date), 1 failed" in first.stderr
    assert f"warnings listed in {out / 'warnings.jsonl'}" in first.stderr
    listed = [json.loads(line) for line in (out / "warnings.jsonl").read_text().splitlines()]
    assert listed == [{"path": str(silent), "warning": "silent: digital silence (every sample "
                       "is 0); the descriptors describe silence (tempo, key and the like mean "
                       "nothing)"}]
    assert (out / "failures.jsonl").exists()

    (lib / "broken.mp3").unlink()
    again = run("streaming-extractor-beats", str(lib), "--output", str(out))
    assert again.returncode == 0 and "0 done, 2 skipped" in again.stderr
    assert [json.loads(line) for line in (out / "warnings.jsonl").read_text().splitlines()
            ] == listed  # the skipped file's warning stays listed

    write_audio(silent, click_track(3.0, seed=4))  # fixed, and analysed again
    fixed = run("streaming-extractor-beats", str(lib), "--output", str(out), "--force")
    assert fixed.returncode == 0 and "2 done, 0 skipped" in fixed.stderr
    assert "warning" not in fixed.stderr and not (out / "warnings.jsonl").exists()


def test_dask_tasks_bring_the_warnings_back(tmp_path):
    pytest.importorskip("distributed")
    from runner.batch import Job
    from runner.batch.dask_workers import DaskWorkers, analyse_task
    from runner.batch.extract_job import ExtractorWork

    silent = write_audio(tmp_path / "s.wav", np.zeros(2 * SR, np.float32))
    result = analyse_task((ExtractorWork, ("beats", (), "beats", False)), str(silent),
                          str(tmp_path / "s.json"))
    status, message, _, warnings = result
    assert status == "done" and message == "" and warnings[0].startswith("silent: ")

    class Done:
        def result(self):
            return result

    outcome = DaskWorkers._outcome(Job(0, silent, tmp_path / "s.json"), Done())
    assert outcome.status == "done" and outcome.warnings == warnings


@pytest.mark.parametrize("profile", ["music", "conditioning"])
def test_a_mono_file_after_a_stereo_one_is_measured_alone(profile, tmp_path):
    """Essentia's AudioLoader gives a mono file the right channel of the stereo file it decoded
    before (it writes only the left one): in a batch, EBU R128 loudness (and the conditioning
    profile's true peak) of a mono file depended on the file before it. Each must read as it
    does from a fresh extractor: a mono file's right channel is silence."""
    import soundfile

    t = np.arange(SR) / SR
    quiet = tmp_path / "quiet_mono.wav"  # one channel (write_audio writes two)
    soundfile.write(quiet, (0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), SR)
    loud = np.stack([0.9 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1).astype(np.float32)
    loud_path = write_audio(tmp_path / "loud_stereo.wav", loud)

    def levels(doc: dict) -> tuple:
        if profile == "music":
            return (doc["lowlevel"]["loudness_ebu128"]["integrated"],)
        return doc["conditioning"]["lufs"], doc["conditioning"]["true_peak"]

    overrides = ["options.conditioning.classifiers=false"] if profile == "conditioning" else []
    alone = levels(Extractor(profile, overrides).analyse(str(quiet))[0])
    extractor = Extractor(profile, overrides)
    runs = [levels(extractor.analyse(str(path))[0]) for path in (quiet, loud_path, quiet)]
    assert runs[0] == runs[2] == alone
    assert runs[1][0] > alone[0] + 15  # the stereo file is much louder: it was measured
