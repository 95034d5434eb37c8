"""DenseNet / ResNet, any network of torchvision's or timm's catalog, and the untrained model directory (the
designer's DenseNet and ResNet modules)."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load, save_file
from torch import nn

from .. import __version__
from ..config import CATALOG_FAMILY, FAMILIES, OPTIONS, TIMM_FAMILY
from ..errors import InvalidModelDirectoryError, ParameterError
from ..files import atomic_write_json, building_dir, publish
from ..jsonfiles import read_versioned_json
from . import timm_catalog
from . import weights as pretrained_weights
from .catalog import InputCheck, build, catalog_names, head_keys

log = logging.getLogger(__name__)

MODEL_META = "imgtrain-model.json"
UNTRAINED_FORMAT = "imgtrain.untrained_model"
FORMAT_VERSION = 1
WEIGHTS_NAME = "weights.safetensors"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Old DenseNet checkpoints name layers 'norm.1' where torchvision's modules say 'norm1'.
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


@dataclass(frozen=True)
class Architecture:
    """Which network, with which constructor options."""

    family: str
    model_name: str
    options: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family == TIMM_FAMILY:
            timm_catalog.check_name(self.model_name)
            if self.options:
                raise ParameterError(f"timm networks take no options here, got {self.options}.")
            return
        if self.family == CATALOG_FAMILY:
            if self.model_name not in catalog_names() or self.options:
                raise ParameterError(
                    f"{self.model_name!r} is not in the model catalog (or takes no options).",
                    hint="`imgtrain models` lists the catalog.",
                )
            return
        if self.family not in FAMILIES:
            raise ParameterError(
                f"Unknown model family {self.family!r}; choose one of {sorted([*FAMILIES, CATALOG_FAMILY])}."
            )
        if self.model_name not in FAMILIES[self.family]:
            raise ParameterError(
                f"{self.model_name!r} is not a {self.family} model.",
                hint=f"choose one of {', '.join(FAMILIES[self.family])}.",
            )
        unknown = set(self.options) - set(OPTIONS[self.family])
        if unknown or not all(isinstance(v, bool) for v in self.options.values()):
            raise ParameterError(
                f"Options {self.options} are not valid for {self.family}; known: {OPTIONS[self.family]} (true/false)."
            )

    @classmethod
    def from_catalog(cls, name: str) -> Architecture:
        """The network `imgtrain model --model-name` names: torchvision's, or timm's as `timm/NAME`."""
        if name.startswith(timm_catalog.PREFIX):
            return cls(TIMM_FAMILY, name.removeprefix(timm_catalog.PREFIX))
        return cls(CATALOG_FAMILY, name)

    @property
    def display_name(self) -> str:
        """The name as `imgtrain model` takes it (`timm/` before a timm network)."""
        return timm_catalog.PREFIX + self.model_name if self.family == TIMM_FAMILY else self.model_name

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The mean and std (per RGB channel) the network's pretrained weights expect."""
        if self.family == TIMM_FAMILY:
            return timm_catalog.normalization(self.model_name)
        return IMAGENET_MEAN, IMAGENET_STD

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "model_name": self.model_name, "options": dict(self.options)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Architecture:
        """The inverse of `to_json`; raises KeyError / TypeError / ParameterError on bad input."""
        return cls(data["family"], data["model_name"], dict(data.get("options", {})))

    @property
    def head_keys(self) -> frozenset[str]:
        """The state-dict keys of the classifier head (sized to the classes; never taken from ImageNet)."""
        return head_keys(self.family, self.model_name)

    @property
    def input_check(self) -> InputCheck:
        """What the network needs of its input size."""
        return InputCheck(self.model_name, self.family)

    def build(self, num_classes: int) -> nn.Module:
        """A freshly initialised network with a `num_classes`-way head (uses torch's RNG)."""
        return build(self.family, self.model_name, num_classes, self.options)


@dataclass(frozen=True)
class UntrainedModel:
    """An opened untrained model directory."""

    path: Path
    architecture: Architecture
    pretrained: bool
    weights_source: str | None
    mean: tuple[float, ...] = IMAGENET_MEAN  # the input normalization its weights expect
    std: tuple[float, ...] = IMAGENET_STD

    def backbone_weights(self) -> dict[str, torch.Tensor] | None:
        """The pretrained weights without the classifier head, or None."""
        if not self.pretrained:
            return None
        try:
            return load((self.path / WEIGHTS_NAME).read_bytes())
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise InvalidModelDirectoryError(
                f"{self.path / WEIGHTS_NAME} cannot be read: {exc}.", hint="recreate the model directory."
            ) from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a .pth/.pt file loaded without running any pickled code."""
    try:
        if path.suffix == ".safetensors":
            state: Any = load(path.read_bytes())  # a state dict, perhaps nested: checked below
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ParameterError(
            f"The weights file {path} cannot be read: {type(exc).__name__}: {exc}.",
            hint="give a .safetensors file, or a .pth holding a plain state dict.",
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ParameterError(f"The weights file {path} does not hold a state dict of tensors.")
    return {_DENSENET_KEY.sub(r"\1\2", k.removeprefix("module.")): v for k, v in state.items()}


def stated_normalization(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The mean and std a .safetensors weights file states in its metadata ("mean", "std": JSON lists of three
    positive-std numbers), or None when it states none."""
    if path.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "mean" not in meta and "std" not in meta:
            return None
        mean, std = tuple(map(float, json.loads(meta["mean"]))), tuple(map(float, json.loads(meta["std"])))
        if len(mean) != 3 or len(std) != 3 or not all(0 < v < 10 for v in std) or not all(-10 < v < 10 for v in mean):
            raise ValueError("three means and three positive stds are expected")
    except Exception as exc:  # a damaged header or values: said with the file's name
        raise ParameterError(
            f"The weights file {path} states a normalization that cannot be used ({type(exc).__name__}: {exc}).",
            hint='its metadata "mean" and "std" must be JSON lists of three numbers.',
        ) from None
    return mean, std


def weights_mismatch(
    expected: dict[str, torch.Tensor],
    weights: dict[str, torch.Tensor],
    may_lack: Callable[[str], bool] = lambda key: False,
) -> str | None:
    """How `weights` fail to fit a network whose state dict is `expected` (missing, unexpected, wrong-shaped
    tensors, a few of each named), or None when they fit. Keys for which `may_lack` is true may be missing."""
    missing = sorted(k for k in set(expected) - set(weights) if not may_lack(k))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(
        f"{k} {tuple(weights[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(weights)
        if weights[k].shape != expected[k].shape
    )
    if not (missing or unexpected or wrong):
        return None
    return "; ".join(
        f"{what}: {items[:3]}{' ...' if len(items) > 3 else ''}"
        for what, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if items
    )


def load_backbone(model: nn.Module, architecture: Architecture, weights: dict[str, torch.Tensor], source: str) -> None:
    """Load every weight but the head's, strictly: a missing or unexpected key is an error."""
    head = architecture.head_keys
    weights = {k: v for k, v in weights.items() if k not in head}
    expected = {k: v for k, v in model.state_dict().items() if k not in head}
    # Checkpoints older than PyTorch 0.4 have no BatchNorm batch counters: keep the model's zeros.
    details = weights_mismatch(expected, weights, may_lack=lambda key: key.endswith("num_batches_tracked"))
    if details:
        raise ParameterError(
            f"The weights from {source} do not fit {architecture.model_name} ({details}).",
            hint=f"use weights made for {architecture.model_name}.",
        )
    model.load_state_dict(weights, strict=False)


def create_model_directory(
    out: str | Path,
    architecture: Architecture,
    *,
    pretrained: bool = True,
    weights: str | Path | None = None,
    overwrite: bool = False,
    offline: bool = False,
    progress: bool = True,
) -> UntrainedModel:
    """Write an untrained model directory: a JSON description plus, when pretrained, the weights.

    Pretrained weights come from `weights` (a file), else from torch's hub cache, downloaded there once
    and hash-checked (never when `offline` or IMGTRAIN_OFFLINE=1).
    """
    out = Path(out)
    state, source = None, None
    mean, std = architecture.normalization
    if pretrained:
        if weights and not Path(weights).is_file():
            raise ParameterError(f"The weights file {weights} does not exist.", hint="give an existing file.")
        path = Path(weights) if weights else _fetch_official(architecture, offline, progress)
        state, source = read_state_dict(path), str(path)
        mean, std = stated_normalization(path) or (mean, std)
        probe = architecture.build(num_classes=1000)
        load_backbone(probe, architecture, state, source)
        state = {k: v.contiguous() for k, v in probe.state_dict().items() if k not in architecture.head_keys}
    elif weights:
        raise ParameterError("--weights was given together with --no-pretrained.", hint="drop one of them.")
    with building_dir(out, overwrite, validate=open_untrained) as tmp:
        if state is not None:
            save_file(state, str(tmp / WEIGHTS_NAME))
            publish(tmp / WEIGHTS_NAME)
        atomic_write_json(
            tmp / MODEL_META,
            {
                "format": UNTRAINED_FORMAT,
                "format_version": FORMAT_VERSION,
                "architecture": architecture.to_json(),
                "pretrained": pretrained,
                "weights": WEIGHTS_NAME if pretrained else None,
                "weights_source": source,
                "mean": list(mean),
                "std": list(std),
                "torchvision_version": torchvision.__version__,
                "created_by": f"imgtrain {__version__}",
            },
        )
    log.info(
        "wrote untrained %s model directory %s%s",
        architecture.display_name,
        out,
        f" with weights from {source}" if source else "",
    )
    return open_untrained(out)


def _fetch_official(architecture: Architecture, offline: bool, progress: bool) -> Path:
    """The network's published ImageNet weights (torchvision's URL, or timm's file on the Hub), cached."""
    if architecture.family != TIMM_FAMILY:
        return pretrained_weights.fetch(pretrained_weights.imagenet_weights(architecture.model_name), offline, progress)
    hub = timm_catalog.hub_file(architecture.model_name)
    if hub is None:
        raise ParameterError(
            f"timm keeps no weights of {architecture.model_name} on the Hugging Face Hub.",
            hint="pass --weights FILE, or --no-pretrained.",
        )
    return pretrained_weights.fetch(pretrained_weights.hub_weights(*hub), offline, progress)


_FORMAT_NAMES = {
    UNTRAINED_FORMAT: "an untrained model directory; train it first",
    "imgtrain.trained_model": "a trained model directory",
}


def read_model_meta(
    path: Path, expected_format: str, hint: str, versions: int | tuple[int, ...] = FORMAT_VERSION
) -> dict[str, Any]:
    """The JSON of a model directory of `expected_format` at one of `versions` (1 unless said), or
    InvalidModelDirectoryError saying why."""
    meta_path = path / MODEL_META
    if not path.is_dir():
        raise InvalidModelDirectoryError(f"The model input {path} is not a directory.", hint)
    if not meta_path.is_file():
        what = " (it is an image directory)" if (path / "imgtrain-images.json").exists() else ""
        raise InvalidModelDirectoryError(
            f"The model input {path} is not a model directory: no {MODEL_META}{what}.", hint
        )
    return read_versioned_json(
        meta_path, expected_format, versions, InvalidModelDirectoryError, hint, kinds=_FORMAT_NAMES
    )


def open_untrained(path: str | Path) -> UntrainedModel:
    """Open and validate an untrained model directory, or raise InvalidModelDirectoryError saying why."""
    path = Path(path)
    hint = "create one with `imgtrain resnet OUT`, `imgtrain densenet OUT` or `imgtrain model OUT`."
    meta_path = path / MODEL_META
    meta = read_model_meta(path, UNTRAINED_FORMAT, hint)
    try:
        architecture = Architecture.from_json(meta["architecture"])
        pretrained = meta["pretrained"]
        if not isinstance(pretrained, bool):
            raise TypeError("pretrained must be true or false")
    except (KeyError, TypeError, ValueError, ParameterError) as exc:
        raise InvalidModelDirectoryError(f"{meta_path} is invalid: {exc}.", hint) from None
    if pretrained and not (path / WEIGHTS_NAME).is_file():
        raise InvalidModelDirectoryError(f"{path} says pretrained but {WEIGHTS_NAME} is missing.", hint)
    mean, std = meta.get("mean", IMAGENET_MEAN), meta.get("std", IMAGENET_STD)
    if (
        not all(isinstance(v, list | tuple) and len(v) == 3 and all(_finite(x) for x in v) for v in (mean, std))
        or min(std) <= 0
    ):
        raise InvalidModelDirectoryError(f"{meta_path} is invalid: mean and std must be three numbers (std > 0).", hint)
    return UntrainedModel(path, architecture, pretrained, meta.get("weights_source"), tuple(mean), tuple(std))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
