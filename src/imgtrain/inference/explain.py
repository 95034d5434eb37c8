"""Explanations: Grad-CAM heatmaps (Selvaraju et al., 2017) of what a trained model looked at.

For the most confident errors and a seeded sample of correct predictions of a labeled image directory
(or of a scores file's rows), the heatmap of the predicted class (of a multi-label model: of each class it
gave, one entry each) over the model's own input, computed
with captum's LayerGradCam at the network's last spatial layer (target_layer_name): at 224 px, layer4 of
a ResNet, the features of a DenseNet, EfficientNet or ConvNeXt, the permuted last stage of a Swin and the
patch projection of a ViT (which has no later spatial map). Every network of the catalog has one.

    OUT/explanations.json     format imgtrain.explanations: one entry per image, its heatmap and overlay
    OUT/heatmaps.safetensors  the heatmaps at input resolution, 0-1, keyed by image id
    OUT/<n>-<id>.png          the model input with its heatmap over it
    OUT/explanations.png      all of them in one grid, errors first
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import EXPLAIN_COUNT, PROBABILITY_PREFIX, SCORED_LABELS
from ..data.image_directory import ImageDirectory
from ..data.imaging import BadImage, read_image_file
from ..data.transforms import ModelInput
from ..errors import InvalidDatasetError, MissingDependencyError, NotLabeledDatasetError, ParameterError
from ..files import check_output
from ..models.model_directory import TrainedModel
from ..params import is_integer
from .explain_files import write_explanations
from .model import load_model
from .multilabel_metrics import most_confident_miss
from .scoring import score

log = logging.getLogger(__name__)

EXPLAIN_FORMAT = "imgtrain.explanations"
DEFAULT_COUNT = EXPLAIN_COUNT
#: A map of 4x4 cannot tell which quarter of the image mattered (measured on bench/trust.py's corner task at 128 px:
#: 35% of the mass in the deciding quarter at ResNet's 4x4 layer4, 68% at its 8x8 layer3). At 224 px every
#: catalog network's last map is 7x7 or larger, so there this picks the usual last layer.
MIN_MAP_SIDE = 7


def target_layer_name(net: nn.Module, example: torch.Tensor, head: Collection[str] = ()) -> str:
    """The layer to explain: of the modules that finish, in the forward pass, before the classifier head (the
    modules named in `head`) starts and output a (batch, channels, height, width) map of the image larger than 1x1,
    the last whose map is at least MIN_MAP_SIDE on its short side, else the last of all."""
    finished: list[tuple[str, int]] = []
    started_head: list[bool] = []
    hooks = []
    for name, module in net.named_modules():
        if name in head:
            hooks.append(module.register_forward_pre_hook(lambda m, i: started_head.append(True)))
        elif name:
            hooks.append(
                module.register_forward_hook(
                    lambda m, i, out, name=name: (
                        finished.append((name, min(out.shape[2:])))
                        if not started_head and _is_spatial_map(out, example.shape[2:])
                        else None
                    )
                )
            )
    try:
        with torch.no_grad():
            net(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not finished:
        raise ParameterError(f"{type(net).__name__} has no layer with a spatial output to explain.")
    fine = [name for name, side in finished if side >= MIN_MAP_SIDE]
    return fine[-1] if fine else finished[-1][0]


def _is_spatial_map(out: object, input_size: torch.Size) -> bool:
    """Whether a module's output is a (batch, channels, height, width) map of the image larger than 1x1: both sides
    shrunk from the input's by about one stride (not, say, a transformer's (batch, heads, tokens, features))."""
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[2] * out.shape[3] <= 1:
        return False
    (height, width), (in_height, in_width) = out.shape[2:], input_size
    if height > in_height or width > in_width:
        return False
    strides = in_height / height, in_width / width
    return max(strides) / min(strides) < 1.5


def head_modules(head_keys: Iterable[str]) -> set[str]:
    """The names of the modules that hold the classifier head's weights."""
    return {key.rsplit(".", 1)[0] for key in head_keys}


def gradcam(net: nn.Module, layer: nn.Module, batch: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
    """(images, height, width) Grad-CAM maps of `targets` over `batch`, upsampled to the input, each scaled to 0-1."""
    try:
        from captum.attr import LayerAttribution, LayerGradCam
    except ImportError:
        raise MissingDependencyError("Explanations need captum.", hint="pip install 'imgtrain[explain]'.") from None
    net.eval()
    batch = batch.clone().requires_grad_(True)
    cams = LayerGradCam(net, layer).attribute(batch, target=list(targets), relu_attributions=True)
    cams = LayerAttribution.interpolate(cams.detach(), tuple(batch.shape[2:]), interpolate_mode="bilinear")
    cams = cams[:, 0].clamp(min=0).numpy()
    peaks = cams.reshape(len(cams), -1).max(1)
    return cams / np.where(peaks > 0, peaks, 1)[:, None, None]


def _network_for_gradients(trained: TrainedModel) -> nn.Module:
    """The trained network, with in-place activations turned off (they would overwrite the hooked maps)."""
    net = trained.network()
    for module in net.modules():
        if hasattr(module, "inplace"):
            # nn.Module.__getattr__ is typed as returning a tensor or a module, whatever the name; `inplace` is a bool
            module.inplace = False  # type: ignore[assignment]
    return net


def choose(
    rows: list[dict[str, Any]], classes: Sequence[str], errors: int, correct: int, seed: int
) -> list[tuple[dict[str, Any], bool]]:
    """The `errors` most confident errors, then a seeded sample of `correct` right predictions: (row, is_error).

    A multi-label row (its true classes in `labels`) is right when its answer is exactly its classes; its error's
    confidence is that of its most confident wrong class (a probability over the threshold of a class it lacks, or
    one minus that of a class it has and was not given)."""
    multilabel = any("labels" in r for r in rows)
    truth = "labels" if multilabel else "label"
    scored = [r for r in rows if r.get(truth) not in (None, "") and not r.get("error")]
    if not scored:
        raise NotLabeledDatasetError(
            "There is no labeled, scored image to explain.",
            hint="explain a labeled image directory (or the scores of one).",
        )
    judged = [(r, *(_miss(r, classes) if multilabel else _top(r, classes))) for r in scored]
    is_right = (
        (lambda r, c: set(r[SCORED_LABELS]) == set(r["labels"])) if multilabel else (lambda r, c: c == r["label"])
    )
    wrong = sorted((j for j in judged if not is_right(j[0], j[2])), key=lambda j: -j[1])[:errors]
    right = [r for r, _, c in judged if is_right(r, c)]
    picked = np.random.default_rng(seed).permutation(len(right))[:correct]
    return [(r, True) for r, _, _ in wrong] + [(right[i], False) for i in sorted(picked)]


def _top(row: dict[str, Any], classes: Sequence[str]) -> tuple[float, str]:
    """(probability, class) of a scored row's most likely class."""
    return max((float(row[PROBABILITY_PREFIX + c]), c) for c in classes)


def _miss(row: dict[str, Any], classes: Sequence[str]) -> tuple[float, str]:
    """(confidence, class) of a multi-label row's most confident wrong class; (0, "") when it has none."""
    probability = {c: float(row[PROBABILITY_PREFIX + c]) for c in classes}
    return most_confident_miss(probability, set(row["labels"]), set(row[SCORED_LABELS]))


def _explained_classes(row: dict[str, Any], classes: Sequence[str]) -> list[tuple[float, str]]:
    """(probability, class) of each class a row's heatmaps explain: its top class, or each class a multi-label
    answer gave (its top class when it gave none)."""
    if "labels" not in row or not row[SCORED_LABELS]:
        return [_top(row, classes)]
    return [(float(row[PROBABILITY_PREFIX + c]), c) for c in row[SCORED_LABELS]]


def explain_rows(
    trained: TrainedModel,
    rows: list[dict[str, Any]],
    out: str | Path,
    *,
    errors: int = DEFAULT_COUNT,
    correct: int = DEFAULT_COUNT,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Grad-CAM of the chosen scored rows (see `choose`); write OUT (see the module's docstring)."""
    for name, value in (("errors", errors), ("correct", correct)):
        if not is_integer(value, 0):
            raise ParameterError(f"{name} must be an integer >= 0, got {value!r}.")
    chosen = choose(rows, trained.classes, errors, correct, seed)
    model_input = trained.model_input()
    net = _network_for_gradients(trained)
    entries, maps, images = [], [], []
    layer_name = layer = None
    for row, is_error in chosen:
        tensor = _model_input_of(model_input, row["path"])[None]
        if layer is None:  # the first image's shape picks the layer for all (one transformation, one size)
            layer_name = target_layer_name(net, tensor, head_modules(trained.architecture.head_keys))
            layer = dict(net.named_modules())[layer_name]
        explained = _explained_classes(row, trained.classes)
        cams = gradcam(
            net, layer, tensor.expand(len(explained), -1, -1, -1), [trained.classes.index(c) for _, c in explained]
        )
        for (probability, predicted), cam in zip(explained, cams, strict=True):
            entries.append(
                {
                    "id": row["id"],
                    "path": row["path"],
                    "label": row["labels"] if "labels" in row else row["label"],
                    "predicted": predicted,
                    "probability": probability,
                    "error": is_error,
                }
                | ({"heatmap": f"{row['id']}/{predicted}"} if "labels" in row else {})
            )
            maps.append(cam)
            images.append(_display(tensor[0], trained))
    document = {
        "format": EXPLAIN_FORMAT,
        "format_version": 1,
        "method": "Grad-CAM (captum LayerGradCam)",
        "model": str(trained.path),
        "architecture": trained.architecture.model_name,
        "target_layer": layer_name,
        "explained_class": "predicted",  # multi-label: one entry per class given (the top one when none was)
        "images": entries,
    }
    write_explanations(Path(out), document, maps, images, overwrite)
    return document


def log_explained(document: dict[str, Any], out: Path) -> None:
    """Say what explain_rows wrote, naming the folder the user will find (not the one it was built in)."""
    entries = document["images"]
    log.info("wrote %d explanations (%d errors) to %s", len(entries), sum(e["error"] for e in entries), out)


def _model_input_of(model_input: ModelInput, path: str) -> torch.Tensor:
    """The model input of a scored image, or InvalidDatasetError when it can no longer be read."""
    try:
        return model_input.from_bytes(read_image_file(Path(path)))
    except BadImage as exc:
        raise InvalidDatasetError(
            f"Image {path} cannot be read: {exc}.",
            hint="explain scores of images that are still where they were scored.",
        ) from None


def _display(tensor: torch.Tensor, trained: TrainedModel) -> np.ndarray:
    """The model input as it looks: normalization undone, HWC uint8."""
    mean, std = torch.tensor(trained.mean)[:, None, None], torch.tensor(trained.std)[:, None, None]
    return (tensor * std + mean).clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


def explain(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    errors: int = DEFAULT_COUNT,
    correct: int = DEFAULT_COUNT,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a labeled image directory with a trained model and explain its most confident errors and a sample of
    its correct predictions with Grad-CAM heatmaps, written to `out`."""
    directory = ImageDirectory.open(data)
    directory.require_labels("explained")
    check_output(Path(out), overwrite, [Path(model), Path(data)])  # before scoring, not after
    loaded = load_model(model, precision="fp32")
    rows = score(loaded, directory, progress=progress)
    document = explain_rows(loaded.trained, rows, out, errors=errors, correct=correct, seed=seed, overwrite=overwrite)
    log_explained(document, Path(out))
    return document
