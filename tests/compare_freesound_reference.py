"""Run essentia.standard.FreesoundExtractor and our freesound profiles on one file; print a report.

Runs in its own process (tests call it with subprocess) so each comparison starts clean.
Usage: python tests/compare_freesound_reference.py AUDIO [--runs N] [--music] [--set KEY=VALUE ...]

The report (JSON on stdout) compares every FreesoundExtractor descriptor with the
freesound_general profile's output: "missing" (not in ours), "extra" (only in ours), and per
descriptor "rel"/"abs" differences, or "equal" for strings and "shape" for a shape mismatch.
With --runs N, FreesoundExtractor runs N times and "self" gives how far its own runs disagree
(the range of its N values, relative to the first run's value, which "rel" and "abs" compare
against): it is not deterministic on audio with digital silence. With --music, freesound_music runs too:
"music" lists its descriptors whose values differ from freesound_general's (none may: it is the
same graph) and "music_sections" the top-level sections it writes. "picked" holds a few of our
values, for checks of what the audio is (tempo of a loop, start of a padded sound).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

# our option -> FreesoundExtractor parameter
PARAMS = {
    "options.lowlevel.frameSize": "lowlevelFrameSize",
    "options.lowlevel.hopSize": "lowlevelHopSize",
    "options.lowlevel.silentFrames": "lowlevelSilentFrames",
    "options.tonal.frameSize": "tonalFrameSize",
    "options.tonal.hopSize": "tonalHopSize",
    "options.tonal.silentFrames": "tonalSilentFrames",
    "options.analysisSampleRate": "analysisSampleRate",
    "options.startTime": "startTime",
    "options.endTime": "endTime",
    "options.rhythm.method": "rhythmMethod",
}


PICKED = ["rhythm.bpm", "rhythm.bpm_loop", "rhythm.bpm_loop_confidence", "rhythm.beats_count",
          "rhythm.onset_count", "tonal.key.key", "sfx.duration", "lowlevel.sound_start_frame",
          "lowlevel.sound_stop_frame", "metadata.tags.file_name"]


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def main() -> None:
    import essentia
    import essentia.standard as std

    from runner.extract import Extractor

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    path = sys.argv[1]
    rest = sys.argv[2:]
    runs = 1
    if "--runs" in rest:
        at = rest.index("--runs")
        runs = int(rest[at + 1])
        del rest[at:at + 2]
    with_music = "--music" in rest
    overrides = [a for a in rest if a not in ("--set", "--music")]
    params = {}
    for item in overrides:  # the same settings, given to FreesoundExtractor as parameters
        key, value = item.split("=", 1)
        params[PARAMS[key]] = _value(value)
    refs = [std.FreesoundExtractor(**params)(path)[0] for _ in range(runs)]
    ref = refs[0]
    doc, _ = Extractor("freesound_general", overrides).analyse(path)
    ours = flatten(doc)
    report = {
        "missing": [],
        "diff": {},
        "extra": sorted(set(ours) - set(ref.descriptorNames())),
        "picked": {name: ours.get(name) for name in PICKED},
    }
    if with_music:
        music_doc, _ = Extractor("freesound_music", overrides).analyse(path)
        report["music_sections"] = sorted(music_doc)
        report["music"] = sorted(
            name for name, value in flatten(music_doc).items()
            if not name.startswith("metadata.") and ours.get(name) != value
        )
    for name in ref.descriptorNames():
        if name not in ours:
            report["missing"].append(name)
            continue
        r, o = ref[name], ours[name]
        if isinstance(r, str) or (isinstance(r, list) and r and isinstance(r[0], str)):
            report["diff"][name] = {"equal": r == o, "ref": r, "ours": o}
            continue
        r = np.asarray(r, dtype=float)
        o = np.asarray(o, dtype=float)
        if r.shape != o.shape:
            report["diff"][name] = {"shape": [list(r.shape), list(o.shape)]}
            continue
        scale = np.maximum(np.abs(r), 1e-6)
        self_rel = 0.0
        runs_of = [np.asarray(other[name], dtype=float) for other in refs]
        if any(a.shape != r.shape for a in runs_of):
            self_rel = float("inf")
        elif r.size and len(runs_of) > 1:  # the range of its own runs, relative to the first
            stacked = np.stack(runs_of)
            self_rel = float(np.max((stacked.max(axis=0) - stacked.min(axis=0)) / scale))
        report["diff"][name] = {
            "rel": float(np.max(np.abs(r - o) / scale)) if r.size else 0.0,
            "abs": float(np.max(np.abs(r - o))) if r.size else 0.0,
            "self": self_rel,
        }
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown of Essentia's C++ objects


if __name__ == "__main__":
    main()
