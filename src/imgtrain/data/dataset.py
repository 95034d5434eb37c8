"""The torch Dataset over an image directory (apart from image_directory, so that reading one needs no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidDatasetError
from .decoding import decode_full
from .image_directory import ImageDirectory, label_list, single_label
from .imaging import BadImage, read_image_file


class ImageDataset(torch.utils.data.Dataset):
    """Map-style dataset over an image directory; paths are kept in one numpy array so
    forked data-loader workers do not copy them."""

    def __init__(
        self,
        directory: ImageDirectory,
        transform=None,
        classes: Sequence[str] | None = None,
        multilabel: bool | None = None,
    ):
        self.root = directory.root
        self.transform = transform
        self.classes = tuple(directory.classes if classes is None else classes)
        index = {c: i for i, c in enumerate(self.classes)}
        self.multilabel = directory.multilabel if multilabel is None else multilabel
        named = {name for r in directory.records for name in label_list(r.label)}
        unknown = sorted(named - set(index))
        if unknown:
            raise InvalidDatasetError(
                f"The image directory {directory.root} has labels that are not among the classes "
                f"{list(self.classes)}: {unknown}.",
                hint="use image directories with the same classes.",
            )
        self.paths = np.array([str(directory.root / r.path) for r in directory.records])
        self.labels = (
            _multi_hot(directory, index)
            if self.multilabel
            else np.array(
                [-1 if (label := single_label(r.label)) is None else index[label] for r in directory.records],
                dtype=np.int64,
            )
        )
        self.sizes = np.array([(r.width, r.height) for r in directory.records], dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path = str(self.paths[i])
        width, height = map(int, self.sizes[i])
        from_file = getattr(self.transform, "from_file", None)  # a ModelInput: resizes while decoding, caches
        try:
            if from_file is not None:
                return from_file(Path(path), width, height), self._label(i)
            tensor = decode_full(read_image_file(path), (width, height))
        except BadImage as exc:
            raise InvalidDatasetError(f"Image {path} cannot be read: {exc}.") from None
        if self.transform is not None:
            tensor = self.transform(tensor)
        return tensor, self._label(i)

    def _label(self, i: int) -> Any:
        """The class index, or a multi-label image's 0/1 vector of classes."""
        return torch.from_numpy(self.labels[i]) if self.multilabel else int(self.labels[i])


def _multi_hot(directory: ImageDirectory, index: dict[str, int]) -> np.ndarray:
    """Each image's classes as a row of 0s and 1s (float32, as the loss takes them)."""
    rows = np.zeros((len(directory.records), len(index)), dtype=np.float32)
    for row, record in enumerate(directory.records):
        for name in label_list(record.label):
            rows[row, index[name]] = 1.0
    return rows
