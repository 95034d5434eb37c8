"""Data-parallel training on torch.distributed: who this process is, process groups, the launcher.

`imgtrain train --nproc-per-node N` starts N workers through torch.distributed's own elastic
agent (what `torchrun` runs); `torchrun ... -m imgtrain train ...` works as well, since every
worker only reads the RANK / WORLD_SIZE / LOCAL_RANK variables the agent sets.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..errors import DistributedTrainingError, ParameterError

#: A worker waiting longer than this on the others (one hung or died) fails with a timeout.
DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class Context:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env() -> Context:
    """The job position torchrun's agent gives this process through the environment."""
    try:
        return Context(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
    except ValueError:
        raise ParameterError("RANK / WORLD_SIZE / LOCAL_RANK are not integers.") from None


def start(ctx: Context, device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join the job's process group: NCCL on GPUs, gloo on CPUs."""
    if ctx.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def stop(ctx: Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: Sequence[float], ctx: Context, device: torch.device) -> list[float]:
    """Element-wise sums over every worker (so all take the same decisions from the same numbers)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


@dataclass(frozen=True)
class LaunchOptions:
    """How to start the workers: per machine, and across machines (static rendezvous or an endpoint)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    rdzv_endpoint: str | None = None

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise ParameterError(
                f"--nproc-per-node ({self.nproc_per_node}) and --nnodes ({self.nnodes}) must be >= 1, and "
                f"--node-rank ({self.node_rank}) from 0 to --nnodes - 1."
            )

    @property
    def needed(self) -> bool:
        return self.nproc_per_node > 1 or self.nnodes > 1


def launch(worker: Callable[..., Any], args: tuple, options: LaunchOptions) -> None:
    """Run `worker(*args)` in every worker process under the elastic agent; a failed worker fails the job.

    `worker` must be importable by name (the workers are spawned); it sees RANK, WORLD_SIZE and the rest
    in its environment, so the `train` it calls joins the job.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    static = options.rdzv_endpoint is None
    config = LaunchConfig(
        min_nodes=options.nnodes,
        max_nodes=options.nnodes,
        nproc_per_node=options.nproc_per_node,
        run_id="imgtrain",
        rdzv_backend="static" if static else "c10d",
        rdzv_endpoint=f"{options.master_addr}:{options.master_port}"
        if options.rdzv_endpoint is None
        else options.rdzv_endpoint,
        rdzv_configs={"rank": options.node_rank} if static else {},
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    try:
        elastic_launch(config, worker)(*args)
    except ChildFailedError as exc:
        failures = ", ".join(f"rank {rank} (exit code {f.exitcode})" for rank, f in sorted(exc.failures.items()))
        raise DistributedTrainingError(
            f"Distributed training failed: worker {failures}; the other workers were stopped.",
            hint="read that worker's error above; fix it and rerun with --resume to continue from the last checkpoint.",
        ) from None


@contextlib.contextmanager
def process_group(ctx: Context, device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S):
    """The job's process group for the duration of the block (nothing when not distributed)."""
    start(ctx, device, timeout_s)
    try:
        yield
    finally:
        stop(ctx)


def worker_device(name: torch.device, ctx: Context) -> torch.device:
    """Each worker of a GPU job takes the GPU of its local rank."""
    if ctx.enabled and name.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return name
