"""A sweep's search space: which training parameters vary, over what, checked against their declarations.

A space is a mapping from a parameter of `imgtrain train` (one that shapes the result) or `model` to a range
`{low, high, log}`, a list of choices, or one fixed value; YAML or JSON on disk (docs/sweeps.md).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..errors import ParameterError, list_problems
from ..params import Declared, declared, is_number

#: The space `imgtrain sweep` searches when given no --space: the designer's knobs and the recipe's pieces, each
#: over the values that measured useful (docs/performance.md); `imgtrain sweep --print-space` writes it as YAML.
DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"low": 1e-4, "high": 0.1, "log": True},
    "batch_size": [8, 16, 32],
    "epochs": {"low": 3, "high": 10},
    "optimizer": ["sgd", "adamw"],
    "freeze_epochs": [0, 1],
    "head_lr_scale": {"low": 1.0, "high": 30.0, "log": True},
    "augment": ["none", "trivialaugment"],
    "mixup": [0.0, 0.2],
    "label_smoothing": [0.0, 0.1],
    "ema": [0.0, 0.99],
}

MODEL = "model"
MAX_SPACE_BYTES = 1_000_000
SPACE_FORMAT = "YAML or JSON: {parameter: {low: A, high: B, log: true} | [choice, ...] | value}"


@dataclass(frozen=True)
class Dimension:
    """One parameter of the space: a range (`low`..`high`, `log` for a log scale), choices, or a fixed value."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def to_json(self) -> Any:
        """The dimension as the space file writes it."""
        if self.choices:
            return list(self.choices) if len(self.choices) > 1 else self.choices[0]
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        return {**out, "log": True} if self.log else out

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial (a fixed value is not asked for)."""
        if len(self.choices) == 1:
            return self.choices[0]
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low or 0), int(self.high or 0), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a sweep, in order; `suggest` draws one trial's parameters."""

    dimensions: tuple[Dimension, ...]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One trial's values: {name: value} for every dimension, `model` included if the space has it."""
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def to_json(self) -> dict[str, Any]:
        return {d.name: d.to_json() for d in self.dimensions}

    def get(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)

    @property
    def max_epochs(self) -> int | None:
        """The most epochs a trial may run (Hyperband's resource), if the space says."""
        epochs = self.get("epochs")
        if epochs is None:
            return None
        return int(max(epochs.choices) if epochs.choices else epochs.high or 1)


def searchable() -> dict[str, Declared]:
    """The training parameters a space may vary: those that shape the trained model."""
    return {d.name: d for d in declared(TrainConfig) if d.param.shapes_result and d.name != "seed"}


def read_space(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a space file (YAML or JSON); ParameterError saying where it is unreadable."""
    import yaml

    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPACE_BYTES:
            raise ParameterError(
                f"The search space {path} is {path.stat().st_size:,} bytes; a space file is at most "
                f"{MAX_SPACE_BYTES:,}.",
                hint="give the space file, one line per parameter.",
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"Cannot read the search space {path}: {exc}.", hint="give a YAML or JSON file.") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ParameterError(
            f"The search space {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
            f"{str(exc).splitlines()[0][:200]}.",
            hint=f"write it as {SPACE_FORMAT}; `imgtrain sweep --print-space` prints the default.",
        ) from None
    if not isinstance(data, dict) or not data:
        raise ParameterError(
            f"The search space {path} must map parameter names to ranges or choices, got {type(data).__name__}.",
            hint=f"write it as {SPACE_FORMAT}.",
        )
    return data


def parse_space(data: dict[str, Any], models: list[str], source: str = "the search space") -> SearchSpace:
    """A checked SearchSpace from a mapping; `models` (--model, one or more) becomes the `model` dimension unless
    the mapping lists its own. ParameterError naming every problem, with the expected values."""
    allowed = searchable()
    found: list[str] = []
    dimensions = []
    for name, value in data.items():
        if name == MODEL:
            continue
        if name not in allowed:
            close = difflib.get_close_matches(str(name), [*allowed, MODEL], n=1)
            suggestion = f" (did you mean {close[0]}?)" if close else ""
            found.append(f"{name!r} is not a parameter a sweep can vary{suggestion}")
            continue
        dimension, problems = _dimension(allowed[name], value)
        found += problems
        if dimension is not None:
            dimensions.append(dimension)
    listed = data.get(MODEL, models)
    choices = listed if isinstance(listed, list) else [listed]
    if not choices or not all(isinstance(c, str) and c for c in choices):
        found.append("model must be an untrained model directory or a list of them")
    if found:
        raise ParameterError(
            f"{source} has problems:\n" + list_problems(found),
            hint=f"write each as {SPACE_FORMAT}; parameters: {', '.join(allowed)}.",
        )
    return SearchSpace((Dimension(MODEL, choices=tuple(choices)), *dimensions))


def _dimension(decl: Declared, value: Any) -> tuple[Dimension | None, list[str]]:
    """The dimension `value` describes for the declared parameter, or the problems with it."""
    name, integer = decl.name, decl.kind is int
    if isinstance(value, list):
        if not value:
            return None, [f"{name}: the list of choices is empty"]
        problems = [p for v in value if (p := decl.problem(v))]
        return (None if problems else Dimension(name, choices=tuple(value), integer=integer)), problems
    if not isinstance(value, dict):
        problem = decl.problem(value)
        return (None, [problem]) if problem else (Dimension(name, choices=(value,), integer=integer), [])
    if decl.kind not in (int, float):
        return None, [f"{name} takes choices (a list), not a range"]
    unknown = sorted(set(value) - {"low", "high", "log"})
    low, high, log = value.get("low"), value.get("high"), value.get("log", False)
    problems = [f"{name}: unknown key {key!r} (a range has low, high and log)" for key in unknown]
    for bound in (low, high):
        if bound is None or (problem := decl.problem(bound)):
            problems.append(f"{name}: low and high must both be {decl.expected()}, got {low!r} and {high!r}")
            break
    if not isinstance(log, bool):
        problems.append(f"{name}: log must be true or false, got {log!r}")
    if not problems and not (is_number(low) and is_number(high) and low < high):
        problems.append(f"{name}: low must be below high, got {low} and {high}")
    if not problems and log and not (is_number(low) and low > 0):
        problems.append(f"{name}: a log scale needs low above 0, got {low}")
    if problems:
        return None, problems
    return Dimension(name, low=low, high=high, log=log, integer=integer), []


def space_yaml(space: dict[str, Any]) -> str:
    """A space as the YAML file a user edits, one parameter per line."""
    import yaml

    lines = ["# imgtrain sweep search space: {low, high, log} ranges, [choices], or one fixed value"]
    for name, value in space.items():
        flow = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=200)
        lines.append(f"{name}: {flow.split(chr(10) + '...')[0].strip()}")
    return "\n".join(lines) + "\n"
