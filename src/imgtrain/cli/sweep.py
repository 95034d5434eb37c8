"""The sweep subcommand: many training runs over a search space (Optuna), the best one kept."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..config import TrainConfig
from ..params import declared
from ..sweeps.settings import SweepConfig
from .options import Formatter, add_declared_options

#: the training options a sweep passes to every trial (its own --resume / --overwrite are the sweep's)
TRIAL_OPTIONS = tuple(d.name for d in declared(TrainConfig) if d.name not in ("resume", "overwrite"))
REQUIRED = ("model", "train", "valid", "out")


def add_sweep(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `sweep` subcommand."""
    p = sub.add_parser(
        "sweep",
        parents=common,
        formatter_class=Formatter,
        help="search training parameters (and architectures) for the lowest validation loss: many trials, pruned",
        description="Train --trials models, each with parameters drawn from the search space by Optuna's TPE "
        "sampler, stopping trials that trail (--pruner) and every trial before --budget-minutes runs out. Each trial "
        "is an ordinary model directory in OUT/trials/N; OUT/best is a copy of the one with the lowest validation "
        "loss; OUT/trials.csv and trials.json list every trial, and history.png, curves.png and importance.png plot "
        "them. A killed sweep continues with --resume (finished trials are kept, an interrupted one resumes from its "
        "checkpoint). With --storage postgresql://... workers on several machines share one study. Options of "
        "`imgtrain train` that the space does not vary apply to every trial.",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="DIR",
        help="untrained model directory; repeat it to search over architectures",
    )
    p.add_argument("--train", metavar="DIR", help="labeled training image directory")
    p.add_argument("--valid", metavar="DIR", help="labeled validation image directory (trials are judged on it)")
    p.add_argument("--out", metavar="DIR", help="sweep folder to write")
    p.add_argument(
        "--space",
        metavar="FILE",
        default=None,
        help="search space, YAML or JSON (default: the built-in one; --print-space shows it)",
    )
    p.add_argument("--print-space", action="store_true", help="print the default search space as YAML and exit")
    p.add_argument("--transform", metavar="SPEC", default=None, help="transformation file (default: the designer's)")
    add_declared_options(p, SweepConfig)
    add_declared_options(p, TrainConfig, only=TRIAL_OPTIONS)
    p.set_defaults(loads_torch=True, func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..sweeps.space import DEFAULT_SPACE, space_yaml

    if args.print_space:
        print(space_yaml(DEFAULT_SPACE), end="")
        return 0
    missing = [f"--{name}" for name in REQUIRED if not getattr(args, name)]
    if missing:
        print(f"imgtrain sweep: error: the following arguments are required: {', '.join(missing)}", file=sys.stderr)
        return 2
    from ..sweeps.run import sweep

    config = SweepConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SweepConfig)})
    base = TrainConfig(**{name: getattr(args, name) for name in TRIAL_OPTIONS})
    result = sweep(args.model, args.train, args.valid, args.out, config, base, args.space, args.transform)
    states = [row["state"] for row in result.trials]
    print(
        f"sweep {result.out}: {len(states)} trials ("
        + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
        + ")"
    )
    best = result.best
    if best is None:
        print("no trial completed; see trials.csv for why")
        return 1
    print(
        f"best: trial {best['trial']}, validation loss {best['val_loss']:.4f}, top-1 accuracy {best['val_top1']:.4f}; "
        f"model in {result.out / 'best'}"
    )
    return 0
