"""Parameters declared once, as metadata on their dataclass field: type, default, range, choices, help, and where
they show (the studio's form, the resume fingerprint).

The checks in `__post_init__` (`check`), the command line's options (cli), the studio's form and
`/api/parameters` (`describe`) and the hyperparameters a model directory records (`shaping`) are all built from
these declarations, so a new option is one field, its use and its test. No torch, no argparse.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from .errors import ParameterError, list_problems

METADATA_KEY = "imgtrain"


def is_integer(value: Any, low: float = -math.inf, high: float = math.inf) -> TypeGuard[int]:
    """An int from `low` to `high` inclusive, and not a boolean (JSON and Python both let True pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number(value: Any, low: float = -math.inf, high: float = math.inf) -> TypeGuard[int | float]:
    """A finite int or float from `low` to `high` inclusive, and not a boolean."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and low <= value <= high
    )


@dataclass(frozen=True)
class Param:
    """What one parameter takes and means (its default lives on the field)."""

    help: str
    low: float | None = None  # inclusive, unless `above`
    high: float | None = None  # inclusive
    above: bool = False  # the value must be strictly above `low`
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    studio: bool = True  # shown in the studio's form and taken by its API
    shapes_result: bool = False  # recorded in the model directory and compared on resume (the fingerprint)
    accepts: Callable[[Any], bool] | None = None  # a check the fields above cannot say; `expected` says it
    expected: str = ""
    hint: str = ""  # how to fix a refused value


def param(default: Any, help: str, **declaration: Any) -> Any:
    """A dataclass field with its declaration: `epochs: int = param(5, "number of epochs", low=1)`."""
    return dataclasses.field(default=default, metadata={METADATA_KEY: Param(help=help, **declaration)})


@dataclass(frozen=True)
class Declared:
    """A declared field: its name, default, value type, whether None is allowed, and its declaration."""

    name: str
    default: Any
    kind: type
    optional: bool
    param: Param

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def expected(self) -> str:
        """What a valid value is, in words: 'an integer >= 1', 'one of none, balanced'."""
        p = self.param
        if p.expected:
            return p.expected
        if self.kind is bool:
            return "true or false"
        if p.choices:
            return "one of " + ", ".join(p.choices)
        noun = {int: "an integer", float: "a finite number", str: "a string"}[self.kind]
        if p.low is not None and p.high is not None:
            return (
                f"{noun} above {_show(p.low)} and at most {_show(p.high)}"
                if p.above
                else f"{noun} from {_show(p.low)} to {_show(p.high)}"
            )
        if p.low is not None:
            return f"{noun} {'>' if p.above else '>='} {_show(p.low)}"
        return noun

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this parameter, or None."""
        if value is None and self.optional:
            return None
        if not self._accepts(value):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            return f"{self.name} must be {self.expected()}, got {shown}"
        return None

    def _accepts(self, value: Any) -> bool:
        p, kind = self.param, self.kind
        if kind is bool:
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if kind is float:
            if not isinstance(value, int | float) or not math.isfinite(value):
                return False
        elif not isinstance(value, kind):
            return False
        if p.choices:
            return value in p.choices or (p.accepts is not None and p.accepts(value))
        if p.low is not None and (value <= p.low if p.above else value < p.low):
            return False
        if p.high is not None and value > p.high:
            return False
        return p.accepts is None or p.accepts(value)


def _show(number: float) -> str:
    return f"{number:.3g}" if isinstance(number, float) and not number.is_integer() else str(int(number))


_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


def declared(cls: type) -> list[Declared]:
    """The declared fields of a parameter dataclass, in their order."""
    out = []
    for field in dataclasses.fields(cls):
        declaration = field.metadata.get(METADATA_KEY)
        if declaration is None:
            continue
        annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
        parts = [part.strip() for part in annotation.split("|")]
        optional = "None" in parts
        kinds = [part for part in parts if part != "None"]
        if len(kinds) != 1 or kinds[0] not in _KINDS:
            raise TypeError(
                f"{cls.__name__}.{field.name}: a declared parameter is int, float, bool or str "
                f"(optionally | None), got {annotation}"
            )
        out.append(Declared(field.name, field.default, _KINDS[kinds[0]], optional, declaration))
    return out


def problems(cls: type, values: dict[str, Any], unknown: str = "{name!r} is not a parameter of {cls}") -> list[str]:
    """What is wrong with `values` for the parameters of `cls`: unknown names, then each refused value."""
    fields = {d.name: d for d in declared(cls)}
    found = [unknown.format(name=name, cls=cls.__name__) for name in sorted(set(values) - set(fields))]
    for name, value in values.items():
        if name in fields and (problem := fields[name].problem(value)):
            found.append(problem)
    return found


def check(instance: Any) -> None:
    """ParameterError naming every refused value of a parameter dataclass (one line each, with how to fix)."""
    fields = declared(type(instance))
    found = [(d, problem) for d in fields if (problem := d.problem(getattr(instance, d.name)))]
    if not found:
        return
    hints = [d.param.hint for d, _ in found if d.param.hint]
    if len(found) == 1:
        raise ParameterError(found[0][1] + ".", hint=hints[0] if hints else None)
    raise ParameterError(
        "Invalid parameters:\n" + list_problems([p for _, p in found]), hint="; ".join(hints) if hints else None
    )


def shaping(instance: Any) -> dict[str, Any]:
    """The values of the parameters that shape the result (what a model directory records and resume compares)."""
    return {d.name: getattr(instance, d.name) for d in declared(type(instance)) if d.param.shapes_result}


def describe(cls: type, studio_only: bool = False) -> dict[str, dict[str, Any]]:
    """The declarations as JSON for forms: {name: {default, type, help, low, high, above, choices, optional}}."""
    out = {}
    for d in declared(cls):
        if studio_only and not d.param.studio:
            continue
        p = d.param
        out[d.name] = {
            "default": d.default,
            "type": d.kind.__name__,
            "help": p.help,
            "expected": d.expected(),
            "low": p.low,
            "high": p.high,
            "above": p.above,
            "choices": list(p.choices),
            "optional": d.optional,
        }
    return out
