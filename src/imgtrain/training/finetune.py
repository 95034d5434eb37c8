"""Fine-tuning a pretrained network: the new head alone first (`freeze_epochs`), and at `head_lr_scale` times
the backbone's learning rate. With neither, one group trains at one rate (the designer's)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def parameter_groups(
    net: nn.Module, head_keys: frozenset[str], freeze_epochs: int, head_lr_scale: float
) -> list[dict[str, Any]]:
    """The optimizer's groups: [backbone, head] when fine-tuning options are on, else one group of everything."""
    if freeze_epochs == 0 and head_lr_scale == 1:
        return [{"params": list(net.parameters())}]
    named = list(net.named_parameters())
    return [
        {"params": [p for name, p in named if name not in head_keys]},
        {"params": [p for name, p in named if name in head_keys]},
    ]


def set_learning_rates(
    optimizer: torch.optim.Optimizer, lr: float, epoch: int, freeze_epochs: int, head_lr_scale: float
) -> None:
    """Epoch `epoch` (1-based) trains the head at lr x the scale; the backbone at 0 while frozen, then at lr."""
    groups = optimizer.param_groups
    if len(groups) == 1:
        groups[0]["lr"] = lr
        return
    backbone, head = groups
    backbone["lr"] = 0.0 if epoch <= freeze_epochs else lr
    head["lr"] = lr * head_lr_scale


def fixed_norms(net: nn.Module, head_keys: frozenset[str], epoch: int, freeze_epochs: int) -> list[nn.Module]:
    """The backbone's BatchNorm layers while it is frozen: kept in eval mode, so their statistics stay pretrained."""
    if epoch > freeze_epochs:
        return []
    head_modules = {key.rsplit(".", 1)[0] for key in head_keys}
    return [
        module
        for name, module in net.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and name not in head_modules
    ]
