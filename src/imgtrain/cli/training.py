"""The train subcommand: Train PyTorch Model, on one process or as a distributed job."""

from __future__ import annotations

import argparse
import dataclasses
import os

from ..config import TrainConfig
from .execute import train_worker
from .options import Formatter, add_declared_options, number


def add_train(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `train` subcommand."""
    p = sub.add_parser(
        "train",
        parents=common,
        formatter_class=Formatter,
        help="Train PyTorch Model: untrained model + training/validation images -> trained model",
        description="Train an untrained model directory. The designer's recipe (the default): SGD (momentum 0.9, "
        "Nesterov, weight decay 1e-4), learning rate warmed up linearly for --warmup-epochs then decayed as "
        "(lr - 1e-7)(1 - t)^2 + 1e-7 per epoch; --recipe modern (or each of its options) trains with AdamW and a "
        "cosine decay, automatic augmentation, mixup / cutmix, label smoothing and a moving average of the weights. "
        "The model of the epoch with the lowest validation loss is saved; training stops when validation loss has "
        "not improved for --patience epochs. `imgtrain lr-find` suggests a learning rate.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="untrained model directory (imgtrain resnet/densenet)")
    p.add_argument("--train", required=True, metavar="DIR", help="labeled training image directory")
    p.add_argument("--valid", required=True, metavar="DIR", help="labeled validation image directory")
    p.add_argument("--out", required=True, metavar="DIR", help="trained model directory to write")
    p.add_argument(
        "--transform",
        metavar="SPEC",
        default=None,
        help="transformation file (default: the designer's: resize 256, center crop 224, random horizontal flip)",
    )
    add_declared_options(p, TrainConfig)
    batch = next(action for action in p._actions if action.dest == "batch_size")
    batch.type, batch.metavar = _batch_size, "N|auto"
    batch.help = (
        batch.help or ""
    ) + "; auto: the largest power of two a GPU's free memory takes (on a CPU, 16), printed"
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="data-parallel workers on this machine (torch.distributed; gloo on CPU, NCCL on GPU); the "
        "batch size is per worker and the learning rate is multiplied by the number of workers",
    )
    p.add_argument("--nnodes", type=int, default=1, metavar="M", help="machines in the job")
    p.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's rank, 0 to M-1")
    p.add_argument("--master-addr", default="127.0.0.1", metavar="HOST", help="address of the node-rank-0 machine")
    p.add_argument(
        "--master-port", type=number(1, 65535, int), default=29500, metavar="PORT", help="free port on that machine"
    )
    p.add_argument(
        "--rdzv-endpoint",
        default=None,
        metavar="HOST:PORT",
        help="c10d rendezvous endpoint instead of --master-addr/--master-port",
    )
    p.set_defaults(loads_torch=True, func=cmd_train)


#: The training options the range test takes (the rest do not change its curve).
LR_FIND_OPTIONS = (
    "batch_size",
    "seed",
    "recipe",
    "optimizer",
    "augment",
    "label_smoothing",
    "head_lr_scale",
    "task",
    "device",
    "workers",
    "cache",
    "progress",
)


def add_lr_find(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `lr-find` subcommand."""
    p = sub.add_parser(
        "lr-find",
        parents=common,
        formatter_class=Formatter,
        help="learning-rate range test: a plot of the loss against the rate, and a suggested --learning-rate",
        description="Train the untrained model on the training images for up to --steps batches with a learning "
        "rate growing exponentially from --start-lr to --end-lr (the range test of fastai's lr_find and "
        "Lightning's tuner), stopping once the smoothed loss is 4x its lowest. Writes OUT/lr-find.json (every rate "
        "and loss) and OUT/lr-find.png, and prints the suggestion: the rate where the smoothed loss fell fastest. "
        "Nothing else is kept. Use the same --batch-size, --recipe and --optimizer as the training run.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="untrained model directory")
    p.add_argument("--train", required=True, metavar="DIR", help="labeled training image directory")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write lr-find.json and lr-find.png to")
    p.add_argument("--transform", metavar="SPEC", default=None, help="transformation file (default: the designer's)")
    p.add_argument("--start-lr", type=number(1e-12, 1e3), default=1e-7, metavar="LR", help="first rate")
    p.add_argument("--end-lr", type=number(1e-9, 1e4), default=10.0, metavar="LR", help="last rate")
    p.add_argument("--steps", type=number(5, 100_000, int), default=100, metavar="N", help="batches at most")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_declared_options(p, TrainConfig, only=LR_FIND_OPTIONS)
    p.set_defaults(loads_torch=True, func=cmd_lr_find)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from ..training.lr_find import find_learning_rate

    config = TrainConfig(**{name: getattr(args, name) for name in LR_FIND_OPTIONS})
    result = find_learning_rate(
        args.model,
        args.train,
        args.out,
        config,
        args.transform,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        steps=args.steps,
        overwrite=args.overwrite,
    )
    print(
        f"suggested learning rate {result['suggestion']:.3g} (the loss fell fastest there; lowest at "
        f"{result['minimum']:.3g}); curve in {args.out}/lr-find.png"
    )
    return 0


def _batch_size(text: str) -> int | str:
    return "auto" if text == "auto" else number(1, 1_000_000, int)(text)


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.distributed import LaunchOptions, launch
    from ..training.loop import train

    if args.batch_size == "auto":
        from ..training.batch_size import choose_batch_size

        world_size = args.nproc_per_node * args.nnodes
        choice = choose_batch_size(args.model, args.train, args.transform, TrainConfig(device=args.device), world_size)
        if os.environ.get("RANK", "0") == "0":
            print(f"batch size {choice.batch_size}: {choice.reason}")
        args.batch_size = choice.batch_size

    config = TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)})
    options = LaunchOptions(
        args.nproc_per_node, args.nnodes, args.node_rank, args.master_addr, args.master_port, args.rdzv_endpoint
    )
    if options.needed and "RANK" not in os.environ:  # this process launches; the workers train (rank 0 reports)
        launch(train_worker, (args,), options)
        return 0
    result = train(args.model, args.train, args.valid, args.out, config, transform=args.transform)
    if os.environ.get("RANK", "0") != "0":
        return 0
    best = result.best
    print(
        f"wrote trained model directory {result.out}: best epoch {best['epoch']} of {len(result.history)}, "
        f"validation loss {best['val_loss']:.4f}, top-1 accuracy {best['val_top1']:.4f}"
    )
    return 0
