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
        description="Train an untrained model directory. SGD (momentum 0.9, Nesterov, weight decay "
        "1e-4), learning rate warmed up linearly for --warmup-epochs then decayed as "
        "(lr - 1e-7)(1 - t)^2 + 1e-7 per epoch; the model of the epoch with the lowest validation "
        "loss is saved; training stops when validation loss has not improved for --patience epochs.",
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


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.distributed import LaunchOptions, launch
    from ..training.loop import train

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
