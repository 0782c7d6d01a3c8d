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

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runner.tree import flatten  # noqa: E402
from tests.reference_report import compare, emit, parse  # noqa: E402

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


def main() -> None:
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as std

    from runner.extract import Extractor

    path, runs, flags, overrides, params = parse(sys.argv[1:], PARAMS, ("--music",))
    refs = [std.FreesoundExtractor(**params)(path)[0] for _ in range(runs)]
    doc, _ = Extractor("freesound_general", overrides).analyse(path)
    report = compare(refs, doc)
    ours = flatten(doc)
    report["picked"] = {name: ours.get(name) for name in PICKED}
    if "--music" in flags:
        music_doc, _ = Extractor("freesound_music", overrides).analyse(path)
        report["music_sections"] = sorted(music_doc)
        report["music"] = sorted(
            name for name, value in flatten(music_doc).items()
            if not name.startswith("metadata.") and ours.get(name) != value
        )
    emit(report)


if __name__ == "__main__":
    main()
