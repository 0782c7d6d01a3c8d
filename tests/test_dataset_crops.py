"""`extractor crops` (issue 23 item 5): exact-length crops on beats or every fourth bar's
downbeat, moved to zero crossings, faded, each with features recomputed on the crop; the batch
behaviour (bad files one line each, resume, --force).

Audio is made here: a tone with a click on every beat at 120 BPM, quiet in its first half and
loud in its second, so a crop's loudness tells whether it was measured on the crop. The
profile is a small stand-in with the conditioning profile's section names (bpm, lufs under
``conditioning``; ``rhythm.beats_position``), which keeps the tests to a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runner.cli import main
from runner.dataset import placement
from runner.dataset.cutting import CropSettings, CropWork, made_with
from runner.errors import AudioError

RATE = 44100
SECONDS = 8.0
BEAT = 0.5  # s: 120 BPM
LENGTH = 2 * RATE  # 2 s crops: four beats

STAND_IN = """\
name: conditioning_stand_in
description: the conditioning profile's names on a few algorithms, for fast tests
extends: _input
graph:
  rhythm_extractor: {algorithm: RhythmExtractor2013, params: {method: degara}, inputs: {signal: signal.signal}}
  ebu_r128: {algorithm: LoudnessEBUR128, inputs: {signal: audio.stereo}}
descriptors:
  conditioning.bpm: {from: rhythm_extractor.bpm, single: true}
  conditioning.lufs: {from: ebu_r128.integratedLoudness, single: true}
  rhythm.beats_position: {from: rhythm_extractor.ticks, single: true}
"""


def _track(seconds: float = SECONDS) -> np.ndarray:
    """Stereo: a 220 Hz tone (phase-shifted so beats do not fall on zero crossings) with a
    click every beat, 20 dB louder in its second half."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = 0.05 * np.sin(2 * np.pi * 220 * t + 0.7)
    click = np.sin(2 * np.pi * 1000 * np.arange(800) / RATE) * np.exp(-np.arange(800) / 200)
    for beat in np.arange(0.0, seconds, BEAT):
        i = int(round(beat * RATE))
        x[i:i + 800] += 0.1 * click[: len(x[i:i + 800])]
    x[n // 2:] *= 10.0
    return np.stack([x, 0.8 * x], axis=1).astype(np.float32)


def _grid(path: Path, beats: list[float], downbeats: list[float] | None) -> None:
    path.with_suffix(".BEATS_GRID").write_text(json.dumps({"beats": beats,
                                                           "downbeats": downbeats}))


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("profile") / "stand_in.yaml"
    path.write_text(STAND_IN)
    return str(path)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The track as 16-bit WAV with a beat grid beside it (beats every 0.5 s, downbeats every
    fourth beat); the signal as read back."""
    path = tmp_path_factory.mktemp("tracks") / "song.wav"
    soundfile.write(path, _track(), RATE, subtype="PCM_16")
    beats = list(np.arange(0.0, SECONDS, BEAT))
    _grid(path, beats, beats[::4])
    return path, soundfile.read(path, dtype="float32", always_2d=True)[0]


@pytest.fixture(scope="module")
def work(profile: str) -> CropWork:
    """One worker's job (one Extractor) reused by the tests; settings are swapped per test."""
    return CropWork(CropSettings(LENGTH), profile, [], force=True)


def _cut(work: CropWork, settings: CropSettings, src: Path, out: Path) -> list[dict]:
    work.settings = settings
    work(str(src), str(out / "song" / "crops.json"))
    manifest = json.loads((out / "song" / "crops.json").read_text())
    return [json.loads((out / "song" / e["info"]).read_text()) for e in manifest["crops"]]


def test_beat_crops_exact_length_zero_crossing_fades_positions(
        work: CropWork, source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    src, signal = source
    infos = _cut(work, CropSettings(LENGTH), src, tmp_path)
    mono = signal.mean(axis=1)
    reach = int(RATE * placement.ZERO_CROSSING_MS / 1000)
    anchors = [i["crop"]["start_sample"] - i["crop"]["zero_crossing_shift"] for i in infos]
    # 2 s crops, each on the first beat after the previous one (a crop on the beat at 6 s
    # would end past the track: its zero crossing comes after the beat)
    assert anchors == [0, 2 * RATE, 4 * RATE]
    for index, info in enumerate(infos, 1):
        crop = info["crop"]
        audio, rate = soundfile.read(tmp_path / "song" / f"song_{index}.flac", always_2d=True)
        assert rate == RATE and audio.shape == (LENGTH, 2)
        start = crop["start_sample"]
        anchor = start - crop["zero_crossing_shift"]
        assert anchor / RATE % BEAT == pytest.approx(0, abs=1 / RATE)  # snapped from a beat
        assert 0 < abs(crop["zero_crossing_shift"]) <= reach  # the beat itself is not one
        assert np.sign(mono[start - 1]) != np.sign(mono[start + 1]) or mono[start] == 0
        assert audio[0].tolist() == [0.0, 0.0] and audio[-1].tolist() == [0.0, 0.0]
        fade = int(RATE * placement.FADE_MS / 1000)
        middle = slice(fade, LENGTH - fade)
        assert np.allclose(audio[middle], signal[start:start + LENGTH][middle], atol=1e-4)
        assert abs(audio[1, 0]) < abs(signal[start + 1, 0]) + 1e-4  # faded in
        assert crop["start"] == round(start / len(signal), 6)
        assert crop["end"] == round((start + LENGTH) / len(signal), 6)
        assert crop["beats"] == "song.BEATS_GRID"
    assert [i["crop"]["start_sample"] for i in infos] == sorted(i["crop"]["start_sample"]
                                                                for i in infos)
    starts = [i["crop"]["start_sample"] for i in infos]
    assert all(b - a >= LENGTH for a, b in zip(starts, starts[1:], strict=False))  # no overlap
    # the features are the crop's own: the first crop is quiet, the last 20 dB louder
    assert infos[-1]["lufs"] - infos[0]["lufs"] == pytest.approx(20, abs=1.5)
    assert infos[-1]["bpm"] == pytest.approx(120, abs=5)  # 2 s: four beats to go by


def test_div4_starts_on_every_fourth_bars_downbeat(
        work: CropWork, source: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    _, signal = source
    src = tmp_path / "bars.wav"
    soundfile.write(src, signal, RATE, subtype="PCM_16")
    # uneven bars, so only counting bars (not seconds or beats) finds bars 0, 4 and 8
    downbeats = [0.0, 0.5, 1.5, 2.0, 3.0, 3.5, 4.5, 5.0, 6.0, 6.5]
    _grid(src, list(np.arange(0.0, SECONDS, BEAT)), downbeats)
    infos = _cut(work, CropSettings(RATE, "beats", div4=True), src, tmp_path)
    anchors = [i["crop"]["start_sample"] - i["crop"]["zero_crossing_shift"] for i in infos]
    assert anchors == [0, 3 * RATE, 6 * RATE]
    assert {i["crop"]["snapped_to"] for i in infos} == {"downbeat of a bar divisible by 4"}


def test_overlap_and_sequential(work: CropWork, source: tuple[Path, np.ndarray],
                                tmp_path: Path) -> None:
    src, _ = source
    overlap = _cut(work, CropSettings(LENGTH, "overlap"), src, tmp_path / "o")
    starts = [i["crop"]["start_sample"] - i["crop"]["zero_crossing_shift"] for i in overlap]
    assert starts == [int(s * RATE) for s in np.arange(0.0, 5.5, 1.0)]  # every half crop
    sequential = _cut(work, CropSettings(LENGTH, "sequential"), src, tmp_path / "s")
    assert [i["crop"]["start_sample"] for i in sequential] == [0, LENGTH, 2 * LENGTH,
                                                               3 * LENGTH]
    assert {i["crop"]["zero_crossing_shift"] for i in sequential} == {0}
    assert {i["crop"]["snapped_to"] for i in sequential} == {None}


def test_too_long_and_no_beats_are_one_line(work: CropWork, source: tuple[Path, np.ndarray],
                                            tmp_path: Path) -> None:
    src, _ = source
    work.settings = CropSettings(int(SECONDS * RATE) + 1)
    with pytest.raises(AudioError) as caught:
        work(str(src), str(tmp_path / "song" / "crops.json"))
    assert str(caught.value) == (f"{src}: crop length 352801 samples (8.00 s) is longer than "
                                 "the track (352800 samples, 8.00 s); track skipped")
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros((RATE * 3, 2), dtype=np.float32), RATE)
    _grid(silent, [], None)
    work.settings = CropSettings(RATE)
    with pytest.raises(AudioError) as caught:
        work(str(silent), str(tmp_path / "silent" / "crops.json"))
    assert str(caught.value) == f"{silent}: no beats found (--sequential crops without beats)"


def test_zero_crossing_and_fade_helpers() -> None:
    x = np.sin(2 * np.pi * 100 * np.arange(1000) / 1000.0 + 0.3)  # crossings every 5 samples
    found = placement.nearest_zero_crossing(x, 502, 10)
    assert abs(found - 502) <= 3 and np.sign(x[found - 1]) != np.sign(x[found + 1])
    assert placement.nearest_zero_crossing(np.ones(100), 50, 10) == 50  # none: unchanged
    faded = placement.fade(np.ones((1000, 1)), 10_000.0)  # 10 ms = 100 samples
    assert faded[0, 0] == 0 and faded[-1, 0] == 0 and faded[100:900, 0].tolist() == [1] * 800
    assert placement.every_fourth_bar(np.arange(10.0)).tolist() == [0, 4, 8]


def test_command_batch_resume_and_bad_files(profile: str, tmp_path: Path) -> None:
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    soundfile.write(tracks / "good.wav", _track(4.0), RATE, subtype="PCM_16")
    _grid(tracks / "good.wav", list(np.arange(0.0, 4.0, BEAT)), None)
    soundfile.write(tracks / "short.wav", _track(0.5), RATE, subtype="PCM_16")
    (tracks / "broken.flac").write_bytes(b"not audio at all")
    out = tmp_path / "out"
    argv = ["crops", str(tracks), "--length", str(RATE), "-o", str(out), "--profile", profile,
            "-j", "1"]
    assert main(argv) == 1
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    errors = sorted(f["error"] for f in failures)
    assert len(errors) == 2
    assert errors[0] == f"{tracks / 'broken.flac'}: unreadable audio (Format not recognised)"
    assert errors[1] == (f"{tracks / 'short.wav'}: crop length 44100 samples (1.00 s) is "
                         "longer than the track (22050 samples, 0.50 s); track skipped")
    made = sorted(p.name for p in (out / "good").iterdir())
    assert made == ["crops.json", "good_1.INFO", "good_1.flac", "good_2.INFO", "good_2.flac",
                    "good_3.INFO", "good_3.flac"]
    assert made_with(out / "good" / "crops.json", CropSettings(RATE))  # a rerun skips it
    # resume, in this process (a worker runs the same job): as if killed before the manifest
    kept = (out / "good" / "good_1.flac").stat().st_mtime_ns
    (out / "good" / "crops.json").unlink()
    (out / "good" / "good_3.INFO").unlink()
    work = CropWork(CropSettings(RATE), profile, [], force=False)
    work(str(tracks / "good.wav"), str(out / "good" / "crops.json"))
    assert (out / "good" / "good_1.flac").stat().st_mtime_ns == kept  # kept, not redone
    assert (out / "good" / "good_3.INFO").is_file()
    work.settings = CropSettings(RATE // 2)
    with pytest.raises(AudioError) as caught:
        work(str(tracks / "good.wav"), str(out / "good" / "crops.json"))
    assert str(caught.value) == (f"{tracks / 'good.wav'}: {out / 'good'} holds crops made "
                                 "with other settings (length 44100 samples, beats); --force "
                                 "recuts them")
    work.force, work.settings = True, CropSettings(2 * RATE)  # recut: the earlier files go
    work(str(tracks / "good.wav"), str(out / "good" / "crops.json"))
    assert made_with(out / "good" / "crops.json", CropSettings(2 * RATE))
    assert sorted(p.name for p in (out / "good").iterdir()) == [
        "crops.json", "good_1.INFO", "good_1.flac"]


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert main(["crops", str(tmp_path), "--length", "10", "--div4", "--sequential",
                 "-o", out]) == 2
    assert capsys.readouterr().err == ("error: usage: --div4 starts crops on downbeats; "
                                       "--sequential ignores beats: give one of the two\n")
    assert main(["crops", str(tmp_path / "none"), "--length", "10", "-o", out]) == 2
    assert capsys.readouterr().err == f"error: usage: {tmp_path / 'none'}: no such file or folder\n"
    typo = ["crops", str(tmp_path), "--length", "10", "-o", out,
            "--set", "options.conditioning.clasifiers=false"]
    assert main(typo) == 2 and not Path(out).exists()  # before any track, nothing written
    assert "did you mean 'conditioning.classifiers'?" in capsys.readouterr().err
