"""Export a trained model for other runtimes: ONNX or TorchScript, normalization and softmax inside.

The exported model takes float32 images, NCHW, RGB scaled to [0, 1], already resized and
cropped as `imgtrain-export.json` says, and returns per-class probabilities (a multi-label model's: one sigmoid
per class, its thresholds in `imgtrain-export.json`). `preprocess`
does those steps in Python, for clients that want to match imgtrain exactly.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.imaging import rgb_tensor, to_rgb
from ..data.transforms import build_transform
from ..errors import MissingDependencyError, ParameterError
from ..files import atomic_write_json, building_dir
from .model_directory import TrainedModel, open_model_directory

log = logging.getLogger(__name__)

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
EXPORT_META = "imgtrain-export.json"
OPSET = 17


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


def preprocess(trained: TrainedModel, image: Image.Image) -> np.ndarray:
    """An image as the exported model wants it: the inference resize/crop, RGB, float32 CHW in [0, 1]."""
    return build_transform(trained.transform, "inference")(rgb_tensor(to_rgb(image))).numpy().astype(np.float32) / 255


def export_model(model: str | Path, out: str | Path, fmt: str = "onnx", overwrite: bool = False) -> Path:
    """Write OUT/model.onnx (or model.pt) and OUT/imgtrain-export.json; return OUT."""
    if fmt not in FORMATS:
        raise ParameterError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    trained = open_model_directory(model)
    temperatures = (trained.temperatures or (1.0,) * len(trained.classes)) if trained.multilabel else None
    net = ExportedModel(trained.network(), trained.mean, trained.std, trained.temperature, temperatures).eval()
    height, width = _example_size(trained)
    example = torch.rand(1, 3, height, width)
    with building_dir(Path(out), overwrite, inputs=[Path(model)]) as tmp:
        path = tmp / FORMATS[fmt]
        if fmt == "onnx":
            _export_onnx(net, example, path, trained)
        else:
            with torch.inference_mode(), warnings.catch_warnings():  # TorchScript is deprecated, still widely read
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(torch.jit.trace(net, example), str(path))
        atomic_write_json(tmp / EXPORT_META, _describe(trained, fmt, height, width))
    log.info("exported %s as %s to %s", trained.path, fmt, out)
    return Path(out)


def _example_size(trained: TrainedModel) -> tuple[int, int]:
    """The size the inference transformation gives a 256 x 256 image (any size works for these networks)."""
    y = build_transform(trained.transform, "inference")(torch.zeros(3, 256, 256, dtype=torch.uint8))
    return int(y.shape[-2]), int(y.shape[-1])


def _export_onnx(net: nn.Module, example: torch.Tensor, path: Path, trained: TrainedModel) -> None:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            "ONNX export needs the onnx package.", hint="pip install 'imgtrain[export]' (onnx, onnxruntime)."
        ) from None
    with warnings.catch_warnings():  # the TorchScript-based exporter: no onnxscript needed
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["probabilities"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "probabilities": {0: "batch"}},
        )
    proto = onnx.load(str(path))
    for key, value in (
        ("imgtrain.classes", "\n".join(trained.classes)),
        ("imgtrain.input", "float32 NCHW RGB in [0, 1], resized/cropped as imgtrain-export.json says"),
        *([("imgtrain.thresholds", "\n".join(map(repr, trained.thresholds)))] if trained.thresholds else []),
    ):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _describe(trained: TrainedModel, fmt: str, height: int, width: int) -> dict[str, Any]:
    spec = trained.transform.values()
    return {
        "format": "imgtrain.export",
        "format_version": 1,
        "runtime_format": fmt,
        "file": FORMATS[fmt],
        "classes": list(trained.classes),
        "architecture": trained.architecture.to_json(),
        "input": {
            "name": "images",
            "dtype": "float32",
            "layout": "NCHW",
            "color": "RGB",
            "range": [0, 1],
            "example_size": [height, width],
            "preprocessing": "decode, convert to RGB, then the inference steps of `transform` (resize the "
            "shorter side with antialiasing, center crop, pad ...), divide by 255",
            "transform": {k: v for k, v in spec.items() if not (k.startswith("random_") or k == "color_jitter")},
            "normalization": {
                "mean": list(trained.mean),
                "std": list(trained.std),
                "applied": "inside the exported model",
            },
        },
        "output": {
            "name": "probabilities",
            "shape": ["batch", len(trained.classes)],
            "meaning": "softmax probabilities, in the order of `classes`",
            "temperature": trained.temperature,
            "temperature_applied": "inside the exported model",
        }
        | (
            {
                "meaning": "each class's own sigmoid probability, in the order of `classes`: an image has every "
                "class whose probability is at least its threshold",
                "task": "multilabel",
                "thresholds": dict(zip(trained.classes, trained.thresholds, strict=True)),
                "temperature": None,
                "temperatures": dict(
                    zip(trained.classes, trained.temperatures or (1.0,) * len(trained.classes), strict=True)
                ),
            }
            if trained.thresholds is not None
            else {}
        ),
        "source_model": str(trained.path),
    }
