"""Train PyTorch Model: the loop, learning-rate schedule, early stopping, checkpoints and resume.

    for epoch: train_one_epoch(); metrics = evaluate(); stopper.update(); save_checkpoint()

SIGINT/SIGTERM end the epoch after the current batch and write a checkpoint that `resume`
continues from that very batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from ..models.architectures import (IMAGENET_MEAN, IMAGENET_STD, UntrainedModel, load_backbone, open_untrained,
                            smallest_input_side)
from .checkpoints import CHECKPOINT_DIR, Checkpoint, checkpoint_path, load_checkpoint, save_checkpoint
from ..devices import (autocast_for, determinism, gradient_scaler, measure_speedup, resolve_device,
                      resolve_precision)
from ..config import TrainConfig
from ..errors import (CheckpointError, DistributedTrainingError, InvalidDatasetError, OutputExistsError, ParameterError, TrainingDivergedError,
                     TrainingInterrupted)
from ..faults import crash_point
from ..files import building_dir, check_output, exclusive, within
from ..data.image_directory import ImageDirectory, list_problems
from ..interrupts import stop_on_signals
from ..models.model_directory import PLOT_NAME, open_model_directory, write_model_directory
from ..parallel import default_loader_workers
from ..plots import plot_history
from .tracking import Tracker, open_tracker
from ..data.sampling import epoch_seed, seed_everything, training_loader, validation_loader
from ..data.imaging import ImageTooLarge
from ..data.transforms import ModelInput, TransformSpec, check_transform_size, load_transform, output_sizes

log = logging.getLogger(__name__)

MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
END_LEARNING_RATE = 1e-7


def learning_rate_at(epoch: int, config: TrainConfig) -> float:
    """The learning rate of 0-based `epoch`: linear warmup, then polynomial (power 2) decay to 1e-7."""
    lr, warmup = config.learning_rate, config.warmup_epochs
    if epoch < warmup:
        return lr * (epoch + 1) / (warmup + 1)
    progress = (epoch - warmup) / max(1, config.epochs - warmup)
    return (lr - END_LEARNING_RATE) * (1 - progress) ** 2 + END_LEARNING_RATE


@dataclass
class EarlyStopping:
    """Stop when validation loss has not improved on the best so far for `patience` epochs."""

    patience: int
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, epoch: int, loss: float) -> bool:
        """Record epoch's loss; True when it is a new best (NaN never is)."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


@dataclass
class EpochProgress:
    """Sums over the finished batches of one epoch; a checkpoint keeps them when a run stops mid-epoch."""

    epoch: int
    batches: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


def train_one_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device,
                    config: TrainConfig, precision: str, scaler: torch.amp.GradScaler | None, progress: EpochProgress,
                    stop: Callable[[], bool]) -> bool:
    """Continue `progress` through this worker's training batches; False when `stop()` ended the epoch early."""
    net.train()
    criterion = nn.CrossEntropyLoss()
    autocast = autocast_for(device, precision)
    epoch, started = progress.epoch, time.perf_counter() - progress.seconds
    bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False, initial=progress.batches,
               total=progress.batches + len(loader), disable=None if config.progress else True)
    for images, labels in bar:
        step = progress.batches + 1
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = net(images)
            loss = criterion(logits.float(), labels)
        if not torch.isfinite(loss):  # stop before the step spreads NaN into the weights
            raise TrainingDivergedError(
                f"The training loss became {loss.item()} in epoch {epoch}, batch {step}.",
                hint=f"lower the learning rate (now {optimizer.param_groups[0]['lr']:g}); the checkpoint of the last "
                "finished epoch, with the best weights so far, is kept.")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        progress.batches = step
        progress.loss_sum += loss.item() * len(labels)
        progress.correct += int((logits.argmax(1) == labels).sum())
        progress.seen += len(labels)
        progress.seconds = time.perf_counter() - started
        crash_point("batch", epoch, step)
        if stop():
            return False
        if step % config.print_frequency == 0:
            rate = progress.seen / progress.seconds
            bar.set_postfix(loss=f"{progress.loss_sum / progress.seen:.4f}", img_s=f"{rate:.0f}")
            if bar.disable:
                log.info("epoch %d [%d/%d] loss %.4f, %.0f images/s", epoch, step, bar.total,
                         progress.loss_sum / progress.seen, rate)
    return True


@torch.inference_mode()
def evaluate(net: nn.Module, loader: DataLoader, device: torch.device, num_classes: int,
             precision: str = "fp32") -> dict[str, float | None]:
    """Sums over this worker's validation images: loss, top-1 and top-5 hits, images."""
    net.eval()
    autocast = autocast_for(device, precision)
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast:
            logits = net(images)
        loss_sum += float(nn.functional.cross_entropy(logits.float(), labels, reduction="sum"))
        top1 += int((logits.argmax(1) == labels).sum())
        if num_classes > 5:
            top5 += int((logits.topk(5, dim=1).indices == labels[:, None]).any(1).sum())
        seen += len(labels)
    return {"loss_sum": loss_sum, "top1": top1, "top5": top5, "seen": seen}


def train(
    model: str | Path,
    train: str | Path,
    valid: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    transform: TransformSpec | str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train an untrained model directory on an image directory; write the best epoch's model to `out`.

    Returns the metric history, one dict per epoch. `transform` defaults to the designer's
    default transformation (resize 256, center crop 224, random horizontal flip). Under
    torchrun (RANK / WORLD_SIZE set) this process is one data-parallel worker of the job.
    """
    config = config or TrainConfig()
    spec = transform if isinstance(transform, TransformSpec) else (
        load_transform(transform) if transform is not None else TransformSpec())
    ctx = distributed.context_from_env()
    untrained = open_untrained(model)
    train_dir, valid_dir = _labeled(train, "training"), _labeled(valid, "validation")
    width, height = _check_inputs(config, spec, train_dir, valid_dir, ctx.world_size,
                                  smallest_input_side(untrained.architecture))
    out = Path(out)
    if config.log_dir is not None and within(config.log_dir, out):
        raise ParameterError(f"--log-dir {config.log_dir} lies inside --out {out}, which the trained model replaces "
                             "as a whole: the event files would be deleted.", hint="put the log folder elsewhere.")
    inputs = [Path(model), Path(train), Path(valid)]
    with exclusive(out) if ctx.is_main else contextlib.nullcontext():
        return _train(untrained, train_dir, valid_dir, out, inputs, config, spec, ctx,
                      (config.batch_size, 3, height, width))


def _train(untrained: UntrainedModel, train_dir: ImageDirectory, valid_dir: ImageDirectory, out: Path,
           inputs: list[Path], config: TrainConfig, spec: TransformSpec, ctx: distributed.Context,
           batch_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """The training run itself, once every input has been checked (see `train`)."""
    classes = train_dir.classes
    smallest = smallest_input_side(untrained.architecture)
    resumed = _prepare_output(out, config, inputs)
    device = distributed.worker_device(resolve_device(config.device), ctx)
    fingerprint = {"architecture": untrained.architecture.to_json(), "pretrained": untrained.pretrained,
                   "classes": list(classes), "train_images": len(train_dir), "valid_images": len(valid_dir),
                   "train_index": train_dir.fingerprint(), "valid_index": valid_dir.fingerprint(),
                   "transform": spec.to_json()["transforms"], "world_size": ctx.world_size,
                   **config.hyperparameters()}
    if resumed is not None:
        _check_fingerprint(out, resumed.state["fingerprint"], fingerprint)

    with distributed.process_group(ctx, device), stop_on_signals() as signalled, contextlib.ExitStack() as stack:
        seed_everything(config.seed)
        net = _build_network(untrained, len(classes)).to(device)
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        precision = _run_precision(out, config, resumed, net, device, ctx, batch_shape)
        stack.enter_context(determinism(device, precision, config.repeatable))
        scaler = gradient_scaler(device, precision)
        # fused: one kernel for the whole update instead of several passes over every weight (measured 28 -> 11
        # ms per step for resnet18 on 2 CPU cores). Not with fp16's loss scaler: fused CPU SGD applied the steps the
        # scaler meant to skip (inf gradients), and the weights became NaN (measured, torch 2.14.1).
        optimizer = torch.optim.SGD(net.parameters(), lr=config.learning_rate, momentum=MOMENTUM, nesterov=True,
                                    weight_decay=WEIGHT_DECAY, fused=scaler is None)
        stopper, history, best, start, partial = EarlyStopping(config.patience), [], None, 0, None
        if resumed is not None:
            _restore(out, resumed, net, optimizer, scaler)
            stopper = EarlyStopping(**resumed.state["stopper"])
            history, best, start = resumed.state["history"], resumed.best, resumed.epoch
            partial = resumed.state.get("partial")
            log.info("resuming %s after epoch %d%s of %d", out, start,
                     f" and batch {partial['batches']} of epoch {partial['epoch']}" if partial else "", config.epochs)
        # Every worker holds the same weights from here on: DDP broadcasts rank 0's and averages gradients.
        runner = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
            if ctx.enabled else net
        if ctx.is_main:
            log.info("training %s on %s in %s%s: %d training, %d validation images, %d classes",
                     untrained.architecture.model_name, device, precision,
                     f" x {ctx.world_size} workers" if ctx.enabled else "", len(train_dir), len(valid_dir),
                     len(classes))

        def stop_requested() -> bool:
            # Workers must leave an epoch at the same batch, so in a distributed job they vote (one number).
            wanted = float(signalled.signum is not None)
            return (distributed.all_sum([wanted], ctx, device)[0] if ctx.enabled else wanted) > 0

        def checkpoint(done: int, progress: EpochProgress | None) -> None:
            if ctx.is_main:
                state = {"stopper": dataclasses.asdict(stopper), "history": history, "fingerprint": fingerprint,
                         "partial": dataclasses.asdict(progress) if progress else None, "precision": precision,
                         "scaler": scaler.state_dict() if scaler is not None else None}
                save_checkpoint(out, Checkpoint(done, net.state_dict(), best, optimizer.state_dict(), state))
            distributed.barrier(ctx)  # nobody runs ahead while the checkpoint is being written

        def interrupted(where: str) -> TrainingInterrupted:
            signum = signalled.signum or signal.SIGTERM  # a worker without a signal stops because another got one
            return TrainingInterrupted(f"Training stopped by {signalled.name or 'SIGTERM'} {where}; the checkpoint "
                                       f"{checkpoint_path(out)} holds everything done so far.",
                                       hint="rerun the same command with --resume to continue from there.",
                                       signum=signum)

        workers = config.workers if config.workers is not None else default_loader_workers()
        pin = device.type == "cuda"
        tracker = open_tracker(config.log_dir, config.mlflow, {**config.hyperparameters(), "model":
                               untrained.architecture.model_name, "precision": precision, "world_size": ctx.world_size},
                               run_name=out.name) if ctx.is_main else Tracker()
        train_data = train_dir.dataset(ModelInput(spec, "training", IMAGENET_MEAN, IMAGENET_STD, smallest))
        valid_data = valid_dir.dataset(ModelInput(spec, "inference", IMAGENET_MEAN, IMAGENET_STD, smallest),
                                       classes=classes)
        try:
            for epoch in range(start + 1, config.epochs + 1):
                if stopper.should_stop:
                    break
                lr = learning_rate_at(epoch - 1, config) * ctx.world_size  # scaled with the workers, as the original
                for group in optimizer.param_groups:
                    group["lr"] = lr
                progress = EpochProgress(**partial) if partial and partial["epoch"] == epoch else EpochProgress(epoch)
                seed = epoch_seed(config.seed, epoch)
                seed_everything(seed + ctx.rank)
                loader = training_loader(train_data, config.batch_size, seed, workers, pin, progress.batches,
                                         ctx.rank, ctx.world_size)
                if not train_one_epoch(runner, loader, optimizer, device, config, precision, scaler, progress,
                                       stop_requested):
                    checkpoint(epoch - 1, progress)
                    raise interrupted(f"in epoch {epoch} after batch {progress.batches} of {loader.sampler.batches}")
                val = evaluate(net, validation_loader(valid_data, config.batch_size, workers, pin, ctx.rank,
                                                      ctx.world_size), device, len(classes), precision)
                loss_sum, correct, seen = distributed.all_sum([progress.loss_sum, progress.correct, progress.seen],
                                                              ctx, device)
                v_loss, v_top1, v_top5, v_seen = distributed.all_sum(
                    [val["loss_sum"], val["top1"], val["top5"], val["seen"]], ctx, device)
                improved = stopper.update(epoch, v_loss / v_seen)
                if improved:
                    best = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
                row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / seen, "train_top1": correct / seen,
                       "val_loss": v_loss / v_seen, "val_top1": v_top1 / v_seen,
                       "val_top5": v_top5 / v_seen if len(classes) > 5 else None,
                       "images_per_second": seen / progress.seconds, "seconds": progress.seconds, "best": improved}
                history.append(row)
                if ctx.is_main:
                    log.info(_summary(row, config.epochs))
                    tracker.epoch(row)
                checkpoint(epoch, None)
                crash_point("checkpoint-saved", epoch)
                if stopper.should_stop and ctx.is_main:
                    log.info("early stopping after epoch %d: validation loss has not improved on epoch %d's %.4f for "
                             "%d epochs", epoch, stopper.best_epoch, stopper.best_loss, config.patience)
                if epoch < config.epochs and not stopper.should_stop and stop_requested():
                    raise interrupted(f"after epoch {epoch}")
        except RuntimeError as exc:
            if not ctx.enabled:
                raise
            raise DistributedTrainingError(
                f"Worker rank {ctx.rank} lost contact with the other workers during epoch {len(history) + 1} "
                f"({str(exc).splitlines()[0][:200]}).", hint="see the failing worker's error; rerun with --resume "
                "to continue from the last checkpoint.") from None
        except KeyboardInterrupt:
            log.warning("stopped at once; %s", "rerun with --resume to continue from the last checkpoint"
                        if checkpoint_path(out).is_file() else "no checkpoint had been written, so there is nothing "
                        "to resume")
            raise
        finally:
            tracker.close("FAILED" if sys.exc_info()[0] else "FINISHED")

        if ctx.is_main:
            _save_model(out, inputs, untrained, classes, best or net.state_dict(), spec, config, device, precision,
                        ctx, stopper, history)
        distributed.barrier(ctx)
    return history


def _save_model(out: Path, inputs: list[Path], untrained: UntrainedModel, classes: Sequence[str],
                best: dict[str, torch.Tensor], spec: TransformSpec, config: TrainConfig, device: torch.device,
                precision: str, ctx: distributed.Context, stopper: EarlyStopping, history: list[dict[str, Any]]) -> None:
    """Write the trained model directory as a whole, replacing `out` (and its checkpoint) at once."""
    model, train, valid = inputs
    training = {**config.hyperparameters(), "momentum": MOMENTUM, "nesterov": True, "weight_decay": WEIGHT_DECAY,
                "device": str(device), "precision": precision, "world_size": ctx.world_size,
                "model": str(model), "train": str(train), "valid": str(valid), "pretrained": untrained.pretrained,
                "stopped_early": stopper.should_stop}
    with building_dir(out, overwrite=True, inputs=inputs, validate=open_model_directory) as tmp:
        write_model_directory(tmp, architecture=untrained.architecture, classes=classes,
                              weights={k: v.detach().cpu() for k, v in best.items()}, transform=spec,
                              mean=IMAGENET_MEAN, std=IMAGENET_STD, training=training, history=history,
                              best_epoch=stopper.best_epoch)
        plot_history(history, tmp / PLOT_NAME)
        crash_point("model-writing")
    log.info("wrote trained model directory %s (best epoch %d, validation loss %.4f)", out, stopper.best_epoch,
             stopper.best_loss)


def _summary(row: dict[str, Any], epochs: int) -> str:
    top5 = "" if row["val_top5"] is None else f" top-5 {row['val_top5']:.4f}"
    return (f"epoch {row['epoch']}/{epochs}: lr {row['lr']:.6f} | train loss {row['train_loss']:.4f} top-1 "
            f"{row['train_top1']:.4f} | valid loss {row['val_loss']:.4f} top-1 {row['val_top1']:.4f}{top5} | "
            f"{row['images_per_second']:.0f} img/s{' (best)' if row['best'] else ''}")


def _labeled(path: str | Path, role: str) -> ImageDirectory:
    directory = ImageDirectory.open(path)
    directory.require_labels(role)
    if len(directory) == 0:
        raise InvalidDatasetError(f"The {role} image directory {path} holds no images.", hint="give it some images.")
    return directory


def _check_inputs(config: TrainConfig, spec: TransformSpec, train: ImageDirectory, valid: ImageDirectory,
                  world_size: int = 1, smallest_side: int = 1) -> tuple[int, int]:
    """Everything that can be checked before any work starts; returns the training input's (width, height)."""
    present_train = {c for c, n in train.class_counts().items() if n}
    present_valid = {c for c, n in valid.class_counts().items() if n}
    if len(present_train) < 2:
        raise InvalidDatasetError(f"The training image directory {train.root} has images of {len(present_train)} "
                                  "class; a classifier needs at least 2.", hint="add images of other classes.")
    extra = sorted(present_valid - present_train)  # a class listed but left without training images counts too
    if extra:
        raise InvalidDatasetError(
            f"The validation image directory {valid.root} has classes the training directory {train.root} has no "
            f"images of: {extra}.", hint="remove those images from validation, or add training images of those "
            "classes (a split with a larger fraction, or more images of them).")
    missing = sorted(present_train - present_valid)
    if missing:
        log.warning("training classes without validation images: %s", missing)
    per_worker = len(train) // world_size
    if config.batch_size > per_worker:
        shard = f" (of {world_size} workers' shares, {per_worker} each)" if world_size > 1 else ""
        raise ParameterError(f"batch_size {config.batch_size} is larger than the {len(train)} training images{shard}.",
                             hint=f"use a batch size of at most {per_worker}.")
    found = []
    for directory, mode in ((train, "training"), (valid, "inference")):
        image_sizes = {(r.width, r.height) for r in directory}
        _check_transform_sizes(spec, directory, image_sizes)
        sizes = output_sizes(spec, image_sizes, mode)
        found.append(next(iter(sizes)))
        if min(found[-1]) < smallest_side:
            raise InvalidDatasetError(
                f"Images of {directory.root} come out of the {mode} transformation {found[-1][0]}x{found[-1][1]} "
                f"pixels; the network needs at least {smallest_side}x{smallest_side}.",
                hint=f"turn on resize with a size (and crop size) of at least {smallest_side}.")
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
            raise InvalidDatasetError(
                f"Images of {directory.root} leave the {mode} transformation in {len(sizes)} sizes ({shown}), so "
                "they cannot be batched.", hint="turn on resize with center crop (or random crop) so all come out "
                "the same size.")
    return found[0]


def _check_transform_sizes(spec: TransformSpec, directory: ImageDirectory, sizes: set[tuple[int, int]]) -> None:
    """Name the images the transformation would blow up (thin images under a resize), before any work."""
    too_large = {}
    for size in sizes:
        try:
            check_transform_size(spec, *size)
        except ImageTooLarge as exc:
            too_large[size] = str(exc)
    if too_large:
        bad = [f"{r.path} ({too_large[(r.width, r.height)]})" for r in directory if (r.width, r.height) in too_large]
        raise InvalidDatasetError(f"{len(bad)} images of {directory.root} are too large for the transformation:\n"
                                  f"{list_problems(bad)}", hint="remove them (or crop them to a usual aspect ratio) "
                                  "and convert again.")


def _prepare_output(out: Path, config: TrainConfig, inputs: list[Path]) -> Checkpoint | None:
    """Refuse an occupied output; return the checkpoint to resume from, if resuming."""
    check_output(out, overwrite=True, inputs=inputs)  # never write into an input
    has_checkpoint = checkpoint_path(out).is_file()
    if config.resume:
        if not has_checkpoint:
            raise ParameterError(f"There is no interrupted training run in {out} to resume.",
                                 hint="start without --resume.")
        return load_checkpoint(out)
    if has_checkpoint and not config.overwrite:
        raise OutputExistsError(f"{out} holds an interrupted training run.",
                                hint="pass --resume to continue it, or --overwrite to start over.")
    if config.overwrite:
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    else:
        check_output(out, overwrite=False)
    return None


def _run_precision(out: Path, config: TrainConfig, resumed: Checkpoint | None, net: nn.Module, device: torch.device,
                   ctx: distributed.Context, batch_shape: tuple[int, ...]) -> str:
    """The run's precision: the checkpoint's when resuming (never measured again), else the policy's choice,
    measured on this network and batch shape and agreed by every worker."""
    if resumed is not None:
        saved = resumed.state.get("precision") or resumed.state["fingerprint"].get("precision", "fp32")
        if config.precision not in ("auto", saved):
            raise ParameterError(f"The run in {out} was started in {saved}, not {config.precision}; a run continues in "
                                 "the precision it started with.", hint=f"resume with --precision auto (or {saved}), "
                                 "or start over with --overwrite.")
        return saved
    precision = resolve_precision(config.precision, device, config.repeatable,
                                  lambda candidate: measure_speedup(net, batch_shape, device, candidate))
    if ctx.enabled and config.precision == "auto":
        votes = distributed.all_sum([float(precision != "fp32")], ctx, device)[0]
        precision = precision if votes == ctx.world_size else "fp32"
    return precision


def _restore(out: Path, resumed: Checkpoint, net: nn.Module, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler | None) -> None:
    """Load a checkpoint's weights, optimizer and loss-scaler state, or say that they do not fit this network."""
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    try:
        if resumed.best is not None and {k: v.shape for k, v in resumed.best.items()} != shapes:
            raise ValueError("the best weights do not fit the network")
        # the optimizer's settings come from the parameters (the learning rate is set again each epoch)
        fixed = [{k: v for k, v in group.items() if k != "lr"} for group in optimizer.state_dict()["param_groups"]]
        if [{k: v for k, v in group.items() if k != "lr"} for group in resumed.optimizer["param_groups"]] != fixed:
            raise ValueError("its optimizer settings are not this run's")
        net.load_state_dict(resumed.model, strict=True)
        optimizer.load_state_dict(resumed.optimizer)
        if scaler is not None and resumed.state.get("scaler"):
            scaler.load_state_dict(resumed.state["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"The checkpoint {checkpoint_path(out)} does not fit the network: "
                              f"{str(exc).splitlines()[0][:300]}.", hint="start over with --overwrite.") from None


def _check_fingerprint(out: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    saved = {k: v for k, v in saved.items() if k != "precision"}  # checked by _run_precision
    for key in ("repeatable", "train_index", "valid_index"):  # checkpoints from before these were kept
        saved.setdefault(key, current.get(key))
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        raise ParameterError(
            f"The run in {out} was started with other inputs or parameters; these differ: {', '.join(changed)}.",
            hint="resume with the same inputs and parameters, or start over with --overwrite.")


def _build_network(untrained: UntrainedModel, num_classes: int) -> nn.Module:
    net = untrained.architecture.build(num_classes)
    weights = untrained.backbone_weights()
    if weights is not None:
        load_backbone(net, untrained.architecture, weights, str(untrained.path))
    return net
