"""How far an export is from the PyTorch model on images the user names: the same labels? the largest change of a
probability? the accuracy of each, where the images are labeled. The number to read before trusting an INT8 file.

The images also calibrate INT8 quantization (`calibration_batches`): an image directory or a plain folder (class
folders labeled), an evenly spaced sample when there are more than asked for.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.image_directory import ImageDirectory
from ..data.imaging import BadImage
from ..data.transforms import ModelInput
from ..errors import InvalidDatasetError
from ..inference.folders import is_plain_folder, list_folder
from ..models.model_directory import TrainedModel
from ..progress import progress_bar
from ..thresholds import predicted_classes
from .exported import exported_model, unit_range_input

log = logging.getLogger(__name__)

BATCH = 8


@dataclass(frozen=True)
class CheckImages:
    """The images an export is calibrated and checked on: a reader per image and its label (None: unlabeled)."""

    source: Path
    read: list[Callable[[], torch.Tensor]]
    labels: list[str | None]

    def sample(self, limit: int) -> CheckImages:
        """At most `limit` of them, evenly spaced (class folders and directories list classes together)."""
        if len(self.read) <= limit:
            return self
        return self._subset(_spaced(len(self.read), limit))

    def split(self, calibration: int) -> tuple[CheckImages, CheckImages]:
        """(up to `calibration` images to calibrate on, the others to check on), evenly spaced; with no others
        left, every image is checked (and the check says it saw its calibration images)."""
        if len(self.read) <= calibration:
            return self, self
        chosen = _spaced(len(self.read), calibration)
        rest = sorted(set(range(len(self.read))) - set(chosen))
        return self._subset(chosen), self._subset(rest)

    def _subset(self, indices: list[int]) -> CheckImages:
        return CheckImages(self.source, [self.read[i] for i in indices], [self.labels[i] for i in indices])

    def batches(self, size: int = BATCH) -> Iterator[tuple[np.ndarray, list[str | None]]]:
        """(float32 NCHW batch in [0, 1], labels); images of another size than the first come one at a time."""
        pending: list[np.ndarray] = []
        labels: list[str | None] = []
        for read, label in zip(self.read, self.labels, strict=True):
            image = read().numpy()
            if pending and (len(pending) == size or image.shape != pending[0].shape):
                yield np.stack(pending), labels
                pending, labels = [], []
            pending.append(image)
            labels.append(label)
        if pending:
            yield np.stack(pending), labels


def _spaced(count: int, limit: int) -> list[int]:
    """`limit` indices evenly spaced over `count` items (limit < count)."""
    return np.linspace(0, count - 1, limit).round().astype(int).tolist()


def check_images(trained: TrainedModel, source: str | Path) -> CheckImages:
    """The images of an image directory or a plain folder, read as the exported model takes them."""
    model_input = unit_range_input(trained)

    def guarded(read: Callable[[], torch.Tensor], name: str) -> Callable[[], torch.Tensor]:
        def checked() -> torch.Tensor:
            try:
                return read()
            except BadImage as exc:
                raise InvalidDatasetError(f"The image {name} cannot be read: {exc}.") from None

        return checked

    if is_plain_folder(source):
        folder = list_folder(source)
        reads = [
            guarded(functools.partial(_from_bytes, model_input, folder.read, i), folder.paths[i])
            for i in range(len(folder.files))
        ]
        found = CheckImages(folder.root, reads, folder.labels)
    else:
        directory = ImageDirectory.open(source)
        found = CheckImages(
            directory.root,
            [
                guarded(functools.partial(model_input.from_file, directory.root / r.path, r.width, r.height), r.path)
                for r in directory
            ],
            [r.label if isinstance(r.label, str) or r.label is None else None for r in directory],
        )
    if not found.read:
        raise InvalidDatasetError(f"{source} holds no images to check the export on.", hint="name a folder of images.")
    return found


def _from_bytes(model_input: ModelInput, read: Callable[[int], bytes], index: int) -> torch.Tensor:
    return model_input.from_bytes(read(index))


def agreement(
    trained: TrainedModel, images: CheckImages, exported: Callable[[np.ndarray], np.ndarray]
) -> dict[str, Any]:
    """The export's probabilities (`exported` of a batch) against the PyTorch model's, float32, on `images`."""
    reference = exported_model(trained)
    same = changed = 0
    largest = total = 0.0
    right = {"torch": 0, "export": 0}
    labeled = non_finite = 0
    with progress_bar(len(images.read), "check export") as bar:
        for batch, labels in images.batches():
            with torch.inference_mode():
                expected = reference(torch.from_numpy(batch)).numpy()
            got = exported(batch)
            finite = np.isfinite(got).all(axis=1)  # a NaN row: every probability lost (max() would skip a NaN)
            non_finite += int((~finite).sum())
            delta = np.where(finite[:, None], np.abs(np.nan_to_num(got) - expected), 1.0)
            largest, total = max(largest, float(delta.max())), total + float(delta.max(axis=1).sum())
            for want, have, label, ok in zip(expected, got, labels, finite, strict=True):
                answers = _answer(trained, want), _answer(trained, have) if ok else None
                same, changed = same + (answers[0] == answers[1]), changed + (answers[0] != answers[1])
                if label in trained.classes:  # a folder named otherwise is no label of this model
                    labeled += 1
                    right["torch"] += answers[0] == label
                    right["export"] += answers[1] == label
            bar.update(len(batch))
    count = same + changed
    result: dict[str, Any] = {
        "images": count,
        "source": str(images.source),
        "label_agreement": same / count,
        "labels_changed": changed,
        "max_abs_probability_change": largest,
        "mean_max_abs_probability_change": total / count,
        "non_finite_outputs": non_finite,
    }
    if labeled and not trained.multilabel:
        result |= {
            "labeled_images": labeled,
            "accuracy_torch": right["torch"] / labeled,
            "accuracy_export": right["export"] / labeled,
            "accuracy_drop_points": 100 * (right["torch"] - right["export"]) / labeled,
        }
    return result


def _answer(trained: TrainedModel, probabilities: np.ndarray) -> str | tuple[str, ...]:
    """The label a row of probabilities gives: the top class, or a multi-label model's classes over thresholds."""
    if trained.thresholds is not None:
        return tuple(predicted_classes(trained.classes, probabilities.tolist(), trained.thresholds))
    return trained.classes[int(np.argmax(probabilities))]


def summary(check: dict[str, Any]) -> str:
    """One line of what the check measured, for the command's output."""
    line = (
        f"on {check['images']} images of {check['source']}: labels agree {100 * check['label_agreement']:.1f}% "
        f"({check['labels_changed']} changed), max |Δp| {check['max_abs_probability_change']:.2g}"
    )
    if check.get("non_finite_outputs"):
        line += f", {check['non_finite_outputs']} images with NaN or infinite probabilities"
    if "accuracy_export" in check:
        line += (
            f", accuracy {100 * check['accuracy_export']:.1f}% vs PyTorch's {100 * check['accuracy_torch']:.1f}% "
            f"({check['accuracy_drop_points']:.1f} points lost)"
        )
    return line
