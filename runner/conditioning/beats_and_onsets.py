"""RhythmExtractor2013 (method degara) and OnsetRate as derive functions: Essentia's own
beat tracker (TempoTapDegara) and onset picker (Onsets) on onset detection functions computed
every frame at once (runner/conditioning/onset_functions.py), a second of CPU less per
4-minute track. Their outputs are those of the two algorithms, port for port, so the rhythm
profile's descriptors read them unchanged; the beats, tempo and onsets equal Essentia's
(tests/test_onset_functions.py).

Unlike the algorithms, which assume 44100 Hz whatever the signal's rate (at 48 kHz their tempo
reads 8.1 % slow and their times 8.8 % late, without a word), both take the analysis rate:
the frames keep their sizes in samples and the beat tracker and onset picker get the frame
rate they have (multifeature, Essentia's algorithm itself, gets the signal resampled to 44100
Hz).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.conditioning.onset_functions import onset_functions
from runner.derive import function
from runner.registry import quiet_essentia

SAMPLE_RATE = 44100.0  # RhythmExtractor2013 and OnsetRate assume it
BEAT_FRAME, BEAT_HOP = 2048, 1024  # BeatTrackerDegara's frames (from zero)
ONSET_FRAME, ONSET_HOP = 1024, 512  # OnsetRate's (centred)
PERIOD_TOLERANCE = 5.0  # RhythmExtractor2013's, in BPM
f32 = np.float32


def _sequential_sum(values: np.ndarray) -> np.float32:
    """Essentia's float sum: one value after the other, in float32."""
    return np.cumsum(values, dtype=np.float32)[-1] if values.size else f32(0.0)


def tempo_from_ticks(ticks: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """RhythmExtractor2013's tempo from its beats, in its float arithmetic: the mean of the
    per-interval tempi within PERIOD_TOLERANCE of the most frequent (2-BPM bins); 0 with
    fewer than two beats. Returns (bpm, estimates, bpmIntervals)."""
    ticks = np.asarray(ticks, dtype=np.float32).reshape(-1)
    if ticks.size < 2:
        return 0.0, np.zeros(0, np.float32), np.zeros(0, np.float32)
    intervals = (ticks[1:] - ticks[:-1]).astype(np.float32)
    tempi = (60.0 / intervals.astype(np.float64)).astype(np.float32)
    halves = (tempi.astype(np.float64) / 2.0).astype(np.float32)
    index = (np.maximum(halves, f32(0.0)) + f32(0.5)).astype(np.int64)  # bincount's bins
    closest = f32(np.argmax(np.bincount(index)) * 2)
    tempi = (halves.astype(np.float64) * 2.0).astype(np.float32)
    estimates = tempi[np.abs(closest - tempi) < PERIOD_TOLERANCE]
    if estimates.size == 0:
        return float(closest), estimates, intervals
    return float(_sequential_sum(estimates) / f32(estimates.size)), estimates, intervals


@function(inputs=("signal",), outputs=("bpm", "ticks", "confidence", "estimates", "bpmIntervals"),
          types={"bpm": "real", "ticks": "vector_real", "confidence": "real",
                 "estimates": "vector_real", "bpmIntervals": "vector_real"},
          input_types={"signal": "vector_real"},
          ranges={"method": "{degara,multifeature}", "minTempo": "[40,180]",
                  "maxTempo": "[60,250]", "sampleRate": "(0,inf)"},
          method="degara", minTempo=40, maxTempo=208, sampleRate=SAMPLE_RATE)
def rhythm_extractor_2013(signal: Any, method: str, minTempo: int,  # noqa: N803
                          maxTempo: int, sampleRate: float) -> dict[str, Any]:  # noqa: N803
    """RhythmExtractor2013. With method degara: BeatTrackerDegara's complex-domain function
    (2048-sample frames from zero, hop 1024), TempoTapDegara's beats, the tempo from them;
    multifeature (five onset functions, ten times slower) is Essentia's algorithm itself."""
    signal = np.asarray(signal, dtype=np.float32).reshape(-1)
    if method != "degara":
        return _essentia_rhythm(signal, method, int(minTempo), int(maxTempo), float(sampleRate))
    odf = onset_functions(signal, BEAT_FRAME, BEAT_HOP, start_from_zero=True, hfc=False)["complex"]
    ticks = np.zeros(0, dtype=np.float32)
    if odf.size:
        tracker = quiet_essentia().standard.TempoTapDegara(
            sampleRateODF=float(sampleRate) / BEAT_HOP, resample="x2", minTempo=int(minTempo),
            maxTempo=int(maxTempo))
        ticks = np.asarray(tracker(odf), dtype=np.float32)
    if ticks.size == 1:  # RhythmExtractor2013 drops a lone beat (its pool reads one value as a
        ticks = ticks[:0]  # number, not a list of beats): so do we, for the same output
    bpm, estimates, intervals = tempo_from_ticks(ticks)
    return {"bpm": bpm, "ticks": ticks, "confidence": 0.0, "estimates": estimates,
            "bpmIntervals": intervals}


def _essentia_rhythm(signal: np.ndarray, method: str, min_tempo: int, max_tempo: int,
                     sample_rate: float) -> dict[str, Any]:
    """Essentia's RhythmExtractor2013 itself, on the signal at the 44100 Hz it requires."""
    essentia = quiet_essentia()
    if sample_rate != SAMPLE_RATE:
        signal = essentia.standard.Resample(inputSampleRate=sample_rate,
                                            outputSampleRate=SAMPLE_RATE)(signal)
    values = essentia.standard.RhythmExtractor2013(method=method, minTempo=min_tempo,
                                                   maxTempo=max_tempo)(signal)
    return dict(zip(("bpm", "ticks", "confidence", "estimates", "bpmIntervals"), values,
                    strict=True))


@function(inputs=("signal",), outputs=("onsetTimes", "onsetRate"),
          types={"onsetTimes": "vector_real", "onsetRate": "real"},
          input_types={"signal": "vector_real"}, ranges={"sampleRate": "(0,inf)"},
          sampleRate=SAMPLE_RATE)
def onset_rate(signal: Any, sampleRate: float) -> dict[str, Any]:  # noqa: N803
    """OnsetRate (streaming): Onsets on the HFC and complex-domain functions of 1024-sample
    centred frames (hop 512), and their number per second of frames."""
    rate_hz = f32(sampleRate)
    functions = onset_functions(np.asarray(signal, dtype=np.float32), ONSET_FRAME, ONSET_HOP,
                                start_from_zero=False, sample_rate=float(rate_hz))
    frames = functions["hfc"].size
    if frames == 0:
        return {"onsetTimes": np.zeros(0, dtype=np.float32), "onsetRate": 0.0}
    detections = np.vstack([functions["hfc"], functions["complex"]]).astype(np.float32)
    onsets = quiet_essentia().standard.Onsets(frameRate=float(rate_hz) / ONSET_HOP)(
        detections, np.ones(2, dtype=np.float32))
    rate = f32(len(onsets)) / f32(f32(frames * ONSET_HOP) / rate_hz)
    return {"onsetTimes": np.asarray(onsets, dtype=np.float32), "onsetRate": float(rate)}
