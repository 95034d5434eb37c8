"""Train PyTorch Model: the loop, learning-rate schedule, early stopping, checkpoints and resume.

    for epoch: train_one_epoch(); state.record(_metrics()); _save_checkpoint(state)

SIGINT/SIGTERM end the epoch after the current batch and write a checkpoint that `resume`
continues from that very batch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..config import TrainConfig, TransformSpec
from ..data.decoding import DecodedCache, default_cache_dir, report_usage
from ..data.sampling import EpochOrder, epoch_seed, seed_everything, training_loader, validation_loader
from ..data.transform_file import transform_spec
from ..data.transforms import ModelInput
from ..devices import resolve_device
from ..errors import DistributedTrainingError, ParameterError, TrainingInterrupted
from ..faults import crash_point
from ..files import building_dir, exclusive, within
from ..interrupts import StopRequest, stop_on_signals
from ..models.architectures import open_untrained
from ..models.model_directory import PLOT_NAME, open_model_directory, write_model_directory
from ..parallel import default_loader_workers
from ..plots import plot_history
from . import distributed
from .checkpoints import checkpoint_path, save_checkpoint
from .epoch import evaluate, learning_rate_at, train_one_epoch
from .finetune import fixed_norms, set_learning_rates
from .fitting import fit_on_validation
from .job import Inputs, Job, TrainResult
from .prechecks import check_inputs, labeled_directory
from .recipe import batch_mixer, optimizer_settings
from .start import prepare_output, start_run
from .state import EpochProgress, RunState, check_fingerprint
from .tracking import Tracker, open_tracker

log = logging.getLogger(__name__)


def train(
    model: str | Path,
    train: str | Path,
    valid: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    transform: TransformSpec | str | Path | None = None,
    on_epoch: Callable[[dict[str, Any]], bool] | None = None,
) -> TrainResult:
    """Train an untrained model directory on an image directory; write the best epoch's model to `out`.

    Returns a TrainResult: the model directory, the best epoch and the metric history (one dict per epoch; the
    result reads as that list too). `transform` defaults to the designer's
    default transformation (resize 256, center crop 224, random horizontal flip). Under
    torchrun (RANK / WORLD_SIZE set) this process is one data-parallel worker of the job. `on_epoch`, on one
    process only, gets each epoch's metrics and ends training after it by returning True (a sweep's pruner).
    """
    config = config or TrainConfig()
    spec = transform_spec(transform)
    ctx = distributed.context_from_env()
    if on_epoch is not None and ctx.enabled:
        raise ParameterError("on_epoch is for one process, not a distributed job.", hint="train without torchrun.")
    untrained = open_untrained(model)
    train_dir, valid_dir = labeled_directory(train, "training"), labeled_directory(valid, "validation")
    width, height = check_inputs(
        config, spec, train_dir, valid_dir, ctx.world_size, untrained.architecture.input_check.problem
    )
    out = Path(out)
    if config.log_dir is not None and within(config.log_dir, out):
        raise ParameterError(
            f"--log-dir {config.log_dir} lies inside --out {out}, which the trained model replaces "
            "as a whole: the event files would be deleted.",
            hint="put the log folder elsewhere.",
        )
    job = Job(
        untrained,
        train_dir,
        valid_dir,
        out,
        Inputs(Path(model), Path(train), Path(valid)),
        config,
        spec,
        ctx,
        (config.batch_size, 3, height, width),
        on_epoch,
    )
    with exclusive(out) if ctx.is_main else contextlib.nullcontext():
        return _train(job)


def _train(job: Job) -> TrainResult:
    """The training run itself, once every input has been checked (see `train`)."""
    ctx = job.ctx
    resumed = prepare_output(job.out, job.config, list(job.inputs))
    fingerprint = job.fingerprint()
    if resumed is not None:
        check_fingerprint(job.out, resumed, fingerprint)
    device = distributed.worker_device(resolve_device(job.config.device), ctx)
    with distributed.process_group(ctx, device), stop_on_signals() as signalled, contextlib.ExitStack() as stack:
        state = start_run(job, device, resumed, fingerprint, stack)
        # Every worker holds the same weights from here on: DDP broadcasts rank 0's and averages gradients.
        runner = (
            DistributedDataParallel(state.net, device_ids=[device.index] if device.type == "cuda" else None)
            if ctx.enabled
            else state.net
        )
        tracker = (
            open_tracker(
                job.config.log_dir,
                job.config.mlflow,
                {
                    **job.hyperparameters(),
                    "model": job.untrained.architecture.display_name,
                    "precision": state.precision,
                    "world_size": ctx.world_size,
                },
                run_name=job.out.name,
            )
            if ctx.is_main
            else Tracker()
        )
        data = _Loaders(job, device)
        try:
            halted = _run_epochs(job, state, runner, device, signalled, tracker, data)
        except RuntimeError as exc:
            if not ctx.enabled:
                raise
            raise DistributedTrainingError(
                f"Worker rank {ctx.rank} lost contact with the other workers during epoch {state.epoch + 1} "
                f"({str(exc).splitlines()[0][:200]}).",
                hint="see the failing worker's error; rerun with --resume to continue from the last checkpoint.",
            ) from None
        except KeyboardInterrupt:
            log.warning(
                "stopped at once; %s",
                "rerun with --resume to continue from the last checkpoint"
                if checkpoint_path(job.out).is_file()
                else "no checkpoint had been written, so there is nothing to resume",
            )
            raise
        finally:
            tracker.close("FAILED" if sys.exc_info()[0] else "FINISHED")
        if ctx.is_main:
            whole = data.validation(whole=True)
            _save_model(job, state, device, halted, *fit_on_validation(job, state, device, whole))
        distributed.barrier(ctx)
    return TrainResult(job.out, state.history, state.stopper.best_epoch)


def _run_epochs(
    job: Job,
    state: RunState,
    runner: nn.Module,
    device: torch.device,
    signalled: StopRequest,
    tracker: Tracker,
    data: _Loaders,
) -> bool:
    """The epochs still to run: train, evaluate, record, checkpoint; stop early, or when signalled. True when the
    caller's `on_epoch` ended training."""
    config, ctx = job.config, job.ctx
    stop_requested = functools.partial(_stop_requested, signalled, ctx, device)
    mixer = batch_mixer(config, len(job.classes), ctx.rank, job.multilabel)
    halted = False
    for epoch in range(state.epoch + 1, config.epochs + 1):
        if state.stopper.should_stop:
            break
        lr = learning_rate_at(epoch - 1, config) * ctx.world_size  # scaled with the workers, as the original
        set_learning_rates(state.optimizer, lr, epoch, job.freeze_epochs, job.head_lr_scale)
        fixed = fixed_norms(state.net, job.untrained.architecture.head_keys, epoch, job.freeze_epochs)
        progress = state.progress_of(epoch)
        loader = data.training(epoch, progress)
        if not train_one_epoch(
            runner,
            loader,
            state.optimizer,
            device,
            config,
            state.precision,
            state.scaler,
            progress,
            stop_requested,
            fixed,
            job.class_weights,
            job.multilabel,
            mixer,
            state.average,
        ):
            _save_checkpoint(job, state, progress)
            raise _interrupted(
                job.out,
                signalled,
                f"in epoch {epoch} after batch {progress.batches} of {cast(EpochOrder, loader.sampler).batches}",
            )
        state.record(_metrics(job, state, data, device, epoch, lr, progress))
        _close_epoch(job, state, tracker, epoch)
        if epoch < config.epochs and not state.stopper.should_stop and stop_requested():
            raise _interrupted(job.out, signalled, f"after epoch {epoch}")
        if job.on_epoch is not None and job.on_epoch(state.history[-1]) and epoch < config.epochs:
            log.info("stopped after epoch %d of %d by the caller (a sweep's pruner or budget)", epoch, config.epochs)
            halted = True
            break
    if ctx.is_main:
        report_usage(data.cache)
    return halted


def _close_epoch(job: Job, state: RunState, tracker: Tracker, epoch: int) -> None:
    """An epoch's end: its line in the log and the tracker, its checkpoint, the early stop said."""
    if job.ctx.is_main:
        log.info(_summary(state.history[-1], job.config.epochs), extra={"imgtrain_epoch": state.history[-1]})
        tracker.epoch(state.history[-1])
    _save_checkpoint(job, state)
    crash_point("checkpoint-saved", epoch)
    if state.stopper.should_stop and job.ctx.is_main:
        stopper = state.stopper
        log.info(_STOPPED_EARLY, epoch, stopper.best_epoch, stopper.best_loss, job.config.patience)


_STOPPED_EARLY = "early stopping after epoch %d: validation loss has not improved on epoch %d's %.4f for %d epochs"


class _Loaders:
    """The run's two datasets, and the loader of each epoch (every worker reads its own share)."""

    def __init__(self, job: Job, device: torch.device):
        self.job, self.pin = job, device.type == "cuda"
        config = job.config
        self.workers = config.workers if config.workers is not None else default_loader_workers()
        self.cache = cache = DecodedCache(default_cache_dir()) if config.cache else None
        mean, std = job.untrained.mean, job.untrained.std
        self.train = job.train_dir.dataset(
            ModelInput(job.spec, "training", mean, std, cache=cache, augment=config.augment), multilabel=job.multilabel
        )
        self.valid = job.valid_dir.dataset(
            ModelInput(job.spec, "inference", mean, std, cache=cache),
            classes=job.classes,
            multilabel=job.multilabel,
        )

    def training(self, epoch: int, progress: EpochProgress) -> DataLoader:
        """This epoch's shuffled loader, starting after the batches `progress` has done; seeds torch for it."""
        ctx, seed = self.job.ctx, epoch_seed(self.job.config.seed, epoch)
        seed_everything(seed + ctx.rank)
        weights = None
        if self.job.config.sampler == "balanced":
            counts = np.bincount(self.train.labels, minlength=len(self.job.classes))
            weights = 1.0 / counts[self.train.labels]
        return training_loader(
            self.train,
            self.job.config.batch_size,
            seed,
            self.workers,
            self.pin,
            progress.batches,
            ctx.rank,
            ctx.world_size,
            weights,
        )

    def validation(self, whole: bool = False) -> DataLoader:
        """This worker's share of the validation images, or with `whole` all of them."""
        rank, world_size = (0, 1) if whole else (self.job.ctx.rank, self.job.ctx.world_size)
        return validation_loader(self.valid, self.job.config.batch_size, self.workers, self.pin, rank, world_size)


def _metrics(
    job: Job, state: RunState, data: _Loaders, device: torch.device, epoch: int, lr: float, progress: EpochProgress
) -> dict[str, Any]:
    """The epoch's row of the history: training sums and validation, over every worker."""
    ctx, num_classes = job.ctx, len(job.classes)
    val = evaluate(
        state.judged, data.validation(), device, num_classes, state.precision, job.class_weights, job.multilabel
    )
    loss_sum, correct, seen = distributed.all_sum([progress.loss_sum, progress.correct, progress.seen], ctx, device)
    v_loss, v_weights, v_top1, v_top5, v_seen = distributed.all_sum(
        [val["loss_sum"], val["weight_sum"], val["top1"], val["top5"], val["seen"]], ctx, device
    )
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": loss_sum / seen,
        "train_top1": correct / seen,
        "val_loss": v_loss / v_weights,
        "val_top1": v_top1 / v_seen,
        "val_top5": v_top5 / v_seen if num_classes > 5 and not job.multilabel else None,
        "images_per_second": seen / progress.seconds,
        "seconds": progress.seconds,
    }


def _stop_requested(signalled: StopRequest, ctx: distributed.Context, device: torch.device) -> bool:
    """Whether a signal asked to stop; in a distributed job the workers vote, so all leave at the same batch."""
    wanted = float(signalled.signum is not None)
    return (distributed.all_sum([wanted], ctx, device)[0] if ctx.enabled else wanted) > 0


def _save_checkpoint(job: Job, state: RunState, progress: EpochProgress | None = None) -> None:
    if job.ctx.is_main:
        save_checkpoint(job.out, state.to_checkpoint(progress))
    distributed.barrier(job.ctx)  # nobody runs ahead while the checkpoint is being written


def _interrupted(out: Path, signalled: StopRequest, where: str) -> TrainingInterrupted:
    signum = signalled.signum or signal.SIGTERM  # a worker without a signal stops because another got one
    return TrainingInterrupted(
        f"Training stopped by {signalled.name or 'SIGTERM'} {where}; the checkpoint "
        f"{checkpoint_path(out)} holds everything done so far.",
        hint="rerun the same command with --resume to continue from there.",
        signum=signum,
    )


def _save_model(
    job: Job,
    state: RunState,
    device: torch.device,
    halted: bool,
    calibration: dict[str, Any] | None,
    thresholds: list[float] | None = None,
) -> None:
    """Write the trained model directory as a whole, replacing `out` (and its checkpoint) at once."""
    config, stopper = job.config, state.stopper
    training = {
        **job.hyperparameters(),
        **optimizer_settings(config),
        "device": str(device),
        "precision": state.precision,
        "world_size": job.ctx.world_size,
        "model": str(job.inputs.model),
        "train": str(job.inputs.train),
        "valid": str(job.inputs.valid),
        "pretrained": job.untrained.pretrained,
        "stopped_early": stopper.should_stop or halted,
        "calibrate": config.calibrate,
    }
    best = state.best or state.judged.state_dict()
    with building_dir(job.out, overwrite=True, inputs=job.inputs, validate=open_model_directory) as tmp:
        write_model_directory(
            tmp,
            architecture=job.untrained.architecture,
            classes=job.classes,
            weights={k: v.detach().cpu() for k, v in best.items()},
            transform=job.spec,
            mean=job.untrained.mean,
            std=job.untrained.std,
            training=training,
            history=state.history,
            best_epoch=stopper.best_epoch,
            calibration=calibration,
            thresholds=thresholds,
        )
        plot_history(state.history, tmp / PLOT_NAME)
        crash_point("model-writing")
    log.info(
        "wrote trained model directory %s (best epoch %d, validation loss %.4f)",
        job.out,
        stopper.best_epoch,
        stopper.best_loss,
    )


def _summary(row: dict[str, Any], epochs: int) -> str:
    top5 = "" if row["val_top5"] is None else f" top-5 {row['val_top5']:.4f}"
    return (
        f"epoch {row['epoch']}/{epochs}: lr {row['lr']:.6f} | train loss {row['train_loss']:.4f} top-1 "
        f"{row['train_top1']:.4f} | valid loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f}{top5} | "
        f"{row['images_per_second']:.0f} img/s{' (best)' if row['best'] else ''}"
    )
