"""The trained model directory: JSON description + safetensors weights, never pickle.

MODELDIR/imgtrain-model.json   architecture, classes, input pipeline, training parameters,
                               metric history, calibration (temperature), library versions;
                               a multi-label model (version 2): task and each class's threshold
MODELDIR/model.safetensors     the weights (of the best epoch)
MODELDIR/history.jsonl         one line of metrics per epoch
MODELDIR/training.png          loss and accuracy per epoch
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load, save_file
from torch import nn

from .. import __version__
from ..calibration import check_temperature
from ..config import spec_problems
from ..data.image_directory import MULTILABEL
from ..data.transforms import ModelInput, TransformSpec
from ..errors import InvalidModelDirectoryError, ParameterError
from ..files import atomic_write_json, atomic_write_text, publish, write_failed
from ..params import is_number
from ..thresholds import check_thresholds
from .architectures import MODEL_META, Architecture, read_model_meta, weights_mismatch

TRAINED_FORMAT = "imgtrain.trained_model"
#: Single-label models are still written as version 1; a multi-label one is version 2 (task, thresholds).
FORMAT_VERSION = 1
MULTILABEL_VERSION = 2
WEIGHTS_NAME = "model.safetensors"
#: safetensors' own limit on its JSON header (names, dtypes, shapes, offsets of every tensor).
MAX_HEADER_BYTES = 100_000_000
HISTORY_NAME = "history.jsonl"
PLOT_NAME = "training.png"


@dataclass(frozen=True)
class TrainedModel:
    """An opened, validated trained model directory."""

    path: Path
    architecture: Architecture
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    transform: TransformSpec
    meta: dict[str, Any]
    weights: dict[str, torch.Tensor]
    temperature: float = 1.0  # divides the logits before softmax (calibration); 1 when not calibrated
    thresholds: tuple[float, ...] | None = None  # a multi-label model's: each class's probability threshold
    temperatures: tuple[float, ...] | None = None  # a multi-label model's: each class's calibration temperature

    @property
    def multilabel(self) -> bool:
        """Whether the model gives each class its own sigmoid probability (and a threshold) rather than a softmax."""
        return self.thresholds is not None

    def require_single_label(self, what: str) -> None:
        """InvalidModelDirectoryError when this is a multi-label model and `what` uses single-label models only."""
        if self.multilabel:
            raise InvalidModelDirectoryError(
                f"{self.path} is a multi-label model (a sigmoid and a threshold per class); {what} uses single-label "
                "models only in this version of imgtrain.",
                "its thresholds and history are in imgtrain-model.json; score, serve and export learn multi-label "
                "models next (issue 28).",
            )

    def network(self) -> nn.Module:
        """The network with its trained weights, in eval mode, on the CPU."""
        net = self.architecture.build(len(self.classes))
        net.load_state_dict(self.weights, strict=True)
        return net.eval()

    def model_input(self) -> ModelInput:
        """The inference input pipeline the model was trained with."""
        return ModelInput(self.transform, "inference", self.mean, self.std, self.architecture.input_check.problem)


def library_versions() -> dict[str, str]:
    return {
        "imgtrain": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def write_model_directory(
    root: Path,
    *,
    architecture: Architecture,
    classes: Sequence[str],
    weights: dict[str, torch.Tensor],
    transform: TransformSpec,
    mean: Sequence[float],
    std: Sequence[float],
    training: dict[str, Any],
    history: list[dict[str, Any]],
    best_epoch: int,
    calibration: dict[str, Any] | None = None,
    thresholds: Sequence[float] | None = None,
) -> None:
    """Write a trained model directory's files into `root` (a folder being built); `calibration` holds the
    fitted temperature (calibration.temperature_report); `thresholds` make it a multi-label model."""
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(root / WEIGHTS_NAME))
        publish(root / WEIGHTS_NAME)
    except SafetensorError as exc:  # disk full and the like, reported by the Rust writer
        raise write_failed(root / WEIGHTS_NAME, exc) from None
    atomic_write_text(root / HISTORY_NAME, "".join(json.dumps(row) + "\n" for row in history))
    atomic_write_json(
        root / MODEL_META,
        {
            "format": TRAINED_FORMAT,
            "format_version": FORMAT_VERSION if thresholds is None else MULTILABEL_VERSION,
            **({"task": MULTILABEL, "thresholds": list(thresholds)} if thresholds is not None else {}),
            "architecture": architecture.to_json(),
            "classes": list(classes),
            "input": {"transform": transform.values(), "mean": list(mean), "std": list(std)},
            "weights": WEIGHTS_NAME,
            "best_epoch": best_epoch,
            "training": training,
            "history": history,
            **({"calibration": calibration} if calibration is not None else {}),
            "library_versions": library_versions(),
        },
    )


def open_model_directory(path: str | Path) -> TrainedModel:
    """Open and validate a trained model directory; InvalidModelDirectoryError says what is wrong."""
    path = Path(path)
    hint = "give a directory written by `imgtrain train`."
    meta_path = path / MODEL_META
    meta = read_model_meta(path, TRAINED_FORMAT, hint, (FORMAT_VERSION, MULTILABEL_VERSION))
    try:
        architecture = Architecture.from_json(meta["architecture"])
        classes = _classes(meta["classes"])
        spec_values = meta["input"]["transform"]
        problems = spec_problems(spec_values) if isinstance(spec_values, dict) else ["transform is not an object"]
        if problems:
            raise ValueError("; ".join(problems))
        transform = TransformSpec(**spec_values)
        mean, std = _triple(meta["input"]["mean"], "mean"), _triple(meta["input"]["std"], "std")
        if min(std) <= 0:
            raise ValueError("std must be positive")
        thresholds = _thresholds(meta, len(classes))
        temperature, temperatures = _temperatures(meta, len(classes), thresholds is not None)
    except (KeyError, TypeError, ValueError, ParameterError) as exc:
        raise InvalidModelDirectoryError(f"{meta_path} is invalid: {exc}.", hint) from None
    weights = _load_weights(path / WEIGHTS_NAME, architecture, len(classes))
    return TrainedModel(
        path, architecture, classes, mean, std, transform, meta, weights, temperature, thresholds, temperatures
    )


def _thresholds(meta: dict[str, Any], num_classes: int) -> tuple[float, ...] | None:
    """A version-2 (multi-label) model's thresholds; None for a single-label one."""
    multilabel = meta["format_version"] == MULTILABEL_VERSION
    if multilabel != (meta.get("task") == MULTILABEL) or (not multilabel and "thresholds" in meta):
        raise ValueError(f"task {MULTILABEL!r} and thresholds belong to version {MULTILABEL_VERSION}, and only there")
    return check_thresholds(meta.get("thresholds"), num_classes) if multilabel else None


def _temperatures(meta: dict[str, Any], num_classes: int, multilabel: bool) -> tuple[float, tuple[float, ...] | None]:
    """(the softmax temperature, a multi-label model's temperature per class) stored under `calibration`."""
    stored = meta.get("calibration")
    if stored is not None and not isinstance(stored, dict):
        raise ValueError("calibration must be an object")
    if multilabel:
        values = (stored or {}).get("temperatures", [1.0] * num_classes)
        if not isinstance(values, list) or len(values) != num_classes:
            raise ValueError(f"calibration.temperatures must be a list of {num_classes} numbers, one per class")
        return 1.0, tuple(check_temperature(v) for v in values)
    return check_temperature((stored or {"temperature": 1.0}).get("temperature")), None


def _classes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(c, str) and c for c in value):
        raise ValueError("classes must be a non-empty list of names")
    if len(set(value)) != len(value):
        raise ValueError("classes lists a name twice")
    return tuple(value)


def _triple(value: Any, name: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != 3 or not all(is_number(v) for v in value):
        raise ValueError(f"{name} must be three numbers")
    return tuple(float(v) for v in value)


def _shapes(architecture: Architecture, num_classes: int) -> dict[str, torch.Tensor]:
    """The network's state dict on the meta device (shapes only, no memory, no random draws)."""
    try:
        with torch.device("meta"):
            return architecture.build(num_classes).state_dict()
    except NotImplementedError:  # RegNet reads widths it computes with tensors: build it, then keep only the shapes
        with torch.random.fork_rng(devices=[]):
            return architecture.build(num_classes).to("meta").state_dict()


def _load_weights(file: Path, architecture: Architecture, num_classes: int) -> dict[str, torch.Tensor]:
    """Weights from safetensors (never unpickled), checked key by key and shape by shape."""
    if not file.is_file():
        raise InvalidModelDirectoryError(f"The weights file {file} is missing.", "restore it, or train again.")
    expected = _shapes(architecture, num_classes)
    # what these tensors take, plus room for the header: a larger file is refused before it is read into memory
    largest = sum(t.numel() * t.element_size() for t in expected.values()) + MAX_HEADER_BYTES
    if file.stat().st_size > largest:
        raise InvalidModelDirectoryError(
            f"{file} is {file.stat().st_size:,} bytes; {architecture.model_name} with {num_classes} classes needs at "
            f"most {largest:,}, so it was not read.",
            "restore the file written by `imgtrain train`.",
        )
    try:
        # Read into memory rather than memory-map: a file replaced under a running process cannot crash it.
        weights = load(file.read_bytes())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InvalidModelDirectoryError(
            f"{file} is not a safetensors weights file ({exc}); imgtrain never loads pickles.",
            "restore the file written by `imgtrain train`.",
        ) from None
    not_finite = [name for name, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if not_finite:
        raise InvalidModelDirectoryError(
            f"{file} holds NaN or infinite weights ({', '.join(not_finite[:3])}"
            f"{', ...' if len(not_finite) > 3 else ''}): every probability it gave would be NaN.",
            "restore the file written by `imgtrain train`, or train again.",
        )
    details = weights_mismatch(expected, weights)
    if details:
        raise InvalidModelDirectoryError(
            f"{file} does not fit {architecture.model_name} with {num_classes} classes ({details}).",
            "the weights and imgtrain-model.json must come from the same training run.",
        )
    return weights
