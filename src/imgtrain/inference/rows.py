"""The rows of Score Image Model: one per image, in the images' order, with the designer's column names, built from
a loader's batches (for every kind of source scoring reads); a multi-label model's truth and answer are lists."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import BEST_GUESS, MAX_SCORE_BATCH, PROBABILITY_PREFIX, SCORED_LABELS
from ..data.image_directory import ImageRecord, label_list, list_problems
from ..errors import InvalidDatasetError, ParameterError
from ..params import is_integer
from ..progress import progress_bar
from .model import Model


def checked_options(model: Model, batch_size: object, min_confidence: float | None) -> float | None:
    """min_confidence as check_min_confidence gives it for the model's classes, once batch_size is checked."""
    if not is_integer(batch_size, 1, MAX_SCORE_BATCH):
        raise ParameterError(f"batch_size must be an integer from 1 to {MAX_SCORE_BATCH}, got {batch_size!r}.")
    return model.check_min_confidence(min_confidence)


def collate(items: list) -> tuple[torch.Tensor | None, list[int], list[int], list[str]]:
    """A batch of the readable images, their positions, and the positions and errors of the unreadable ones."""
    good = [(x, i) for x, i, _ in items if x is not None]
    batch = torch.stack([x for x, _ in good]) if good else None
    return batch, [i for _, i in good], [i for x, i, _ in items if x is None], [e for x, _, e in items if x is None]


def rows_of(
    model: Model,
    loader: DataLoader,
    records: Sequence[ImageRecord],
    where: Callable[[int], str],
    labeled: bool,
    name: str,
    skip_invalid: bool,
    progress: bool,
    min_confidence: float | None,
) -> Iterator[dict[str, Any]]:
    """The rows of the loader's batches in the images' order (local or remote: `where` gives each one's path);
    unreadable images are raised after every image was tried, or with `skip_invalid` given error rows."""
    bad: list[str] = []
    with progress_bar(len(records), "score", "img", progress) as bar:
        for batch, positions, bad_positions, errors in loader:
            rows: dict[int, dict[str, Any]] = {}
            if batch is not None and (skip_invalid or not bad):  # once failing, only look for more bad images
                for i, probs in zip(positions, model.probabilities(batch).tolist(), strict=True):
                    rows[i] = _row(model, records[i], where(i), labeled, probs, min_confidence=min_confidence)
            for i, error in zip(bad_positions, errors, strict=True):
                bad.append(f"{records[i].path}: {error}")
                rows[i] = _row(model, records[i], where(i), labeled, None, error, min_confidence)
            if skip_invalid or not bad:
                yield from (rows[i] for i in sorted(rows))
            bar.update(len(positions) + len(bad_positions))
    if bad and not skip_invalid:
        raise InvalidDatasetError(
            f"{len(bad)} images {name} cannot be read:\n{list_problems(bad)}",
            hint="pass skip_invalid=True to score the rest (bad images get an error row).",
            cli_hint="pass --skip-invalid to score the rest (bad images get an error row).",
        )


def _row(
    model: Model,
    record: ImageRecord,
    path: str,
    labeled: bool,
    probs: list[float] | None,
    error: str | None = None,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """One image's row: a multi-label model's true classes go in `labels` and its answer is a list."""
    row: dict[str, Any] = {"id": record.id, "path": path, "source": record.source}
    if labeled:
        row.update({"labels": label_list(record.label)} if model.multilabel else {"label": record.label})
    for k, name in enumerate(model.classes):
        row[PROBABILITY_PREFIX + name] = None if probs is None else probs[k]
    label, guess = (None, None) if probs is None else model.answer(probs, min_confidence)
    row[SCORED_LABELS] = label
    if min_confidence is not None:
        row[BEST_GUESS] = guess
    if error is not None:
        row["error"] = error
    return row


def score_columns(model: Model, labeled: bool, min_confidence: float | None, skip_invalid: bool) -> list[str]:
    """The columns of the rows, in order."""
    return (
        ["id", "path", "source"]
        + ([("labels" if model.multilabel else "label")] if labeled else [])
        + [PROBABILITY_PREFIX + c for c in model.classes]
        + [SCORED_LABELS]
        + ([BEST_GUESS] if min_confidence is not None else [])
        + (["error"] if skip_invalid else [])
    )
