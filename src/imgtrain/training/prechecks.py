"""Everything `train` checks before any work starts: labels, classes, batch size, image and input sizes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..config import TrainConfig, TransformSpec
from ..data.image_directory import MULTILABEL, SINGLE_LABEL, ImageDirectory, list_problems
from ..data.imaging import ImageTooLarge
from ..data.transforms import Mode, check_transform_size, output_sizes
from ..errors import InvalidDatasetError, ParameterError

log = logging.getLogger(__name__)


def labeled_directory(path: str | Path, role: str) -> ImageDirectory:
    """The labeled, non-empty image directory at `path`, or the error saying what it lacks."""
    directory = ImageDirectory.open(path)
    directory.require_labels(role)
    if len(directory) == 0:
        raise InvalidDatasetError(f"The {role} image directory {path} holds no images.", hint="give it some images.")
    return directory


def check_inputs(
    config: TrainConfig,
    spec: TransformSpec,
    train: ImageDirectory,
    valid: ImageDirectory,
    world_size: int = 1,
    input_problem: Callable[[int, int], str | None] | None = None,
) -> tuple[int, int]:
    """Everything that can be checked before any work starts; returns the training input's (width, height)."""
    _check_task(config, train, valid)
    present_train = {c for c, n in train.class_counts().items() if n}
    present_valid = {c for c, n in valid.class_counts().items() if n}
    if len(present_train) < 2:
        raise InvalidDatasetError(
            f"The training image directory {train.root} has images of {len(present_train)} "
            "class; a classifier needs at least 2.",
            hint="add images of other classes.",
        )
    extra = sorted(present_valid - present_train)  # a class listed but left without training images counts too
    if extra:
        raise InvalidDatasetError(
            f"The validation image directory {valid.root} has classes the training directory {train.root} has no "
            f"images of: {extra}.",
            hint="remove those images from validation, or add training images of those "
            "classes (a split with a larger fraction, or more images of them).",
        )
    missing = sorted(present_train - present_valid)
    if missing:
        log.warning("training classes without validation images: %s", missing)
    per_worker = len(train) // world_size
    if config.batch_size > per_worker:
        shard = f" (of {world_size} workers' shares, {per_worker} each)" if world_size > 1 else ""
        raise ParameterError(
            f"batch_size {config.batch_size} is larger than the {len(train)} training images{shard}.",
            hint=f"use a batch size of at most {per_worker}.",
        )
    found = []
    modes: tuple[tuple[ImageDirectory, Mode], ...] = ((train, "training"), (valid, "inference"))
    for directory, mode in modes:
        image_sizes = {(r.width, r.height) for r in directory}
        _check_transform_sizes(spec, directory, image_sizes)
        sizes = output_sizes(spec, image_sizes, mode)
        found.append(next(iter(sizes)))
        problem = input_problem and input_problem(*found[-1])
        if problem:
            raise InvalidDatasetError(
                f"Images of {directory.root} ({mode}): {problem}.",
                hint="set the transformation's resize and crop sizes to what the network "
                "takes (224 suits every network of the catalog).",
            )
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
            raise InvalidDatasetError(
                f"Images of {directory.root} leave the {mode} transformation in {len(sizes)} sizes ({shown}), so "
                "they cannot be batched.",
                hint="turn on resize with center crop (or random crop) so all come out the same size.",
            )
    return found[0]


def _check_task(config: TrainConfig, train: ImageDirectory, valid: ImageDirectory) -> None:
    """Training and validation data of one kind (single-label or multi-label), and a sampler that suits it."""
    if train.multilabel != valid.multilabel:
        kinds = {True: "multi-label", False: "single-label"}
        raise InvalidDatasetError(
            f"The training image directory {train.root} is {kinds[train.multilabel]} but the validation image "
            f"directory {valid.root} is {kinds[valid.multilabel]}.",
            hint="convert both from the same kind of source (split one directory into the two).",
        )
    if train.multilabel and config.task == SINGLE_LABEL:
        raise ParameterError(
            f"task single_label trains one class per image, but {train.root} gives images several.",
            hint="use --task auto (or multilabel) with multi-label data.",
        )
    if (train.multilabel or config.task == MULTILABEL) and config.sampler == "balanced":
        raise ParameterError(
            "sampler balanced draws images by their one class; multi-label images have several.",
            hint="use --sampler uniform with multi-label data; --class-weights balanced weighs each class instead.",
        )


def _check_transform_sizes(spec: TransformSpec, directory: ImageDirectory, sizes: set[tuple[int, int]]) -> None:
    """Name the images the transformation would blow up (thin images under a resize), before any work."""
    too_large = {}
    for size in sizes:
        try:
            check_transform_size(spec, *size)
        except ImageTooLarge as exc:
            too_large[size] = str(exc)
    if too_large:
        bad = [f"{r.path} ({too_large[(r.width, r.height)]})" for r in directory if (r.width, r.height) in too_large]
        raise InvalidDatasetError(
            f"{len(bad)} images of {directory.root} are too large for the transformation:\n{list_problems(bad)}",
            hint="remove them (or crop them to a usual aspect ratio) and convert again.",
        )
