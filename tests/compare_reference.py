"""Run essentia.standard.MusicExtractor and our music profile on one file; print a JSON report.

Runs in its own process (tests call it with subprocess) so each comparison starts clean.
Usage: python tests/compare_reference.py AUDIO [--runs N] [--set KEY=VALUE ...]
The report is described in tests/reference_report.py.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.reference_report import compare, emit, parse  # noqa: E402

# our option -> MusicExtractor parameter
PARAMS = {
    "options.lowlevel.frameSize": "lowlevelFrameSize",
    "options.lowlevel.hopSize": "lowlevelHopSize",
    "options.analysisSampleRate": "analysisSampleRate",
    "options.startTime": "startTime",
    "options.endTime": "endTime",
    "options.rhythm.method": "rhythmMethod",
    "options.lowlevel.silentFrames": "lowlevelSilentFrames",
    "options.tonal.silentFrames": "tonalSilentFrames",
}


def main() -> None:
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as std

    from runner.extract import Extractor

    path, runs, _, overrides, params = parse(sys.argv[1:], PARAMS)
    refs = [std.MusicExtractor(**params)(path)[0] for _ in range(runs)]
    doc, _ = Extractor("music", overrides).analyse(path)
    emit(compare(refs, doc))


if __name__ == "__main__":
    main()
