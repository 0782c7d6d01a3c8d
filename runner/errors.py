"""One small exception tree: every expected failure becomes one line for a person."""

from __future__ import annotations


class ExtractorError(Exception):
    """Base of every failure the command line reports as one line (no traceback)."""


class ProfileError(ExtractorError):
    """A profile that cannot be used: YAML syntax, schema, unknown algorithm, bad wiring.

    Rendered as ``file:line: key.path: message`` (then an optional hint), like a compiler.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.path = path
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = self.source or "<profile>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.path:
            text += f"{self.path}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class AudioError(ExtractorError):
    """An input file that cannot be analysed: missing, unreadable, empty, corrupt, unsupported."""

    def __init__(self, path: str, message: str) -> None:
        self.audio_path = path
        super().__init__(f"{path}: {message}")


class MissingMbidError(AudioError):
    """A file without a MusicBrainz recording id, refused as the profile asks (requireMbid).

    Essentia's extractor binary exits with code 2 for it, which AcousticBrainz clients read as
    "no MBID"; the Essentia-named commands do the same.
    """


class OutputError(ExtractorError):
    """A result that cannot be written, or that does not match its output schema."""


class ModelError(ExtractorError):
    """A model that cannot be used: unknown, not in the cache, or not matching its pin."""

    def __init__(self, message: str, model_id: str | None = None) -> None:
        self.model_id = model_id
        super().__init__(message)


class ModelOutputError(ModelError):
    """An output of a profile's models section that its model's family cannot give (a kind of
    output the model does not write, settings that contradict another output of the same
    model): a profile problem, reported at the output's line of the profile."""


class TrainingError(ExtractorError):
    """A groundtruth, filelist or feature set that a classifier cannot be trained on."""


class UsageError(ProfileError):
    """Command-line arguments that do not fit together (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, source="usage")


# Exit codes of every command (README: Exit codes).
EXIT_FAILED = 1  # an input could not be analysed (or, Essentia's spelling: any failure)
EXIT_PROFILE = 2  # a profile or usage problem
EXIT_NO_MBID = 2  # Essentia's binary, with requireMbid: the AcousticBrainz clients' "no MBID"
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
