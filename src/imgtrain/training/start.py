"""The start of a training run: the output checked (and the checkpoint to resume found), the network built
(pretrained backbone, zeroed head), the run's precision, the optimizer and the state, new or restored."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from ..data.sampling import seed_everything
from ..devices import determinism, gradient_scaler, measure_speedup, resolve_precision
from ..errors import OutputExistsError, ParameterError
from ..files import check_output
from ..models.architectures import UntrainedModel, load_backbone
from . import distributed
from .checkpoints import CHECKPOINT_DIR, Checkpoint, checkpoint_path, load_checkpoint
from .finetune import parameter_groups
from .job import Job
from .recipe import build_optimizer, weight_average
from .state import EarlyStopping, RunState, check_state, saved_precision

log = logging.getLogger(__name__)


def start_run(
    job: Job, device: torch.device, resumed: Checkpoint | None, fingerprint: dict[str, Any], stack: contextlib.ExitStack
) -> RunState:
    """The run's state at its first batch: a new network, or the checkpoint's, in the run's precision."""
    seed_everything(job.config.seed)
    net = build_network(job.untrained, len(job.classes)).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    precision = run_precision(job, resumed, net, device)
    stack.enter_context(determinism(device, precision, job.config.repeatable))
    scaler = gradient_scaler(device, precision)
    # fused: one kernel for the whole update instead of several passes over every weight (measured 28 -> 11
    # ms per step for resnet18 on 2 CPU cores). Not with fp16's loss scaler: fused CPU SGD applied the steps the
    # scaler meant to skip (inf gradients), and the weights became NaN (measured, torch 2.14.1).
    groups = parameter_groups(net, job.untrained.architecture.head_keys, job.freeze_epochs, job.head_lr_scale)
    optimizer = build_optimizer(groups, job.config, fused=scaler is None)
    stopper, average = EarlyStopping(job.config.patience), weight_average(job.config, net)
    state = RunState(net, optimizer, scaler, stopper, fingerprint, precision, average)
    if resumed is not None:
        state.restore(resumed, job.out)
        partial = f" and batch {state.partial.batches} of epoch {state.partial.epoch}" if state.partial else ""
        log.info("resuming %s after epoch %d%s of %d", job.out, state.epoch, partial, job.config.epochs)
    if job.ctx.is_main:
        log.info(
            "training %s on %s in %s%s: %d training, %d validation images, %d classes",
            job.untrained.architecture.display_name,
            device,
            precision,
            f" x {job.ctx.world_size} workers" if job.ctx.enabled else "",
            len(job.train_dir),
            len(job.valid_dir),
            len(job.classes),
        )
    return state


def prepare_output(out: Path, config: TrainConfig, inputs: list[Path]) -> Checkpoint | None:
    """Refuse an occupied output; return the checkpoint to resume from, if resuming."""
    check_output(out, overwrite=True, inputs=inputs)  # never write into an input
    has_checkpoint = checkpoint_path(out).is_file()
    if config.resume:
        if not has_checkpoint:
            raise ParameterError(
                f"There is no interrupted training run in {out} to resume.", hint="start without --resume."
            )
        resumed = load_checkpoint(out)
        check_state(resumed, checkpoint_path(out))
        return resumed
    if has_checkpoint and not config.overwrite:
        raise OutputExistsError(
            f"{out} holds an interrupted training run.",
            hint="pass --resume to continue it, or --overwrite to start over.",
        )
    if config.overwrite:
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    else:
        check_output(out, overwrite=False)
    return None


def run_precision(job: Job, resumed: Checkpoint | None, net: nn.Module, device: torch.device) -> str:
    """The run's precision: the checkpoint's when resuming (never measured again), else the policy's choice,
    measured on this network and batch shape and agreed by every worker."""
    config, ctx = job.config, job.ctx
    if resumed is not None:
        saved = saved_precision(resumed)
        if config.precision not in ("auto", saved):
            raise ParameterError(
                f"The run in {job.out} was started in {saved}, not {config.precision}; a run "
                "continues in the precision it started with.",
                hint=f"resume with --precision auto (or {saved}), or start over with --overwrite.",
            )
        return saved
    precision = resolve_precision(
        config.precision,
        device,
        config.repeatable,
        lambda candidate: measure_speedup(net, job.batch_shape, device, candidate),
    )
    if ctx.enabled and config.precision == "auto":
        votes = distributed.all_sum([float(precision != "fp32")], ctx, device)[0]
        precision = precision if votes == ctx.world_size else "fp32"
    return precision


def build_network(untrained: UntrainedModel, num_classes: int) -> nn.Module:
    """The network to train: random, or the pretrained backbone with a new head that starts at zero.

    A random head on pretrained features gives large logits (measured: a first-epoch loss of 4.2 where
    log(10) = 2.3) and fine-tuning then trailed training from scratch; from zero it starts at chance.
    """
    net = untrained.architecture.build(num_classes)
    weights = untrained.backbone_weights()
    if weights is not None:
        load_backbone(net, untrained.architecture, weights, str(untrained.path))
        with torch.no_grad():
            for name, tensor in net.state_dict().items():
                if name in untrained.architecture.head_keys and tensor.is_floating_point():
                    tensor.zero_()
    return net
