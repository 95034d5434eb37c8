"""A trained model loaded for prediction: `load_model`, `Model.predict` (one image or many), on the chosen device and
precision, with the model's calibration temperature; a multi-label model answers the classes over their thresholds."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import UNKNOWN_LABEL, check_min_confidence
from ..data.imaging import BadImage, read_image_file, rgb_tensor, to_rgb
from ..data.transforms import ModelInput
from ..deploy.formats import RUNTIME_PACKAGES
from ..deploy.runtimes import Runtime
from ..devices import PRECISIONS, autocast_for, measure_speedup, resolve_device, resolve_precision
from ..errors import InvalidDatasetError, ParameterError
from ..models.model_directory import TrainedModel, open_model_directory
from ..models.tracing import module_calls, tracing
from ..thresholds import check_threshold, predicted_classes
from .backends import check_backend_for, open_backend

log = logging.getLogger(__name__)


class Model:
    """A trained model ready to predict: `load_model(MODELDIR).predict(image)`."""

    def __init__(
        self,
        trained: TrainedModel,
        device: str = "auto",
        precision: str = "auto",
        threshold: float | None = None,
        tta: bool = False,
        backend: str = "torch",
    ):
        self.trained, self.tta = trained, tta  # tta: average with the left-right mirror image
        self.classes = trained.classes
        self.thresholds = _thresholds(trained, check_threshold(threshold))
        # the runtimes run on the CPU: on a GPU machine, `auto` means the CPU for them
        self.device = resolve_device("cpu" if device == "auto" and backend in RUNTIME_PACKAGES else device)
        if precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
        self.precision = precision  # `auto` is decided on the first batch, by measuring this network on it
        self.backend = check_backend_for(backend, self.device, precision)  # `auto` is decided on the first batch
        if backend in RUNTIME_PACKAGES:
            self.precision = "fp32"
        self.runtime: Runtime | None = None
        self._backend_open = backend == "torch"
        self.network = _inference_network(trained.network(), self.device)
        self.model_input: ModelInput = trained.model_input()

    def set_threshold(self, threshold: float | None) -> None:
        """Answer a multi-label model's classes at `threshold` (every class), or at their own thresholds (None)."""
        self.thresholds = _thresholds(self.trained, check_threshold(threshold))

    @property
    def multilabel(self) -> bool:
        """Whether each class has its own sigmoid probability and threshold (the answer: a list of classes)."""
        return self.thresholds is not None

    def check_min_confidence(self, value: object) -> float | None:
        """`value` as config.check_min_confidence gives it for this model; a multi-label model has thresholds
        instead, so any value is refused."""
        if value is not None and self.multilabel:
            raise ParameterError(
                f"min_confidence applies to single-label models; {self.trained.path} is multi-label.",
                hint="leave it out: an image whose classes are all under their thresholds is answered with no class; "
                "give threshold to change the thresholds.",
            )
        return check_min_confidence(value, self.classes)

    def answer(self, probs: Sequence[float], min_confidence: float | None = None) -> tuple[str | list[str], str | None]:
        """(label, best guess) of one image's probabilities: see `decide`; a multi-label model's label is the list of
        classes over their thresholds, and it has no best guess."""
        if self.thresholds is not None:
            return predicted_classes(self.classes, probs, self.thresholds), None
        return decide(self.classes, probs, min_confidence)

    @torch.inference_mode()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities (float32, on the CPU) of a batch of model inputs: the softmax at the model's temperature, or
        a multi-label model's sigmoid per class, each at its class's temperature."""
        with module_calls():  # never while another thread traces a network (models.tracing)
            return self._probabilities(batch)

    def _probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        if self.precision == "auto":  # scores carry no seed promise: the fastest precision measured here
            self.precision = resolve_precision(
                "auto",
                self.device,
                repeatable=False,
                speedup=lambda candidate: measure_speedup(
                    self.network, tuple(batch.shape), self.device, candidate, training=False
                ),
            )
        batch = batch.to(self.device, non_blocking=True)
        if not self._backend_open:
            self.runtime = open_backend(self.backend, self.trained.network, batch, self._logits_of)
            self._backend_open = True
            self.precision = "fp32" if self.runtime else self.precision
        probabilities = self._scaled(self._logits_of(batch))
        if self.tta:
            return (probabilities + self._scaled(self._logits_of(batch.flip(3)))) / 2
        return probabilities

    @property
    def backend_name(self) -> str:
        """What computes the scores: torch, onnxruntime or openvino (`auto` until the first batch decides)."""
        return self.runtime.name if self.runtime else ("torch" if self._backend_open else self.backend)

    def _logits_of(self, batch: torch.Tensor) -> torch.Tensor:
        if self.runtime is not None:
            return torch.from_numpy(self.runtime.run(batch.numpy()))
        with autocast_for(self.device, self.precision):
            return self.network(batch.contiguous(memory_format=torch.channels_last))

    def _scaled(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities of logits at the model's temperature (per class for a multi-label model)."""
        if self.multilabel:
            return torch.sigmoid(
                logits.float() / torch.tensor(self.trained.temperatures or 1.0, device=logits.device)
            ).cpu()
        return torch.softmax(logits.float() / self.trained.temperature, dim=1).cpu()

    def predict(
        self, images: Image.Image | str | Path | Sequence[Image.Image | str | Path], min_confidence: float | None = None
    ) -> Any:
        """Label and per-class probabilities of one image (a dict) or of a list of images (a list of dicts).

        With `min_confidence`, an image whose top probability is below it gets the label UNKNOWN_LABEL; its
        `best_guess` keeps the top class. A multi-label model's label is the list of classes over their thresholds."""
        min_confidence = self.check_min_confidence(min_confidence)
        if isinstance(images, Image.Image | str | Path):
            single, batch = True, [images]
        else:
            single, batch = False, list(images)
        tensors = []
        for item in batch:
            if isinstance(item, Image.Image):
                tensors.append(self.model_input(rgb_tensor(to_rgb(item))))
                continue
            try:
                tensors.append(self.model_input.from_bytes(read_image_file(Path(item))))
            except BadImage as exc:
                raise InvalidDatasetError(f"The image {item} cannot be read: {exc}.") from None
        results = []
        for tensor in tensors:  # one at a time: images may differ in size
            probs = self.probabilities(tensor[None])[0].tolist()
            label, guess = self.answer(probs, min_confidence)
            results.append(
                {"label": label, "probabilities": dict(zip(self.classes, probs, strict=True))}
                | ({} if self.multilabel else {"best_guess": guess})
            )
        return results[0] if single else results


def _inference_network(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The network prepared for inference: BatchNorm folded into the convolutions, channels-last.

    Same outputs up to float rounding; measured about 1.5x faster for resnet18 at 224 px on 2 CPU cores.
    """
    net = net.to(device).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        with tracing():
            net = fuse(net)
    except Exception as exc:  # a network fx cannot trace keeps its BatchNorm layers
        log.debug("BatchNorm folding skipped: %s", exc)
    return net.to(memory_format=torch.channels_last)


def load_model(
    path: str | Path,
    device: str = "auto",
    precision: str = "auto",
    threshold: float | None = None,
    tta: bool = False,
    backend: str = "torch",
) -> Model:
    """Open a trained model directory for prediction (validated; never unpickles anything); `threshold` replaces a
    multi-label model's thresholds by one for every class; `tta` averages each image's probabilities with its
    left-right mirror's (test-time augmentation: twice the work); `backend` is what computes (inference.backends)."""
    return Model(open_model_directory(path), device, precision, threshold, tta, backend)


def _thresholds(trained: TrainedModel, threshold: float | None) -> tuple[float, ...] | None:
    """A multi-label model's thresholds (its own, or `threshold` for every class); None for a single-label model,
    which refuses a threshold."""
    if trained.thresholds is None:
        if threshold is not None:
            raise ParameterError(
                f"threshold applies to multi-label models; {trained.path} is single-label (one class per image).",
                hint="leave it out, or give min_confidence to answer 'unknown' below a probability.",
            )
        return None
    return trained.thresholds if threshold is None else (threshold,) * len(trained.classes)


def decide(classes: Sequence[str], probs: Sequence[float], min_confidence: float | None) -> tuple[str, str]:
    """(label, best guess): the top class twice, or UNKNOWN_LABEL and the top class when its probability is below
    `min_confidence`."""
    top = int(np.argmax(probs))
    unsure = min_confidence is not None and probs[top] < min_confidence
    return (UNKNOWN_LABEL if unsure else classes[top]), classes[top]
