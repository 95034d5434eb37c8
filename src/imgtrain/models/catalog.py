"""The model catalog: every torchvision classification network with ImageNet weights (and timm's, through
`timm_catalog`), and what each needs of its input and its classifier head, read from the network itself (shapes
on the meta device).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn

from ..config import TIMM_FAMILY
from . import timm_catalog

#: Networks whose training output is not one tensor (auxiliary classifiers) are left out.
LEFT_OUT = ("googlenet", "inception_v3")


def catalog_names() -> list[str]:
    """Every classification network torchvision has ImageNet weights for, but those of LEFT_OUT."""
    return [name for name in torchvision.models.list_models(module=torchvision.models) if name not in LEFT_OUT]


def catalog_rows() -> list[dict[str, Any]]:
    """One row per network: parameters, ImageNet top-1, GFLOPs, weights file size, smallest input."""
    rows = []
    for name in catalog_names():
        weights = torchvision.models.get_model_weights(name).DEFAULT
        meta = weights.meta
        rows.append(
            {
                "model": name,
                "params_m": meta["num_params"] / 1e6,
                "top1": meta["_metrics"]["ImageNet-1K"]["acc@1"],
                "gflops": meta["_ops"],
                "size_mb": meta["_file_size"],
                "min_size": tuple(meta.get("min_size", (1, 1))),
                "weights": weights.url.rsplit("/", 1)[-1],
            }
        )
    return rows


def build(family: str, model_name: str, num_classes: int, options: dict[str, bool] | None = None) -> nn.Module:
    """A freshly initialised network of either catalog with a `num_classes`-way head (uses torch's RNG)."""
    if family == TIMM_FAMILY:
        return timm_catalog.build(model_name, num_classes)
    return torchvision.models.get_model(model_name, weights=None, num_classes=num_classes, **(options or {}))


@functools.cache
def _meta_network(family: str, model_name: str, num_classes: int = 2) -> nn.Module:
    """The network with shapes only (no memory, no RNG draws), for questions about shapes."""
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):
                return build(family, model_name, num_classes).eval()
        except NotImplementedError:  # RegNet computes its widths with tensors it then reads: build it, then drop data
            return build(family, model_name, num_classes).to("meta").eval()


@functools.cache
def head_keys(family: str, model_name: str) -> frozenset[str]:
    """The state-dict keys of the classifier head: those whose shape follows the number of classes."""
    a, b = _meta_network(family, model_name, 1000).state_dict(), _meta_network(family, model_name, 7).state_dict()
    return frozenset(k for k in a if a[k].shape != b[k].shape)


@functools.lru_cache(maxsize=1024)
def accepts_input(family: str, model_name: str, width: int, height: int) -> bool:
    """Whether the network takes a width x height input (poolings that would shrink a map to nothing, or a
    vision transformer made for one size, refuse others)."""
    try:
        _meta_network(family, model_name)(torch.empty(1, 3, height, width, device="meta"))
        return True
    except (RuntimeError, AssertionError, ValueError, IndexError):
        return False


def minimum_size(family: str, model_name: str) -> tuple[int, int]:
    """The (width, height) the network's ImageNet weights were made for at least (timm: the size of a network
    made for one size, else the smallest square it takes)."""
    if family != TIMM_FAMILY:
        height, width = torchvision.models.get_model_weights(model_name).DEFAULT.meta.get("min_size", (1, 1))
        return width, height
    cfg = timm_catalog.pretrained_config(model_name)
    if cfg.get("fixed_input_size"):
        height, width = cfg["input_size"][1:]
        return width, height
    side = next((s for s in (1, 8, 16, 32, 64, 128, 224) if accepts_input(family, model_name, s, s)), 224)
    return side, side


@dataclass(frozen=True)
class InputCheck:
    """Says what is wrong with an input size for one network (picklable, for data-loader workers)."""

    model_name: str
    family: str = "torchvision"

    def problem(self, width: int, height: int) -> str | None:
        """None when the network takes a width x height input, else why not and how to fix it."""
        if accepts_input(self.family, self.model_name, width, height):
            return None
        w, h = minimum_size(self.family, self.model_name)
        if width >= w and height >= h:
            return (
                f"it comes out of the transformation {width}x{height} pixels, which {self.model_name} cannot "
                f"take (crop to {w}x{h}, the size its weights were made for)"
            )
        return (
            f"it comes out of the transformation {width}x{height} pixels; {self.model_name} needs at least "
            f"{w}x{h} (turn on resize with a size of at least {max(w, h)})"
        )
