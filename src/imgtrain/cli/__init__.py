"""The `imgtrain` command: one subcommand per designer module, a thin layer over the library.

One module per stage (data, models, training, inference); options.py builds options from the library's parameter
declarations; execute.py runs a parsed command. Commands import the library lazily, so `--help` never loads torch.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence

from .. import __version__
from .data import add_audit, add_convert, add_split, add_transform
from .execute import execute, train_worker
from .inference import add_demo, add_evaluate, add_explain, add_score, add_serve, add_studio, serve_config
from .models import add_architectures, add_export, add_model, add_models
from .options import Formatter, common_options
from .sweep import add_sweep
from .training import add_lr_find, add_train

__all__ = ["build_parser", "main", "serve_config", "train_worker"]

#: When this module was imported: as the `imgtrain` command, within a tenth of a second of the process's start.
IMPORTED = time.monotonic()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `imgtrain` command."""
    parser = argparse.ArgumentParser(
        prog="imgtrain",
        description="Azure ML designer's image-classification modules, on your own machine.",
        formatter_class=Formatter,
        epilog="Pipeline: convert -> split -> transform init -> train -> score -> evaluate.\n"
        "Run `imgtrain COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"imgtrain {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks on errors")
    parser.add_argument("--quiet", action="store_true", default=False, help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [common_options()]
    for add in (
        add_convert,
        add_split,
        add_audit,
        add_transform,
        add_architectures,
        add_model,
        add_models,
        add_train,
        add_lr_find,
        add_sweep,
        add_score,
        add_evaluate,
        add_explain,
        add_export,
        add_serve,
        add_studio,
        add_demo,
    ):
        add(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 error, 2 wrong usage)."""
    started = IMPORTED if argv is None else time.monotonic()  # argv None: this is the command, timed from its start
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on wrong usage, 0 on --help / --version
        return int(exc.code or 0)
    args.started = started
    code = execute(args)
    if argv is None:
        # The process ends next. Measured: with torch loaded, the garbage collector's passes over every module at
        # exit took 2.2 s of silence after the last line; frozen, 0.5 s (the memory goes back at exit anyway).
        gc.freeze()
    return code
