"""The end-to-end demo on scikit-learn's bundled digits: every module, from images to metrics."""

from __future__ import annotations

import logging
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .data.convert import convert
from .data.image_directory import ImageDirectory
from .data.split import split
from .data.transforms import TransformSpec, init_transform
from .errors import OutputExistsError, TrainingInterrupted
from .files import atomic_write_json
from .inference.evaluation import evaluate
from .inference.scoring import score_to_file
from .models.architectures import Architecture, create_model_directory
from .training.loop import TrainConfig, train

log = logging.getLogger(__name__)

MARKER = "imgtrain-demo.json"
#: The designer's default transformation resizes to 256 and crops 224: far too large for
#: 8x8 digits; this one keeps the 32 px images as they are, with no flip (a flipped 2 is no 2).
DIGITS_TRANSFORM = TransformSpec(resize=False, center_crop=False, random_horizontal_flip=False)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put each of its outputs, and the held-out metrics."""

    out: Path
    images: ImageDirectory
    train: ImageDirectory
    valid: ImageDirectory
    transform: Path
    model: Path
    scores: Path
    report: Path
    metrics: dict[str, Any]
    seconds: float


def write_digits_folder(folder: Path, size: int = 32, limit: int | None = None) -> int:
    """Write scikit-learn's 8x8 digits as `size`-px PNGs in class-folder layout; return the count."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, targets = digits.images[:limit], digits.target[:limit]
    for i, (pixels, target) in enumerate(zip(images, targets, strict=True)):
        gray = Image.fromarray(np.round(pixels * (255 / 16)).astype(np.uint8), "L")
        path = folder / str(target) / f"digit_{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        gray.resize((size, size), Image.Resampling.BILINEAR).save(path)
    return len(images)


def run_demo(out: str | Path, epochs: int = 5, limit: int | None = None, progress: bool = True) -> DemoResult:
    """Digits -> image directory -> 90/10 split -> resnet18 -> train -> score the held-out part -> evaluate."""
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise OutputExistsError(
            f"{out} exists and is not an earlier demo output.",
            hint="choose another out folder.",
            cli_hint="choose another --out.",
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MARKER, {"format": "imgtrain.demo", "format_version": 1})
    with tempfile.TemporaryDirectory(prefix="imgtrain-digits-") as folder:
        count = write_digits_folder(Path(folder), limit=limit)
        log.info("wrote %d digit images to a temporary folder", count)
        images = convert(folder, out / "digits", overwrite=True, progress=progress)
    train_dir, valid_dir = split(images.root, out / "train", out / "valid", fraction=0.9, seed=1, overwrite=True)
    transform = init_transform(out / "transform.json", DIGITS_TRANSFORM, overwrite=True)
    untrained = create_model_directory(
        out / "untrained", Architecture("resnet", "resnet18"), pretrained=False, overwrite=True
    )
    config = TrainConfig(epochs=epochs, overwrite=True, progress=progress)  # the module's defaults otherwise
    try:
        train(untrained.path, train_dir.root, valid_dir.root, out / "model", config, transform=transform)
    except TrainingInterrupted as exc:  # train's hint says to resume; the demo cannot, it starts over
        raise TrainingInterrupted(
            f"The demo stopped while training {out / 'model'} ({signal.Signals(exc.signum).name}).",
            hint="call run_demo again: it starts over (the demo has no resume).",
            cli_hint="run `imgtrain demo` again: it starts over (the demo has no --resume).",
            signum=exc.signum,
        ) from None
    scores, _ = score_to_file(out / "model", valid_dir.root, out / "scores.csv", overwrite=True, progress=progress)
    metrics = evaluate(scores, out / "report", overwrite=True)
    return DemoResult(
        out,
        images,
        train_dir,
        valid_dir,
        transform,
        out / "model",
        scores,
        out / "report",
        metrics,
        time.perf_counter() - started,
    )
