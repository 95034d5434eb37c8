"""Score Image Model: per-class probabilities for every image of an image directory, a plain folder of images or a
remote prefix, streamed to a file (the rows themselves: inference.rows).

A multi-label model's lists (the true classes in `labels`, the answer in 'Scored Labels') are JSON lists in JSON
lines and one cell joined by config.LABEL_SEPARATOR in CSV, as a CSV manifest's `labels` column is."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import LABEL_SEPARATOR, SCORE_BATCH_SIZE
from ..data.decoding import DecodedCache, default_cache_dir
from ..data.image_directory import ImageDirectory, ImageRecord
from ..data.imaging import BadImage
from ..data.remote import RemoteImages, display, is_remote, list_images
from ..data.transforms import ModelInput, output_sizes
from ..errors import InvalidDatasetError, ParameterError
from ..files import atomic_file, check_output, exclusive, first_bytes
from ..parallel import default_loader_workers, scoring_loader_workers
from .folders import FolderImages, is_plain_folder, list_folder
from .model import Model, load_model
from .rows import checked_options, collate, rows_of, score_columns

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
    min_confidence = checked_options(model, batch_size, min_confidence)
    loader = _streaming_loader(model, images, len(images.keys), batch_size, 0)
    records = [
        ImageRecord(i, key, label, 0, 0, key)
        for i, (key, label) in enumerate(zip(images.keys, images.labels, strict=True))
    ]
    yield from rows_of(
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
    min_confidence = checked_options(model, batch_size, min_confidence)
    loader = _streaming_loader(
        model, images, len(images.files), batch_size, default_loader_workers() if workers is None else workers
    )
    records = [
        ImageRecord(i, source, label, 0, 0, source)
        for i, (source, label) in enumerate(zip(images.sources, images.labels, strict=True))
    ]
    yield from rows_of(
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
        collate_fn=collate,
        pin_memory=model.device.type == "cuda",
    )


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
    min_confidence = checked_options(model, batch_size, min_confidence)
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
        collate_fn=collate,
        pin_memory=model.device.type == "cuda",
    )
    records = directory.records
    yield from rows_of(
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


FORMATS = ("csv", "jsonl")


def _check_scores_output(out: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Before any work: the scores file is not an existing folder, nor is it, or does it lie in, an input."""
    if out.is_dir():
        raise ParameterError(f"{out} is a folder; the scores go to a file.", hint="give a path such as scores.csv.")
    check_output(out, overwrite, inputs, ours=lambda path: b"Scored Labels" in first_bytes(path).split(b"\n")[0])


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as its CSV cells: each list joined by LABEL_SEPARATOR."""
    return {k: LABEL_SEPARATOR.join(v) if isinstance(v, list) else v for k, v in row.items()}


def score_to_file(
    model: str | Path | Model,
    images: str | Path,
    out: str | Path,
    *,
    fmt: str | None = None,
    batch_size: int = SCORE_BATCH_SIZE,
    workers: int | None = None,
    skip_invalid: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    cache: bool = True,
    min_confidence: float | None = None,
) -> tuple[Path, int]:
    """Stream the scores to `out` (CSV or JSON lines), which appears only once complete; return (path, rows)."""
    out = Path(out)
    fmt = fmt or ("jsonl" if out.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv")
    if fmt not in FORMATS:
        raise ParameterError(f"format must be one of {FORMATS}, got {fmt!r}.")
    inputs = [model.trained.path if isinstance(model, Model) else Path(model)] + (
        [] if is_remote(images) else [Path(images)]
    )
    _check_scores_output(out, overwrite, inputs)
    model = model if isinstance(model, Model) else load_model(model)
    min_confidence = model.check_min_confidence(min_confidence)
    labeled, source, rows = source_rows(
        model, images, batch_size, workers, skip_invalid, progress, cache, min_confidence
    )
    columns = score_columns(model, labeled, min_confidence, skip_invalid)
    kept = f"{out} is as it was before." if out.exists() else ""
    count = 0
    # exclusive: a second scorer of the same file is refused, and a killed one's partial file is removed
    with (
        exclusive(out),
        atomic_file(out, kept, crash_at=("scores-writing",)) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.DictWriter(f, columns, extrasaction="raise") if fmt == "csv" else None
        if writer:
            writer.writeheader()
        for row in rows:
            if writer:
                writer.writerow(csv_row(row))
            else:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    log.info("scored %d images of %s with %s into %s", count, source, model.trained.path, out)
    return out, count
