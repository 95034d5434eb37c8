"""What each worker reads in each epoch, reproducibly: a seeded order, and a seed per sample.

Every random draw of an epoch comes from (seed, epoch, image index), never from how far a
process has got or which loader worker read the image. So a run stopped mid-epoch continues
with exactly the batches and augmentations it would have drawn, with any number of loader
workers, and the same seed gives the same weights with 0 or 8 workers.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

if TYPE_CHECKING:
    from .dataset import ImageDataset

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads neighbouring integers far apart


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: its order and every sample's augmentation derive from it."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**63


def sample_seed(seed: int, index: int) -> int:
    """The augmentation seed of image `index` in the epoch of `seed`."""
    return (seed ^ ((index + 1) * _MIX)) % 2**63


class EpochOrder(Sampler):
    """One worker's share of an epoch's shuffled order, whole batches only, from batch `skip` on.

    Yields (image index, augmentation seed). The order is a permutation seeded by `seed`, or with `weights`
    (one per image) `size` draws with replacement, each image with probability proportional to its weight;
    worker `rank` of `world_size` takes every world_size-th image of it.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        batch_size: int,
        skip: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: np.ndarray | None = None,
    ):
        generator = torch.Generator().manual_seed(seed)
        order = (
            torch.randperm(size, generator=generator)
            if weights is None
            else torch.multinomial(
                torch.as_tensor(weights, dtype=torch.float64), size, replacement=True, generator=generator
            )
        ).numpy()
        share = order[rank : size - size % world_size : world_size]
        self.seed = seed
        self.batches = len(share) // batch_size
        self.indices = share[skip * batch_size : self.batches * batch_size]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(i), sample_seed(self.seed, int(i))) for i in self.indices)


class SeededSamples(Dataset):
    """Reads (index, seed) pairs: seeds torch's generator, then applies the dataset's random transforms."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        torch.default_generator.manual_seed(seed)
        return self.dataset[index]


def _quiet_worker(worker_id: int) -> None:
    # Ctrl-C reaches every process of the terminal; the main process decides when to stop, so loader workers
    # must not die half-way through a batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def training_loader(
    dataset: ImageDataset,
    batch_size: int,
    seed: int,
    workers: int,
    pin_memory: bool,
    skip: int = 0,
    rank: int = 0,
    world_size: int = 1,
    weights: np.ndarray | None = None,
) -> DataLoader:
    """Shuffled batches of this worker's share of the training images, starting at batch `skip`; drawn with
    replacement in proportion to `weights` when given (EpochOrder)."""
    order = EpochOrder(len(dataset), seed, batch_size, skip, rank, world_size, weights)
    return DataLoader(
        SeededSamples(dataset),
        batch_size=batch_size,
        sampler=order,
        num_workers=workers,
        worker_init_fn=_quiet_worker,
        pin_memory=pin_memory,
    )


def validation_loader(
    dataset: ImageDataset, batch_size: int, workers: int, pin_memory: bool, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Batches of every world_size-th validation image, in order."""
    shard: Dataset = Subset(dataset, range(rank, len(dataset), world_size)) if world_size > 1 else dataset
    return DataLoader(
        shard, batch_size=batch_size, num_workers=workers, worker_init_fn=_quiet_worker, pin_memory=pin_memory
    )
