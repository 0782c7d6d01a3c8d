"""Command line: `extractor` and the `streaming-extractor-*` commands (pyproject.toml's
console scripts point at the names below).

Modules: ``common`` (options, exit codes, one-line errors), ``extraction`` (a profile on one
file or a batch), ``commands`` (the table of built-in profile commands, and music-clap),
``library_summary`` (streaming-extractor-summary), ``embeddings`` (music-embeddings),
``extractor`` (the subcommands).
"""

import os

# Essentia bundles libtensorflow, which prints CUDA warnings to stderr when it loads unless
# this is 3 before the first import of essentia (in this process or a worker it spawns). Its
# messages are never about the user's input, so the commands set it whatever the shell says.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

from runner.cli.commands import PROFILE_COMMANDS, music_clap  # noqa: E402
from runner.cli.embeddings import music_embeddings  # noqa: E402
from runner.cli.extractor import main  # noqa: E402
from runner.cli.library_summary import library_summary  # noqa: E402

# streaming-extractor-<name> (our conventions) and streaming_extractor_<name> (Essentia's).
music = PROFILE_COMMANDS["streaming-extractor-music"]
essentia_music = PROFILE_COMMANDS["streaming_extractor_music"]
lowlevel = PROFILE_COMMANDS["streaming-extractor-lowlevel"]
essentia_lowlevel = PROFILE_COMMANDS["streaming_extractor_lowlevel"]
tonal = PROFILE_COMMANDS["streaming-extractor-tonal"]
essentia_tonal = PROFILE_COMMANDS["streaming_extractor_tonal"]
rhythm = PROFILE_COMMANDS["streaming-extractor-rhythm"]
essentia_rhythm = PROFILE_COMMANDS["streaming_extractor_rhythm"]
beats = PROFILE_COMMANDS["streaming-extractor-beats"]
essentia_beats = PROFILE_COMMANDS["streaming_extractor_beats"]
freesound_general = PROFILE_COMMANDS["streaming-extractor-freesound-general"]
essentia_freesound_general = PROFILE_COMMANDS["streaming_extractor_freesound_general"]
freesound_music = PROFILE_COMMANDS["streaming-extractor-freesound-music"]
essentia_freesound_music = PROFILE_COMMANDS["streaming_extractor_freesound_music"]
music_highlevel = PROFILE_COMMANDS["music-highlevel"]
music_tempo = PROFILE_COMMANDS["music-tempo"]
music_melody = PROFILE_COMMANDS["music-melody"]
music_harmony = PROFILE_COMMANDS["music-harmony"]


def music_conditioning(argv: list[str] | None = None) -> int:
    """``music-conditioning``: ``extractor conditioning`` (the conditioning profile into each
    track's TRACK.INFO and TRACK.BEATS_GRID) under the name of the profile's app."""
    import sys

    return main(["conditioning", *(sys.argv[1:] if argv is None else argv)])

__all__ = [
    "beats", "essentia_beats", "essentia_freesound_general", "essentia_freesound_music",
    "essentia_lowlevel", "essentia_music", "essentia_rhythm", "essentia_tonal",
    "freesound_general", "freesound_music", "library_summary", "lowlevel", "main", "music",
    "music_clap", "music_highlevel", "music_tempo", "rhythm", "tonal",
    "music_embeddings",
    "music_conditioning",
    "music_melody",
    "music_harmony",
]
