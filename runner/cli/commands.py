"""The commands that run one built-in profile, as data: each row names its program, the
profile it runs, its spelling (ours or Essentia's) and the options that stand for ``--set``
overrides. One ``ProfileCommand`` turns a row into a console script (pyproject.toml)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from runner.cli.common import (
    ESSENTIA_SPELLING,
    EssentiaParser,
    add_batch_options,
    add_common_options,
    guard,
)
from runner.cli.extraction import extract_command
from runner.errors import UsageError
from runner.library import clap_search
from runner.models.supply import lock


@dataclass(frozen=True)
class SetOption:
    """A command-line option that stands for a ``--set KEY=...`` override of the profile.

    ``kind``: "names" (one or more names, commas or spaces: ``KEY=[a, b]``), "flag"
    (``KEY=true`` when given) or "choice" (``KEY=<the choice>``)."""

    flag: str
    key: str
    kind: str
    help: str
    choices: tuple[str, ...] = ()

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.kind == "names":
            parser.add_argument(self.flag, nargs="+", metavar="NAME", default=None,
                                help=self.help)
        elif self.kind == "flag":
            parser.add_argument(self.flag, action="store_true", help=self.help)
        else:
            parser.add_argument(self.flag, choices=list(self.choices), default=None,
                                help=self.help)

    def override(self, args: argparse.Namespace) -> str | None:
        value = getattr(args, self.flag.lstrip("-").replace("-", "_"))
        if not value:
            return None
        if self.kind == "names":
            names = [n for item in value for n in item.replace(",", " ").split()]
            return f"{self.key}=[{', '.join(names)}]"
        return f"{self.key}={'true' if self.kind == 'flag' else value}"


MODEL_OPTIONS = (
    SetOption("--taxonomies", "models.select", "names",
              "only these outputs (e.g. moods_mirex genre_discogs400)"),
    SetOption("--keep-embeddings", "models.keep_embeddings", "flag",
              "also write each embedding model's per-patch embeddings (.npy)"),
    SetOption("--missing", "models.missing", "choice",
              "models not in the cache: leave them out and name them (skip, the default; none "
              "at all is an error), or stop unless every model is there (error)",
              ("error", "skip")),
)


@dataclass(frozen=True)
class ProfileCommand:
    """A console script that runs the built-in profile ``builtin`` on a file, a folder or a
    list. ``essentia``: Essentia's spelling, with its binary's exit codes (1: failed, 2: no
    MusicBrainz id with requireMbid), OUT_frames and OUT rewritten in place.
    ``profile_argument``: a third positional argument, an Essentia profile file applied as
    overrides (or a profile of ours), as Essentia's binary takes."""

    prog: str
    builtin: str
    essentia: bool = False
    description: str = ""
    options: tuple[SetOption, ...] = ()
    profile_argument: bool = True
    essentia_base: str | None = None  # Essentia's profile files apply to (default: builtin)
    # --taxonomies naming a classifier trained on a profile's descriptors runs that profile
    # (its highlevel section included) unless --profile says otherwise (music-highlevel).
    trained_profile: bool = False

    def parser(self) -> argparse.ArgumentParser:
        description = self.description or (
            f"Run the built-in '{self.builtin}' profile on an audio file, a folder "
            "(recursively) or a list of files, and write JSON.")
        if self.essentia:
            description += (" Essentia's spelling: Essentia's exit codes (1: failed, 2: no "
                            "MusicBrainz id with requireMbid), frames in OUT_frames.")
        parser = (EssentiaParser if self.essentia else argparse.ArgumentParser)(
            prog=self.prog, description=description)
        parser.add_argument("input", nargs="?", help="audio file or folder")
        parser.add_argument("output", nargs="?",
                            help="output file (or output folder when INPUT is a folder)")
        if self.profile_argument:
            parser.add_argument("profile", nargs="?", default=None,
                                help="Essentia profile file (applied as overrides) or a "
                                "profile of ours")
        for option in self.options:
            option.add_to(parser)
        parser.add_argument("--profile", dest="profile_option", default=None,
                            help="run this profile (built-in name or path) instead")
        add_batch_options(parser)
        add_common_options(parser)
        return parser

    def __call__(self, argv: Sequence[str] | None = None) -> int:
        args = self.parser().parse_args(argv)
        args.essentia = self.essentia
        args.overrides += [o for o in (opt.override(args) for opt in self.options) if o]
        profile = args.profile_option or getattr(args, "profile", None) or self.builtin

        def run() -> int:
            chosen = self.profile_for_taxonomies(args) if self.trained_profile else None
            return extract_command(chosen or profile, args, self.essentia_base or self.builtin)

        return guard(run, args.debug, self.essentia)

    @staticmethod
    def profile_for_taxonomies(args: argparse.Namespace) -> str | None:
        """The profile a selected trained classifier reads descriptors from (None: none, or
        --profile given); two classifiers trained on different profiles is a usage error."""
        if args.profile_option or not getattr(args, "taxonomies", None):
            return None
        names = [n for item in args.taxonomies for n in item.replace(",", " ").split()]
        needs = lock.descriptor_profiles(names)
        if len(set(needs.values())) > 1:
            raise UsageError("--taxonomies: these classifiers read different profiles' "
                             f"descriptors ({', '.join(f'{k}: {v}' for k, v in needs.items())}); "
                             "run them separately, each with its --profile")
        if needs:
            (name, chosen), *_ = needs.items()
            if not args.quiet:
                print(f"note: {name} reads the '{chosen}' profile's descriptors: running "
                      f"'{chosen}' (its highlevel section included; --profile to choose)",
                      file=sys.stderr)
            return chosen
        return None


def _both_spellings(builtin: str) -> tuple[ProfileCommand, ProfileCommand]:
    return (ProfileCommand(f"streaming-extractor-{builtin.replace('_', '-')}", builtin),
            ProfileCommand(f"{ESSENTIA_SPELLING}{builtin}", builtin, essentia=True))


# Every console script that runs a built-in profile (pyproject.toml [project.scripts]; the
# entry point names are in runner/cli/__init__.py).
PROFILE_COMMANDS: dict[str, ProfileCommand] = {command.prog: command for command in (
    *_both_spellings("music"), *_both_spellings("lowlevel"), *_both_spellings("tonal"),
    *_both_spellings("rhythm"), *_both_spellings("beats"),
    *_both_spellings("freesound_general"), *_both_spellings("freesound_music"),
    ProfileCommand("music-highlevel", "highlevel", options=MODEL_OPTIONS,
                   profile_argument=False, essentia_base="music", trained_profile=True,
                   description="Run the built-in 'highlevel' profile (MTG TensorFlow "
                   "classifiers, musicnn tags) on an audio file, a folder (recursively) or a "
                   "list of files."),
    ProfileCommand("music-tempo", "tempo", profile_argument=False,
                   description="Run the built-in 'tempo' profile (the rhythm profile plus "
                   "madmom's tempo, beats and downbeats and rhythm.bpm_consensus; madmom's "
                   "models are CC BY-NC-SA 4.0) on an audio file, a folder (recursively) or a "
                   "list of files."),
    ProfileCommand("music-melody", "melody", profile_argument=False,
                   description="Run the built-in 'melody' profile (Essentia's "
                   "PredominantPitchMelodia: tonal.melody.*) on an audio file, a folder "
                   "(recursively) or a list of files."),
    ProfileCommand("music-harmony", "harmony", profile_argument=False,
                   description="Run the built-in 'harmony' profile (the tonal profile plus "
                   "madmom's CNN key and CNN + CRF chords, tonal.key_madmom and "
                   "tonal.chords_madmom; madmom's models are CC BY-NC-SA 4.0) on an audio file, "
                   "a folder (recursively) or a list of files."),
)}


def music_clap(argv: Sequence[str] | None = None) -> int:
    """`music-clap`: text-to-music search with CLAP (runner/library/clap_search.py)."""
    args = clap_search.parser().parse_args(argv)
    return guard(lambda: clap_search.search_library(args), args.debug)
