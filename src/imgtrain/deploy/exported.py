"""What every export format holds: the network with normalization, temperature and softmax inside (`ExportedModel`),
taking float32 RGB images in [0, 1], NCHW, already resized and cropped; `preprocess` does those steps in Python, for
clients that want to match imgtrain exactly."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.imaging import rgb_tensor, to_rgb
from ..data.transforms import ModelInput, build_transform
from ..models.model_directory import TrainedModel


class ExportedModel(nn.Module):
    """Normalize, run the network, divide by the calibrated temperature, softmax (a multi-label model: a sigmoid per
    class): what every runtime gets."""

    mean: torch.Tensor  # buffers (register_buffer)
    std: torch.Tensor
    temperatures: torch.Tensor  # a multi-label model's, one per class

    def __init__(
        self,
        net: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        temperature: float = 1.0,
        temperatures: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.multilabel = temperatures is not None
        if temperatures is not None:
            self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float32).view(1, -1))
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.temperature = float(temperature)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net((images - self.mean) / self.std)
        if self.multilabel:
            return torch.sigmoid(logits / self.temperatures)
        return torch.softmax(logits / self.temperature, dim=1)


def exported_model(trained: TrainedModel) -> ExportedModel:
    """The trained model as every format exports it (eval mode, float32, on the CPU)."""
    temperatures = (trained.temperatures or (1.0,) * len(trained.classes)) if trained.multilabel else None
    return ExportedModel(trained.network(), trained.mean, trained.std, trained.temperature, temperatures).eval()


def preprocess(trained: TrainedModel, image: Image.Image) -> np.ndarray:
    """An image as the exported model wants it: the inference resize/crop, RGB, float32 CHW in [0, 1]."""
    return build_transform(trained.transform, "inference")(rgb_tensor(to_rgb(image))).numpy().astype(np.float32) / 255


def unit_range_input(trained: TrainedModel) -> ModelInput:
    """The model's inference input pipeline stopped before normalization: float32 CHW in [0, 1], as exports take."""
    return ModelInput(
        trained.transform,
        "inference",
        (0.0,) * len(trained.mean),
        (1.0,) * len(trained.std),
        trained.architecture.input_check.problem,
    )


def example_size(trained: TrainedModel) -> tuple[int, int]:
    """The size the inference transformation gives a 256 x 256 image (any size works for these networks)."""
    y = build_transform(trained.transform, "inference")(torch.zeros(3, 256, 256, dtype=torch.uint8))
    return int(y.shape[-2]), int(y.shape[-1])
