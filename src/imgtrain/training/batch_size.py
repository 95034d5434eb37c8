"""`--batch-size auto`: the batch size memory allows. On a GPU, the largest power of two whose training step (forward,
backward, the optimizer's state) fits in the free memory with a margin; on a CPU memory does not decide (a step of
16 images of any catalog network takes a few GB at most), so the designer's 16, and the log says so."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig, TransformSpec
from ..data.transform_file import transform_spec
from ..data.transforms import output_size
from ..devices import resolve_device
from ..models.architectures import open_untrained
from .prechecks import labeled_directory
from .start import build_network

log = logging.getLogger(__name__)

CPU_BATCH = 16  # the designer's default
LARGEST = 256
MEMORY_MARGIN = 0.8  # of the free memory a step may use: the loader's pinned batches and fragmentation need the rest


@dataclass(frozen=True)
class BatchChoice:
    """The batch size picked, and why (a sentence the CLI prints)."""

    batch_size: int
    reason: str


def choose_batch_size(
    model: str | Path,
    train: str | Path,
    transform: TransformSpec | str | Path | None = None,
    config: TrainConfig | None = None,
    world_size: int = 1,
) -> BatchChoice:
    """The batch size for training `model` on `train`: never more than each worker's share of the images."""
    config = config or TrainConfig()
    spec = transform_spec(transform)
    untrained, train_dir = open_untrained(model), labeled_directory(train, "training")
    share = max(1, len(train_dir) // world_size)
    cap = min(LARGEST, share)
    device = resolve_device(config.device)
    if device.type != "cuda":
        size = min(CPU_BATCH, share)
        return BatchChoice(
            size,
            f"on a CPU memory does not limit the batch; the designer's {CPU_BATCH}"
            + (f", cut to the {share} training images per worker" if size < CPU_BATCH else ""),
        )
    first = next(iter(train_dir.records))
    width, height = output_size(spec, "training", first.width, first.height)
    net = build_network(untrained, len(train_dir.classes))
    fits = largest_fitting(net, (3, height, width), device, cap)
    return BatchChoice(
        fits,
        f"the largest power of two up to {cap} whose training step at {width}x{height} fit in "
        f"{MEMORY_MARGIN:.0%} of {torch.cuda.get_device_name(device)}'s free memory",
    )


def largest_fitting(net: nn.Module, shape: tuple[int, int, int], device: torch.device, cap: int) -> int:
    """The largest power of two up to `cap` (at least 1) whose step of `net` (AdamW's state included) peaks below
    MEMORY_MARGIN of the device's free memory."""
    probe = copy.deepcopy(net).to(device).train()
    optimizer = torch.optim.AdamW(probe.parameters())
    free, _ = torch.cuda.mem_get_info(device)
    best, size = 1, 1
    while size <= cap:
        try:
            torch.cuda.reset_peak_memory_stats(device)
            images = torch.zeros((size, *shape), device=device)
            loss = probe(images).float().logsumexp(1).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if torch.cuda.max_memory_allocated(device) > MEMORY_MARGIN * free:
                break
            best, size = size, size * 2
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    return best
