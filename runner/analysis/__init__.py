"""Analysis (step 3 of the pipeline): run a compiled Plan on one audio file, decoding it once.

The first pass is one Essentia streaming network driven by the loader chain (AudioLoader ->
MonoMixer -> Resample [-> Trimmer], the chain of Essentia's MonoLoader/EasyLoader). While it
runs, the analysed signal is also written to disk (spool.py), and each later pass that reads
the audio reads that file, so the decoded signal is never held in memory and the file is
decoded once; only where the spool cannot be exact do those passes decode the file again,
through the same chain, as Essentia's extractors do. A pass that reads another recorded
stream replays it (VectorInput). Standard-mode and derive nodes of a stage work on the values
recorded before it.

The modules, in the order they act: audio_input.py (checks, header, loader chain, what the
decoded audio says about the file; multichannel.py for more than two channels), networks.py
(the streaming networks, built once per Plan and reused), values.py (where outputs go, the
values read back), long_tracks.py (the long-track policy), executor.py (one file through them,
into an Analysis).
"""

from __future__ import annotations

from runner.analysis.audio_input import check_audio_file, probe
from runner.analysis.executor import Analysis, Executor
from runner.analysis.long_tracks import LongTracks, PassPart, split_pass
from runner.analysis.networks import STAGE0, NetworkKey

__all__ = [
    "STAGE0", "Analysis", "Executor", "LongTracks", "NetworkKey",
    "PassPart", "check_audio_file", "probe", "split_pass",
]
