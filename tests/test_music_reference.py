"""The music profile against essentia.standard.MusicExtractor on several kinds of audio.

Every descriptor MusicExtractor writes must be in our output under the same name, with a value
that agrees. Tolerances, and why:
- CLEAN (relative 1e-4, absolute 1e-6 near zero): inputs without digital silence go through the
  same Essentia algorithms with the same parameters, so values agree to float32 rounding of the
  statistics; cov/icov are inverted in float32, so icov is allowed 1e-3.
- SENSITIVE (relative 2e-2): on MP3 input our spectra differ from MusicExtractor's in the last
  float32 bits (spectral_energy frames by at most 1.8e-7 absolute, 3e-7 relative, measured on
  tests/data/demo.mp3) although the decoded signal and the replay gain are bit-identical;
  descriptors built on peak picking or sorting (dissonance, spectral contrast, the moments of
  the equal-loudness spectrum, HPCP) and on matrix inversion (icov) amplify that, to at most
  1.2e-2 there.
- lowlevel.dynamic_complexity and rhythm.danceability are computed frame-wise (profiles
  lowlevel.yaml and rhythm.yaml; Essentia's algorithms keep the whole signal) and held to CLEAN
  like the rest, on every file here, including the silence-padded ones (digital silence at
  both ends, an odd length): measured at most 5e-7 relative on the padded files (1.7 to 3.1
  times Essentia's before leading/trailing silent blocks were dropped as Essentia drops them);
  Dynamic complexity is a level in dB, so it is also allowed 1e-5 dB absolute (DB_FLOOR): on
  the steady 3 s tone its value is 0.0019 dB and both sides differ from exact arithmetic by
  float32 rounding (Essentia's own value is 3.9e-4 relative from a float64 computation of its
  formula); ours is 6.3e-4 relative, 1.2e-6 dB, from Essentia's there.
- NOISY: FrameCutter's silentFrames="noise" fills digitally silent frames (MP3 encoder delay,
  gaps) with random noise, so MusicExtractor does not agree with itself on such files. There
  MusicExtractor runs eight times; means, medians and single values may differ from its first
  run by 10x the largest difference between its own runs (plus the tolerances above); means
  and medians at least 1e-2, since a third of the gap file's frames are noise (see
  tests/reference_report.py for the case that needed it). Extremes
  and spreads of frame-wise values (min, max, var, stdev, d*) are draws from the noise: its own
  runs differ by up to 30% there (spectral_skewness.min on the gap file), so they are not
  compared. The same files with silentFrames=keep (on both sides) are deterministic and are
  held to the tolerances above for every statistic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import click_track, tone, write_audio
from tests.reference_report import problems

HERE = Path(__file__).parent
SENSITIVE = ("lowlevel.dissonance.", "lowlevel.spectral_contrast_", "lowlevel.spectral_kurtosis.",
             "lowlevel.spectral_skewness.", "lowlevel.spectral_spread.", "tonal.hpcp.")
DB_FLOOR = {"lowlevel.dynamic_complexity": 1e-5}
EXPECTED_EXTRA = {
    "metadata.audio_properties.analysis.end_time", "metadata.profile.hash",
    "metadata.profile.name", "metadata.version.runner", "metadata.warnings", "rhythm.onset_times",
    "tonal.key_key", "tonal.key_scale", "tonal.key_strength",
    # the highlevel models, none of which is in the tests' model cache, are named as left out
    "metadata.models.left_out", "metadata.models.missing",
}


def compare(path: Path, *overrides: str, runs: int = 1) -> dict:
    args = [sys.executable, str(HERE / "compare_reference.py"), str(path), "--runs", str(runs)]
    for item in overrides:
        args += ["--set", item]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600,
                            cwd=HERE.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def limit_for(name: str) -> float:
    stat = name.rsplit(".", 1)[-1]
    if stat == "icov" or name.startswith(SENSITIVE):
        return 2e-2
    return 1e-4


def check(report: dict, noisy: bool) -> None:
    assert report["missing"] == []
    assert set(report["extra"]) <= EXPECTED_EXTRA
    found = problems(report, limit_for, noisy, abs_floor=1e-6, abs_floors=DB_FLOOR)
    assert not found, "\n".join(found)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("reference")
    rng = np.random.default_rng(3)
    floor = lambda n: (1e-4 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    clicks = click_track(30.0, bpm=128)
    stereo = np.stack([clicks + floor(clicks.size), 0.5 * clicks + floor(clicks.size)], axis=1)
    melody = np.concatenate([tone(2.0, f, sr=48000, amp=0.3) for f in (440, 494, 523, 587, 659)])
    melody = melody + floor(melody.size)
    gap = np.concatenate([click_track(4.0), np.zeros(4 * 44100, np.float32), click_track(4.0)])
    short = tone(3.0, 330.0, sr=22050) + floor(3 * 22050)
    no_beats = tone(1.5, 440.0)  # too short for a beat: Essentia's zero fallbacks
    # digital silence at both ends (as in mastered tracks), 0.3 s in the middle, odd length
    zeros = lambda seconds: np.zeros(int(seconds * 44100), np.float32)  # noqa: E731
    padded = np.concatenate([zeros(0.6), click_track(3.0, bpm=128), zeros(0.3),
                             click_track(4.0, bpm=128, seed=2)[:4 * 44100 - 4321], zeros(1.5)])
    return {
        "stereo_wav_30s": write_audio(d / "stereo.wav", stereo),
        "mono_flac_48k": write_audio(d / "melody.flac", melody, sr=48000),
        "silence_gap_wav": write_audio(d / "gap.wav", gap),
        "short_22k_wav": write_audio(d / "short.wav", short, sr=22050),
        "sine_1_5s_no_beats": write_audio(d / "sine.wav", no_beats),
        "silence_padded_wav": write_audio(d / "padded.wav", padded),
        "silence_padded_mp3": write_audio(d / "padded.mp3", padded),
        "demo_mp3": HERE / "data" / "demo.mp3",
    }


@pytest.mark.parametrize(
    "name", ["stereo_wav_30s", "mono_flac_48k", "short_22k_wav", "sine_1_5s_no_beats"])
def test_music_profile_matches_music_extractor(files, name):
    check(compare(files[name]), noisy=False)


@pytest.mark.parametrize("name", ["silence_gap_wav", "demo_mp3", "silence_padded_wav"])
def test_music_profile_matches_on_audio_with_digital_silence(files, name):
    check(compare(files[name], runs=8), noisy=True)


@pytest.mark.parametrize(
    "name", ["silence_gap_wav", "demo_mp3", "silence_padded_wav", "silence_padded_mp3"])
def test_digital_silence_kept_is_deterministic_and_exact(files, name):
    report = compare(files[name], "options.lowlevel.silentFrames=keep",
                     "options.tonal.silentFrames=keep")
    # The 2 s loudness frames are cut with silentFrames=noise in Essentia's code whatever the
    # options say, so average_loudness alone keeps its noise.
    report["diff"].pop("lowlevel.average_loudness")
    check(report, noisy=False)


def test_essentia_options_reach_the_graph(files):
    """Trimming, another analysis rate and another frame size, set like Essentia's profiles."""
    report = compare(files["mono_flac_48k"], "options.startTime=1.5", "options.endTime=7.25",
                     "options.analysisSampleRate=48000", "options.lowlevel.frameSize=4096",
                     "options.lowlevel.hopSize=2048")
    check(report, noisy=False)
