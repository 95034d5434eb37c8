"""The errors imgtrain raises: one base class carrying the designer's error code and a fix hint."""

from __future__ import annotations

from collections.abc import Sequence


class ImgtrainError(Exception):
    """Base of every error a user can cause; `code` is the Azure ML designer's error code.

    `hint` names the fix in Python (`overwrite=True`); `cli_hint`, when the command line spells it differently
    (`--overwrite`), is what the CLI shows instead (`cli_text`).
    """

    code: str | None = None

    def __init__(self, message: str, hint: str | None = None, cli_hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.cli_hint = cli_hint
        super().__init__(message)

    def __str__(self) -> str:
        return self._text(self.hint)

    def cli_text(self) -> str:
        """The message with the fix as the command line spells it."""
        return self._text(self.cli_hint or self.hint)

    def _text(self, hint: str | None) -> str:
        text = self.message
        if hint:
            text += f" Fix: {hint}"
        if self.code:
            text += f" (designer error {self.code})"
        return text


class ParameterError(ImgtrainError):
    """A parameter is out of its range or of the wrong kind."""

    code = "0008"


class InvalidDatasetError(ImgtrainError):
    """Input data is invalid: empty, unreadable images, mismatched label sets, bad index."""

    code = "0018"


class NotLabeledDatasetError(ImgtrainError):
    """An image directory without labels was given where labels are required."""

    code = "0024"


class ImageExceedsLimitError(ImgtrainError):
    """An image is larger than imgtrain accepts (decompression-bomb guard)."""

    code = "0127"


class InvalidTransformationDirectoryError(ImgtrainError):
    """A transformation file is missing, malformed or names an unknown transform."""

    code = "0158"


class InvalidModelDirectoryError(ImgtrainError):
    """The model input is not a valid imgtrain model directory."""

    code = "0159"


class TrainingDivergedError(ImgtrainError):
    """The training loss became NaN or infinite."""


class OutputExistsError(ImgtrainError):
    """The output path already holds something and overwriting was not asked for."""


class OutputWriteError(ImgtrainError):
    """An output could not be written (disk full, read-only, no permission); earlier outputs are kept.

    `reason` is why, in the system's words (files.write_failed sets it)."""

    reason: str | None = None


class CheckpointError(ImgtrainError):
    """A checkpoint cannot be used to resume: damaged, of another run, or not fitting the network."""


class MissingDependencyError(ImgtrainError):
    """An optional package a feature needs is not installed; the hint says what to install."""


class TrackingError(ImgtrainError):
    """Metrics cannot be logged where asked (an MLflow server that does not answer)."""


class PretrainedWeightsError(ImgtrainError):
    """Pretrained weights cannot be found offline, downloaded, or verified against their published hash."""


class DistributedTrainingError(ImgtrainError):
    """A worker of a distributed training job failed; the job was stopped."""


class WorkerCrashedError(ImgtrainError):
    """A worker process died (out of memory, or a crash in an image decoder)."""


class TrainingInterrupted(ImgtrainError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; `signum` says which signal."""

    def __init__(self, message: str, hint: str | None = None, signum: int = 2, cli_hint: str | None = None) -> None:
        super().__init__(message, hint, cli_hint)
        self.signum = signum


__all__ = [
    "ImgtrainError",
    "ParameterError",
    "InvalidDatasetError",
    "NotLabeledDatasetError",
    "ImageExceedsLimitError",
    "InvalidTransformationDirectoryError",
    "InvalidModelDirectoryError",
    "OutputExistsError",
    "OutputWriteError",
    "TrainingInterrupted",
    "TrainingDivergedError",
    "CheckpointError",
    "MissingDependencyError",
    "TrackingError",
    "DistributedTrainingError",
    "WorkerCrashedError",
    "PretrainedWeightsError",
]


MAX_LISTED = 20  # problems listed in one error message


def list_problems(problems: Sequence[str], limit: int = MAX_LISTED) -> str:
    """Format the first `limit` problems one per line, then how many more there are."""
    lines = [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)
