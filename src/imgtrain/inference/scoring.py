"""Score Image Model: per-class probabilities for every image of an image directory, a plain folder of images or a
remote prefix, as rows streamed batch by batch (score_file writes them to a file)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import BEST_GUESS, PROBABILITY_PREFIX, SCORE_BATCH_SIZE, SCORED_LABELS
from ..data.decoding import DecodedCache, default_cache_dir
from ..data.image_directory import ImageDirectory, ImageRecord, label_list, list_problems
from ..data.imaging import BadImage
from ..data.remote import RemoteImages, display, is_remote, list_images
from ..data.transforms import ModelInput, output_sizes
from ..errors import InvalidDatasetError, ParameterError
from ..parallel import default_loader_workers, scoring_loader_workers
from ..params import is_integer
from ..progress import progress_bar
from .folders import FolderImages, is_plain_folder, list_folder
from .model import Model, load_model

log = logging.getLogger(__name__)


class _ScoringData(Dataset):
    """(input tensor or None, position, error) per image: a bad image is reported, not raised."""

    def __init__(self, directory: ImageDirectory, model_input: ModelInput):
        self.paths = np.array([str(directory.root / r.path) for r in directory.records])
        self.sizes = np.array([(r.width, r.height) for r in directory.records], dtype=np.int64).reshape(-1, 2)
        self.model_input = model_input

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str]:
        try:
            return self.model_input.from_file(Path(str(self.paths[i])), *map(int, self.sizes[i])), i, ""
        except BadImage as exc:
            return None, i, str(exc)


class _StreamedData(Dataset):
    """(input tensor or None, position, error) per image of a remote prefix or a plain folder, each read when it is
    scored."""

    def __init__(self, images: RemoteImages | FolderImages, count: int, model_input: ModelInput):
        self.images, self.count, self.model_input = images, count, model_input

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, str]:
        try:
            return self.model_input.from_bytes(self.images.read(i)), i, ""
        except (BadImage, InvalidDatasetError) as exc:
            return None, i, str(exc).split(" Fix:")[0]


def remote_score_rows(
    model: Model,
    images: RemoteImages | str,
    *,
    batch_size: int = SCORE_BATCH_SIZE,
    skip_invalid: bool = False,
    progress: bool = True,
    min_confidence: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Like score_rows, for the images under a remote prefix (s3://, az://, ...), streamed: each object is read
    when its batch is scored, nothing is written to disk. Rows carry the object's URL as `path`."""
    images = images if isinstance(images, RemoteImages) else list_images(images)
    min_confidence = _checked_options(model, batch_size, min_confidence)
    loader = _streaming_loader(model, images, len(images.keys), batch_size, 0)
    records = [
        ImageRecord(i, key, label, 0, 0, key)
        for i, (key, label) in enumerate(zip(images.keys, images.labels, strict=True))
    ]
    yield from _rows_of(
        model,
        loader,
        records,
        images.address,
        images.labels[0] is not None,
        f"under {display(images.url)}",
        skip_invalid,
        progress,
        min_confidence,
    )


def folder_score_rows(
    model: Model,
    images: FolderImages | str | Path,
    *,
    batch_size: int = SCORE_BATCH_SIZE,
    workers: int | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
    min_confidence: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Like score_rows, for a plain folder of images (flat: unlabeled; class folders: labeled), nothing converted or
    copied: ids, sources and labels are those `imgtrain convert` would give, `path` is the file itself."""
    images = images if isinstance(images, FolderImages) else list_folder(images)
    min_confidence = _checked_options(model, batch_size, min_confidence)
    loader = _streaming_loader(
        model, images, len(images.files), batch_size, default_loader_workers() if workers is None else workers
    )
    records = [
        ImageRecord(i, source, label, 0, 0, source)
        for i, (source, label) in enumerate(zip(images.sources, images.labels, strict=True))
    ]
    yield from _rows_of(
        model,
        loader,
        records,
        images.paths.__getitem__,
        images.labels[0] is not None,
        f"of {images.root}",
        skip_invalid,
        progress,
        min_confidence,
    )


def _streaming_loader(
    model: Model, images: RemoteImages | FolderImages, count: int, batch_size: int, workers: int
) -> DataLoader:
    """The loader of images read as bytes when scored: their sizes are unknown before reading, so they are batched
    only when the transformation makes every image the same size."""
    probe = output_sizes(model.trained.transform, {(4000, 3000), (300, 500)}, "inference")
    return DataLoader(
        _StreamedData(images, count, model.model_input),
        batch_size=batch_size if len(probe) == 1 else 1,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=model.device.type == "cuda",
    )


def _checked_options(model: Model, batch_size: object, min_confidence: float | None) -> float | None:
    """min_confidence as check_min_confidence gives it for the model's classes, once batch_size is checked."""
    if not is_integer(batch_size, 1):
        raise ParameterError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    return model.check_min_confidence(min_confidence)


def _collate(items: list) -> tuple[torch.Tensor | None, list[int], list[int], list[str]]:
    good = [(x, i) for x, i, _ in items if x is not None]
    batch = torch.stack([x for x, _ in good]) if good else None
    return batch, [i for _, i in good], [i for x, i, _ in items if x is None], [e for x, _, e in items if x is None]


def score_rows(
    model: Model,
    directory: ImageDirectory,
    *,
    batch_size: int = SCORE_BATCH_SIZE,
    workers: int | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
    cache: bool = True,
    min_confidence: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one row per image, in the directory's order, holding only a batch in memory at a time.

    Unreadable images raise InvalidDatasetError naming them (after every image was tried),
    or with `skip_invalid` yield rows with an `error` and no probabilities. With `min_confidence`, an image
    whose top probability is below it is labelled UNKNOWN_LABEL, and a BEST_GUESS column keeps the top class.
    """
    min_confidence = _checked_options(model, batch_size, min_confidence)
    if len(output_sizes(model.trained.transform, {(r.width, r.height) for r in directory}, "inference")) > 1:
        log.warning("images come out of the model's transformation in several sizes: scoring one at a time")
        batch_size = 1
    if workers is None:
        workers = (
            scoring_loader_workers(float(np.median([r.width * r.height for r in directory]))) if len(directory) else 0
        )
    decoded = DecodedCache(default_cache_dir()) if cache else None
    loader = DataLoader(
        _ScoringData(directory, model.model_input.with_cache(decoded)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=model.device.type == "cuda",
    )
    records = directory.records
    yield from _rows_of(
        model,
        loader,
        records,
        lambda i: str((directory.root / records[i].path).resolve()),
        directory.labeled,
        f"of {directory.root}",
        skip_invalid,
        progress,
        min_confidence,
    )


def _rows_of(
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


def source_rows(
    model: Model,
    images: str | Path | ImageDirectory,
    batch_size: int,
    workers: int | None,
    skip_invalid: bool,
    progress: bool,
    cache: bool,
    min_confidence: float | None,
) -> tuple[bool, str | Path, Iterator[dict[str, Any]]]:
    """(labeled, what it is, the rows) of whatever `images` names: an image directory, a remote prefix or a plain
    folder of images."""
    if isinstance(images, str) and is_remote(images):
        listed = list_images(images)
        return (
            listed.labels[0] is not None,
            listed.url,
            remote_score_rows(
                model,
                listed,
                batch_size=batch_size,
                skip_invalid=skip_invalid,
                progress=progress,
                min_confidence=min_confidence,
            ),
        )
    if not isinstance(images, ImageDirectory) and is_plain_folder(images):
        folder = list_folder(images)
        return (
            folder.labels[0] is not None,
            folder.root,
            folder_score_rows(
                model,
                folder,
                batch_size=batch_size,
                workers=workers,
                skip_invalid=skip_invalid,
                progress=progress,
                min_confidence=min_confidence,
            ),
        )
    directory = images if isinstance(images, ImageDirectory) else ImageDirectory.open(images)
    return (
        directory.labeled,
        directory.root,
        score_rows(
            model,
            directory if model.multilabel else directory.require_single_label("score with a single-label model"),
            batch_size=batch_size,
            workers=workers,
            skip_invalid=skip_invalid,
            progress=progress,
            cache=cache,
            min_confidence=min_confidence,
        ),
    )


def score(
    model: str | Path | Model,
    images: str | Path | ImageDirectory,
    *,
    batch_size: int = SCORE_BATCH_SIZE,
    workers: int | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
    cache: bool = True,
    min_confidence: float | None = None,
) -> list[dict[str, Any]]:
    """Score an image directory, a plain folder of images (class folders give the label column) or the images
    under a remote prefix (s3://..., streamed); return the table as a list of rows (dicts with the designer's column
    names; see score_rows for `min_confidence`)."""
    model = model if isinstance(model, Model) else load_model(model)
    return list(source_rows(model, images, batch_size, workers, skip_invalid, progress, cache, min_confidence)[2])
