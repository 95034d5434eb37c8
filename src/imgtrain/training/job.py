"""A checked training job (what to train, on what, how) and what a finished one made."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..config import TrainConfig, TransformSpec
from ..data.image_directory import MULTILABEL, ImageDirectory
from ..models.architectures import UntrainedModel
from . import distributed


@dataclass(frozen=True)
class TrainResult(Sequence):
    """What `train` made: the trained model directory, the epoch whose weights it holds, and every epoch's metrics.
    It reads as the history list (what `train` returned before it said more)."""

    out: Path
    history: list[dict[str, Any]]
    best_epoch: int

    @property
    def best(self) -> dict[str, Any]:
        """The metrics of the epoch whose weights were saved."""
        return self.history[self.best_epoch - 1]

    def __getitem__(self, index):
        return self.history[index]

    def __len__(self) -> int:
        return len(self.history)


class Inputs(NamedTuple):
    """The job's three input folders, which it never writes to."""

    model: Path
    train: Path
    valid: Path


@dataclass(frozen=True)
class Job:
    """A checked training job: what to train, on what, how, and this process's place in it."""

    untrained: UntrainedModel
    train_dir: ImageDirectory
    valid_dir: ImageDirectory
    out: Path
    inputs: Inputs
    config: TrainConfig
    spec: TransformSpec
    ctx: distributed.Context
    batch_shape: tuple[int, ...]
    #: called with each epoch's metrics on one process; True ends training there, as early stopping would (sweeps)
    on_epoch: Callable[[dict[str, Any]], bool] | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train_dir.classes

    @property
    def multilabel(self) -> bool:
        """Whether each image has a set of classes (sigmoid outputs, binary cross-entropy) rather than one: the data's
        kind, or --task multilabel."""
        return self.train_dir.multilabel or self.config.task == MULTILABEL

    @functools.cached_property
    def class_weights(self) -> torch.Tensor | None:
        """Each class's loss weight: n / (k * n_class) for --class-weights balanced, else None (all 1); multi-label,
        each class's positive weight: its images without the class over those with it."""
        if self.config.class_weights == "none":
            return None
        counts = torch.tensor(list(self.train_dir.class_counts().values()), dtype=torch.float64)
        if self.multilabel:
            return ((len(self.train_dir) - counts) / counts.clamp(min=1)).float()
        return (counts.sum() / (len(counts) * counts.clamp(min=1))).float()

    @property
    def head_lr_scale(self) -> float:
        """The new head's learning rate relative to the backbone's: config.head_lr_scale on pretrained weights."""
        return self.config.head_lr_scale if self.untrained.pretrained else 1.0

    @property
    def freeze_epochs(self) -> int:
        """The epochs the head trains alone: config.freeze_epochs on pretrained weights (a random backbone is
        never frozen)."""
        return self.config.freeze_epochs if self.untrained.pretrained else 0

    def hyperparameters(self) -> dict[str, Any]:
        """The parameters that shape the result, as this job applies them (the fine-tuning ones only on pretrained
        weights)."""
        return {
            **self.config.hyperparameters(),
            "head_lr_scale": self.head_lr_scale,
            "freeze_epochs": self.freeze_epochs,
        }

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the one it continues."""
        return {
            "architecture": self.untrained.architecture.to_json(),
            "pretrained": self.untrained.pretrained,
            "classes": list(self.classes),
            "train_images": len(self.train_dir),
            "valid_images": len(self.valid_dir),
            "train_index": self.train_dir.fingerprint(),
            "valid_index": self.valid_dir.fingerprint(),
            "transform": self.spec.values(),
            "world_size": self.ctx.world_size,
            **self.hyperparameters(),
        }
