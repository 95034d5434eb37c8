"""The pieces of a modern training recipe that act during training: the optimizer (the designer's SGD or AdamW),
mixup / cutmix of each batch (torchvision's v2.MixUp / v2.CutMix), and an exponential moving average of the
weights (torch.optim.swa_utils.AveragedModel). Each draw derives from (seed, epoch, batch, worker), so a run
resumed mid-epoch draws what the uninterrupted run drew."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torchvision.transforms import v2

from ..config import TrainConfig
from ..data.sampling import epoch_seed, sample_seed

#: SGD's settings (the designer's).
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
#: AdamW's decoupled weight decay (torchvision's and timm's recipes for ConvNeXt / ViT use 0.05).
ADAMW_WEIGHT_DECAY = 0.05


def build_optimizer(groups: list[dict[str, Any]], config: TrainConfig, fused: bool) -> torch.optim.Optimizer:
    """The run's optimizer over `groups`: SGD with Nesterov momentum (the designer's), or AdamW."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=ADAMW_WEIGHT_DECAY, fused=fused)
    return torch.optim.SGD(
        groups, lr=config.learning_rate, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY, fused=fused
    )


def optimizer_settings(config: TrainConfig) -> dict[str, Any]:
    """What a model directory records of the optimizer beyond the parameters."""
    if config.optimizer == "adamw":
        return {"weight_decay": ADAMW_WEIGHT_DECAY, "betas": [0.9, 0.999], "schedule": "cosine"}
    return {"momentum": MOMENTUM, "nesterov": True, "weight_decay": WEIGHT_DECAY, "schedule": "polynomial"}


class BatchMixer:
    """Mixup and / or cutmix of a training batch (one of them per batch, picked at random when both are on), with
    the draws of batch `step` of `epoch` on worker `rank` seeded from the run's seed."""

    def __init__(self, config: TrainConfig, num_classes: int, rank: int):
        mixes: list[nn.Module] = []
        if config.mixup > 0:
            mixes.append(v2.MixUp(alpha=config.mixup, num_classes=num_classes))
        if config.cutmix > 0:
            mixes.append(v2.CutMix(alpha=config.cutmix, num_classes=num_classes))
        self.mix = mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)
        self.seed, self.rank = config.seed, rank

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed images, soft targets: each image's share of each class)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(epoch_seed(self.seed, epoch), step * 1_000 + self.rank))
            return self.mix(images, labels)


def batch_mixer(config: TrainConfig, num_classes: int, rank: int, multilabel: bool) -> BatchMixer | None:
    """The mixer the configuration asks for, or None (multi-label training mixes nothing: see prechecks)."""
    if multilabel or (config.mixup == 0 and config.cutmix == 0):
        return None
    return BatchMixer(config, num_classes, rank)


class WeightAverage(AveragedModel):
    """An exponential moving average of the weights and BatchNorm statistics. The decay warms up as timm's
    ModelEmaV3 does, min(decay, (1 + n) / (10 + n)) after n updates, so a short run is not stuck near its start."""

    def __init__(self, net: nn.Module, decay: float):
        super().__init__(net, multi_avg_fn=self._update, use_buffers=True)
        self.decay = decay

    def _update(
        self,
        averaged: list[torch.Tensor] | tuple[torch.Tensor, ...],
        current: list[torch.Tensor] | tuple[torch.Tensor, ...],
        updates: torch.Tensor | int,
    ) -> None:
        if not averaged[0].is_floating_point():  # BatchNorm's batch counters: the latest
            torch._foreach_copy_(list(averaged), list(current))
            return
        n = int(updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(list(averaged), list(current), 1 - decay)


def weight_average(config: TrainConfig, net: nn.Module) -> WeightAverage | None:
    """The moving average of `net`'s weights the configuration asks for, or None."""
    return WeightAverage(net, config.ema) if config.ema > 0 else None
