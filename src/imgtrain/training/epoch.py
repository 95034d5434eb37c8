"""One epoch of Train PyTorch Model: the learning rate of an epoch, training through its batches, validation sums."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import TrainConfig
from ..devices import autocast_for
from ..errors import TrainingDivergedError
from ..faults import crash_point
from .recipe import BatchMixer, WeightAverage
from .state import EpochProgress

log = logging.getLogger(__name__)

END_LEARNING_RATE = 1e-7


def learning_rate_at(epoch: int, config: TrainConfig) -> float:
    """The learning rate of 0-based `epoch`: linear warmup, then decay towards 1e-7: polynomial (power 2) for SGD
    (the designer's), cosine for AdamW."""
    lr, warmup = config.learning_rate, config.warmup_epochs
    if epoch < warmup:
        return lr * (epoch + 1) / (warmup + 1)
    progress = (epoch - warmup) / max(1, config.epochs - warmup)
    decay = (1 + math.cos(math.pi * progress)) / 2 if config.optimizer == "adamw" else (1 - progress) ** 2
    return (lr - END_LEARNING_RATE) * decay + END_LEARNING_RATE


def train_one_epoch(
    net: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    config: TrainConfig,
    precision: str,
    scaler: torch.amp.GradScaler | None,
    progress: EpochProgress,
    stop: Callable[[], bool],
    fixed: Sequence[nn.Module] = (),
    class_weights: torch.Tensor | None = None,
    multilabel: bool = False,
    mixer: BatchMixer | None = None,
    average: WeightAverage | None = None,
) -> bool:
    """Continue `progress` through this worker's training batches; False when `stop()` ended the epoch early.

    Modules in `fixed` (a frozen backbone's BatchNorm layers) stay in eval mode; `class_weights` weighs each
    class's loss (multi-label: each class's positive images). A multi-label image counts as right when every
    class is (probability 0.5); a mixed image when its largest share is the answer. `mixer` mixes each batch,
    `average` follows the weights after each step."""
    net.train()
    for module in fixed:
        module.eval()
    criterion = _criterion(config, None if class_weights is None else class_weights.to(device), multilabel)
    autocast = autocast_for(device, precision)
    epoch, started = progress.epoch, time.perf_counter() - progress.seconds
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{config.epochs}",
        unit="batch",
        leave=False,
        initial=progress.batches,
        total=progress.batches + len(loader),
        disable=None if config.progress else True,
    )
    for images, labels in bar:
        step = progress.batches + 1
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if mixer is not None:
            images, labels = mixer(images, labels, epoch, step)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        loss, logits = _train_step(net, criterion, autocast, optimizer, scaler, images, labels, epoch, step)
        if average is not None:
            average.update_parameters(net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net)
        progress.batches = step
        progress.loss_sum += loss.item() * len(labels)
        progress.correct += hits(logits, labels, multilabel)
        progress.seen += len(labels)
        progress.seconds = time.perf_counter() - started
        crash_point("batch", epoch, step)
        if stop():
            return False
        if step % config.print_frequency == 0:
            _show_progress(bar, progress, config.epochs)
    return True


def _criterion(config: TrainConfig, weights: torch.Tensor | None, multilabel: bool) -> nn.Module:
    """The training loss: cross-entropy (it takes a mixed batch's soft targets too), or binary cross-entropy."""
    if multilabel:
        return _MultiLabelLoss(weights, config.label_smoothing)
    return nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)


class _MultiLabelLoss(nn.Module):
    """Binary cross-entropy of each class's sigmoid (mean over classes and images); smoothing S trains towards
    1 - S/2 and S/2 instead of 1 and 0."""

    def __init__(self, positive_weights: torch.Tensor | None, smoothing: float):
        super().__init__()
        self.positive_weights, self.smoothing = positive_weights, smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        smoothed = targets * (1 - self.smoothing) + self.smoothing / 2
        return nn.functional.binary_cross_entropy_with_logits(logits, smoothed, pos_weight=self.positive_weights)


def hits(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> int:
    """Images answered right: the top class is the label; multi-label, every class is decided right at 0.5."""
    if multilabel:
        return int(((logits > 0) == (labels > 0.5)).all(1).sum())
    if labels.dim() == 2:  # mixed images: each class's share
        labels = labels.argmax(1)
    return int((logits.argmax(1) == labels).sum())


def _train_step(
    net: nn.Module,
    criterion: nn.Module,
    autocast: AbstractContextManager,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    epoch: int,
    step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch: forward, loss, backward and the optimizer's step; (loss, logits)."""
    with autocast:
        logits = net(images)
        loss = criterion(logits.float(), labels)
    if not torch.isfinite(loss):  # stop before the step spreads NaN into the weights
        raise TrainingDivergedError(
            f"The training loss became {loss.item()} in epoch {epoch}, batch {step}.",
            hint=f"lower the learning rate (now {optimizer.param_groups[0]['lr']:g}); the checkpoint of the last "
            "finished epoch, with the best weights so far, is kept.",
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss, logits


def _show_progress(bar: tqdm, progress: EpochProgress, epochs: int) -> None:
    """The bar's running loss and speed; with the bar hidden, a log line that carries the numbers as an extra."""
    epoch, step = progress.epoch, progress.batches
    rate = progress.seen / progress.seconds
    bar.set_postfix(loss=f"{progress.loss_sum / progress.seen:.4f}", img_s=f"{rate:.0f}")
    if bar.disable:  # the extra is for programs that follow a run through logging (the studio)
        report = {
            "epoch": epoch,
            "epochs": epochs,
            "batch": step,
            "batches": bar.total,
            "loss": progress.loss_sum / progress.seen,
            "images_per_second": rate,
            "seconds": progress.seconds,
        }
        log.info(
            "epoch %d [%d/%d] loss %.4f, %.0f images/s",
            epoch,
            step,
            bar.total,
            progress.loss_sum / progress.seen,
            rate,
            extra={"imgtrain_progress": report},
        )


@torch.inference_mode()
def evaluate(
    net: nn.Module,
    loader: DataLoader,
    device: torch.device,
    num_classes: int,
    precision: str = "fp32",
    class_weights: torch.Tensor | None = None,
    multilabel: bool = False,
) -> dict[str, float]:
    """Sums over this worker's validation images: loss (weighted by `class_weights`, as in training), the
    weights, top-1 and top-5 hits (multi-label: images with every class right, and no top-5), images."""
    net.eval()
    autocast = autocast_for(device, precision)
    weights = None if class_weights is None else class_weights.to(device)
    loss_sum, weight_sum, top1, top5, seen = 0.0, 0.0, 0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast:
            logits = net(images)
        if multilabel:
            losses = nn.functional.binary_cross_entropy_with_logits(
                logits.float(), labels, pos_weight=weights, reduction="none"
            ).mean(1)
            sample_weights = torch.ones_like(losses)
        else:
            losses = nn.functional.cross_entropy(logits.float(), labels, reduction="none")
            sample_weights = torch.ones_like(losses) if weights is None else weights[labels]
        loss_sum += float((losses * sample_weights).sum())
        weight_sum += float(sample_weights.sum())
        top1 += hits(logits, labels, multilabel)
        if num_classes > 5 and not multilabel:
            top5 += int((logits.topk(5, dim=1).indices == labels[:, None]).any(1).sum())
        seen += len(labels)
    return {"loss_sum": loss_sum, "weight_sum": weight_sum, "top1": top1, "top5": top5, "seen": seen}
