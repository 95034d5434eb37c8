"""The learning-rate range test (`imgtrain lr-find`; Smith 2017, as fastai's `lr_find` and Lightning's tuner): train
from the untrained model with a learning rate growing exponentially each batch, record the smoothed loss, stop once
it explodes, and suggest the rate where the loss fell fastest. Nothing of the run is kept but its curve."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig, TransformSpec
from ..data.sampling import epoch_seed, seed_everything, training_loader
from ..data.transform_file import transform_spec
from ..data.transforms import ModelInput
from ..devices import resolve_device
from ..errors import ParameterError
from ..files import atomic_write_json, building_dir
from ..models.architectures import open_untrained
from ..plots import pyplot
from .finetune import parameter_groups
from .prechecks import labeled_directory
from .recipe import build_optimizer
from .start import build_network

log = logging.getLogger(__name__)

FORMAT = "imgtrain.lr_find"
FORMAT_VERSION = 1
SMOOTHING = 0.98  # the loss's exponential moving average, bias-corrected (fastai's)
EXPLODED = 4.0  # stop once the smoothed loss is this many times its lowest


def find_learning_rate(
    model: str | Path,
    train: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    transform: TransformSpec | str | Path | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the range test; write OUT/lr-find.json (every rate and loss, the suggestion) and OUT/lr-find.png."""
    if not (0 < start_lr < end_lr) or steps < 5:
        raise ParameterError(
            f"the range test needs 0 < start_lr < end_lr and at least 5 steps, got {start_lr:g}, {end_lr:g}, {steps}."
        )
    config = config or TrainConfig()
    spec = transform_spec(transform)
    untrained, train_dir = open_untrained(model), labeled_directory(train, "training")
    multilabel = train_dir.multilabel or config.task == "multilabel"
    device = resolve_device(config.device)
    seed_everything(config.seed)
    net = build_network(untrained, len(train_dir.classes)).to(device)
    scale = config.head_lr_scale if untrained.pretrained else 1.0
    optimizer = build_optimizer(parameter_groups(net, untrained.architecture.head_keys, 0, scale), config, fused=False)
    scales = [1.0, scale][: len(optimizer.param_groups)]
    data = train_dir.dataset(
        ModelInput(spec, "training", untrained.mean, untrained.std, augment=config.augment), multilabel=multilabel
    )
    criterion: nn.Module = (
        nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    )
    rates, losses = _range_test(net, data, config, optimizer, scales, criterion, device, (start_lr, end_lr, steps))
    result = {"format": FORMAT, "format_version": FORMAT_VERSION, **suggest(rates, losses)}
    with building_dir(Path(out), overwrite) as tmp:
        atomic_write_json(tmp / "lr-find.json", result)
        _plot(result, tmp / "lr-find.png")
    log.info(
        "suggested learning rate %.3g (steepest fall of the loss); the loss was lowest at %.3g",
        result["suggestion"],
        result["minimum"],
    )
    return result


def _range_test(
    net: nn.Module,
    data: Any,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scales: list[float],
    criterion: nn.Module,
    device: torch.device,
    schedule: tuple[float, float, int],
) -> tuple[list[float], list[float]]:
    """(rates, raw losses) of each batch until the loss explodes or the steps end; batches cycle through epochs."""
    start_lr, end_lr, steps = schedule
    rates: list[float] = []
    losses: list[float] = []
    smoothed, best, epoch = 0.0, math.inf, 0
    net.train()
    while len(rates) < steps:
        epoch += 1
        loader = training_loader(data, config.batch_size, epoch_seed(config.seed, epoch), 0, False)
        for images, labels in loader:
            lr = start_lr * (end_lr / start_lr) ** (len(rates) / (steps - 1))
            for group, scale in zip(optimizer.param_groups, scales, strict=True):
                group["lr"] = lr * scale
            loss = criterion(net(images.to(device)).float(), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            rates.append(lr)
            losses.append(loss.item())
            smoothed = SMOOTHING * smoothed + (1 - SMOOTHING) * loss.item()
            current = smoothed / (1 - SMOOTHING ** len(rates))
            best = min(best, current)
            if not math.isfinite(current) or current > EXPLODED * best or len(rates) >= steps:
                return rates, losses
    return rates, losses


def suggest(rates: list[float], losses: list[float]) -> dict[str, Any]:
    """The curve (raw and smoothed losses) and its readings: the rate of the steepest fall of the smoothed loss
    against log(rate) before its minimum (the suggestion), and the rate of the minimum."""
    smoothed, average = [], 0.0
    for i, loss in enumerate(losses, 1):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        smoothed.append(average / (1 - SMOOTHING**i))
    finite = [s if math.isfinite(s) else math.inf for s in smoothed]
    low = min(range(len(finite)), key=finite.__getitem__)
    slopes = [
        (smoothed[i + 1] - smoothed[i - 1]) / (math.log(rates[i + 1]) - math.log(rates[i - 1]))
        for i in range(1, max(2, low))
        if i + 1 < len(rates)
    ]
    steepest = min(range(len(slopes)), key=slopes.__getitem__) + 1 if slopes else low
    return {
        "rates": rates,
        "losses": losses,
        "smoothed": [s if math.isfinite(s) else None for s in smoothed],
        "suggestion": rates[steepest],
        "minimum": rates[low],
    }


def _plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(result["rates"], result["losses"], alpha=0.3, label="loss")
    ax.plot(result["rates"], [s if s is not None else math.nan for s in result["smoothed"]], label="smoothed")
    ax.axvline(result["suggestion"], color="C2", linestyle="--", label=f"suggested {result['suggestion']:.2g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="learning-rate range test")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
