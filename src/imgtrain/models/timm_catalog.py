"""timm as a second catalog (`imgtrain model OUT --model-name timm/NAME`): its classifiers, their pretrained
configurations (input size, normalization, licence) and where their weights live on the Hugging Face Hub.

timm is optional (`pip install 'imgtrain[timm]'`); it is imported only here, and only when a timm network is
asked for.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType
from typing import Any

from torch import nn

from ..errors import ParameterError

#: What a `--model-name` starts with to name a timm network.
PREFIX = "timm/"
#: The file of a pretrained timm network on the Hub: safetensors only (timm's pickled .bin files are never read).
HUB_FILE = "model.safetensors"


def timm_module() -> ModuleType:
    """timm, or ParameterError saying how to install it."""
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise ParameterError(
            "timm networks need the timm package, which is not installed.",
            hint="pip install 'imgtrain[timm]'.",
        ) from None


def check_name(model_name: str) -> None:
    """ParameterError unless timm has a network (with or without a pretrained tag: `name.tag`) of this name."""
    timm = timm_module()
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name.split(".")[0], timm.list_models(), n=5, cutoff=0.7)
        raise ParameterError(
            f"timm has no network named {model_name!r}.",
            hint=f"`imgtrain models --source timm` lists them{'; close: ' + ', '.join(close) if close else ''}.",
        )


def build(model_name: str, num_classes: int) -> nn.Module:
    """A freshly initialised timm network with a `num_classes`-way head (uses torch's RNG)."""
    return timm_module().create_model(model_name, pretrained=False, num_classes=num_classes)


def pretrained_config(model_name: str) -> dict[str, Any]:
    """timm's pretrained configuration of the network (its default tag when the name has none)."""
    timm = timm_module()
    arch, tag = timm.models.split_model_name_tag(model_name)
    cfg = timm.models.get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    return cfg.to_dict() if cfg is not None else {}


def hub_file(model_name: str) -> tuple[str, str] | None:
    """(repository, file) of the network's pretrained weights on the Hugging Face Hub, or None when timm keeps
    them elsewhere."""
    cfg = pretrained_config(model_name)
    repo = cfg.get("hf_hub_id")
    return (repo, cfg.get("hf_hub_filename") or HUB_FILE) if repo else None


def normalization(model_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the network's pretrained weights expect."""
    cfg = pretrained_config(model_name)
    return tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))


def catalog_rows() -> list[dict[str, Any]]:
    """One row per pretrained timm network (`name.tag`): input size, crop, classes it was trained on, licence."""
    timm = timm_module()
    rows = []
    for name in timm.list_models(pretrained=True):
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            continue
        rows.append(
            {
                "model": PREFIX + name,
                "input": "x".join(map(str, cfg.input_size[1:])),
                "fixed_input": bool(cfg.fixed_input_size),
                "crop_pct": cfg.crop_pct,
                "pretrained_classes": cfg.num_classes,
                "license": cfg.license,
                "hub": cfg.hf_hub_id,
            }
        )
    return rows
