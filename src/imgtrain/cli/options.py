"""Option building blocks shared by the subcommands: the help formatter, number and count types, options generated
from a parameter dataclass's declarations, and the lines every command prints."""

from __future__ import annotations

import argparse
import time
from collections.abc import Collection
from typing import Any

from ..params import declared


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, except where there is none to show (required options, None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


def number(low: float, high: float, kind: type = float):
    """An argparse type: a finite number of `kind` from `low` to `high` (nan, inf and 1e400 refused)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
        if not low <= value <= high:  # also false for nan
            raise argparse.ArgumentTypeError(f"must be from {kind(low)} to {kind(high)}, got {text[:40]}")
        return value

    return parse


WORKERS_HELP = "worker processes; 0 = all work in this process"


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


THRESHOLD_HELP = (
    "a multi-label model only: answer every class whose probability is at least P (0 < P < 1), for every "
    "class, instead of each class's threshold chosen on the validation set when it trained"
)
MIN_CONFIDENCE_HELP = (
    "a single-label model only: answer 'unknown' for an image whose most likely class has a probability "
    "below P (0 < P <= 1), instead of a class it is unsure of; the probabilities are the calibrated ones (see "
    "train --calibrate)"
)


def add_declared_options(p: argparse.ArgumentParser, cls: type, only: Collection[str] | None = None) -> None:
    """One option per declared field of the parameter dataclass `cls` (params.param; those named in `only`): its
    default, help, metavar and choices from the declaration. Integers with a closed range are checked here (wrong
    usage, exit 2); every other value by the library, whose message names the parameter (exit 1)."""
    for declared_field in declared(cls):
        if only is not None and declared_field.name not in only:
            continue
        p_ = declared_field.param
        options: dict[str, Any] = {"default": declared_field.default, "help": p_.help.replace("%", "%%")}
        if declared_field.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif p_.choices and p_.accepts is None:
            options["choices"] = p_.choices
        elif declared_field.kind in (int, float):
            if declared_field.kind is int and p_.low is not None and p_.high is not None:
                options["type"] = number(p_.low, p_.high, int)
            else:
                options["type"] = declared_field.kind
        if p_.metavar and "choices" not in options and declared_field.kind is not bool:
            options["metavar"] = p_.metavar
        p.add_argument(declared_field.flag, **options)


def options_of(args: argparse.Namespace, cls: type) -> Any:
    """The declared parameter dataclass `cls` from the parsed options that add_declared_options made (checked)."""
    return cls(**{d.name: getattr(args, d.name) for d in declared(cls)})


def common_options() -> argparse.ArgumentParser:
    # Accept --debug / --quiet after the subcommand too, without overriding the ones given before it.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="log warnings and errors only")
    return p


def waited(args: argparse.Namespace) -> str:
    """The time the user has waited for this command so far."""
    return f"{time.monotonic() - args.started:.1f} s in all"


def describe(directory) -> str:
    kind = f"{len(directory.classes)} classes" if directory.labeled else "unlabeled"
    return f"{directory.root}: {len(directory)} images, {kind}"
