"""Tune Model Hyperparameters, the studio's sweep box: its parameters (the sweep's declarations, which dimensions of
the default space it searches, and Train's parameters for the rest), its run (sweeps.run.sweep into the box's
folder; its output is `best/`, the best trial's model) and its panel (every trial with its parameters and curve).
No torch and no Optuna here: the run imports them when it starts."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from ..config import STUDIO_TRAIN_DEFAULTS, TrainConfig
from ..errors import ImgtrainError, ParameterError
from ..files import atomic_write_json
from ..params import declared, describe
from ..sweeps.settings import SWEEP_FILE, SweepConfig
from ..sweeps.space import DEFAULT_SPACE

#: The sweep's studio parameters the box leaves out: Resume continues a stopped run, and its study lives in its folder.
HIDDEN = ("resume", "study_name")
#: Written in the sweep's folder once the sweep ended: a resumed run does not search again.
DONE = "studio-sweep-done.json"
SEARCH_HELP = (
    "the training parameters to search, comma-separated, over the default space's ranges (imgtrain sweep "
    "--print-space); the others keep their value below"
)
#: The columns of the trials' table besides their parameters.
COLUMNS = ("trial", "state", "val_loss", "val_top1", "best_epoch", "epochs_run", "seconds", "failure")


def most_parallel() -> int:
    """The most trials at once the box allows: one per CPU core (each trial gets a share of the threads)."""
    return max(1, min(os.cpu_count() or 1, 64))


def sweep_parameters() -> dict[str, dict[str, Any]]:
    """The box's form: the sweep's own parameters, `search`, then Train's (the base of every trial)."""
    own = {name: d for name, d in describe(SweepConfig, studio_only=True).items() if name not in HIDDEN}
    own["parallel"].update(high=most_parallel(), expected=f"an integer from 1 to {most_parallel()}")
    search: dict[str, Any] = {
        "type": "str",
        "default": ", ".join(DEFAULT_SPACE),
        "low": None,
        "high": None,
        "above": False,
        "choices": [],
        "optional": False,
        "help": SEARCH_HELP,
        "expected": "names from " + ", ".join(DEFAULT_SPACE),
    }
    training = describe(TrainConfig, studio_only=True)
    for name, value in STUDIO_TRAIN_DEFAULTS.items():
        training[name]["default"] = value
    return {**own, "search": search, **training}


def searched(value: Any) -> list[str]:
    """The dimensions of the default space a `search` value names, each once, in its order."""
    names = [n.strip() for n in value.split(",") if n.strip()] if isinstance(value, str) else []
    return list(dict.fromkeys(names))


def search_problem(value: Any) -> str | None:
    """What is wrong with a `search` value: a name the default space lacks, or no name at all."""
    unknown = [n for n in searched(value) if n not in DEFAULT_SPACE]
    if unknown:
        return f"the default space has no {', '.join(unknown)}; search some of {', '.join(DEFAULT_SPACE)}"
    return None if searched(value) else f"name at least one parameter to search: some of {', '.join(DEFAULT_SPACE)}"


def sweep_problems(values: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(field or None, message) for each refused value of a sweep box, then the checks between parameters."""
    problems: list[tuple[str | None, str]] = []
    for spec in (SweepConfig, TrainConfig):
        for field in declared(spec):
            if field.name in values and (problem := field.problem(values[field.name])):
                problems.append((field.name, problem))
    if "parallel" not in {f for f, _ in problems} and values.get("parallel", 1) > most_parallel():
        problems.append(("parallel", f"parallel must be at most {most_parallel()}, one trial per CPU core"))
    if problem := search_problem(values.get("search")):
        problems.append(("search", problem))
    if not problems:
        try:
            sweep_config(values)
            train_config(values)
        except ParameterError as exc:
            problems.append((None, str(exc)))
    return problems


def sweep_config(values: dict[str, Any], resume: bool = False) -> SweepConfig:
    """The box's sweep options (its study in its folder, under the default name)."""
    names = {f.name for f in dataclasses.fields(SweepConfig)}
    return SweepConfig(**{k: v for k, v in values.items() if k in names and k not in HIDDEN}, resume=resume)


def train_config(values: dict[str, Any]) -> TrainConfig:
    """The training options every trial starts from (the searched ones replaced by the trial's values)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in values.items() if k in names}
    return TrainConfig(**{**STUDIO_TRAIN_DEFAULTS, **given}, progress=False)


def run_sweep(model: Path, train: Path, valid: Path, out: Path, values: dict[str, Any], transform: Path | None) -> None:
    """The box's work: a sweep into `out` (a stopped one resumed), its best trial's model in `out/best`."""
    from ..sweeps.run import sweep  # here: a sweep loads torch and Optuna, the server does not

    space = {name: DEFAULT_SPACE[name] for name in searched(values["search"])}
    config = sweep_config(values, resume=(out / SWEEP_FILE).is_file())
    result = sweep(model, train, valid, out, config, train_config(values), space, transform)
    if result.best is None:
        raise ImgtrainError(
            f"No trial of the sweep completed ({len(result.trials)} tried).",
            hint="see each trial's failure in the box's output, and widen or move the search",
        )
    atomic_write_json(out / DONE, {"best": result.best["trial"], "trials": len(result.trials)})


def sweep_ended(out: Path) -> bool:
    """Whether the sweep in `out` ended (a stopped one has not: Resume continues it)."""
    return (out / DONE).is_file()


def sweep_panel(out: Path, values: dict[str, Any]) -> dict[str, Any]:
    """What the box's panel shows: every trial so far with its parameters, state and result, each one's validation
    loss per epoch, the best trial."""
    try:
        rows = json.loads((out / "trials.json").read_text())["trials"]
    except (OSError, ValueError, KeyError):
        rows = []
    complete = [r for r in rows if r["state"] == "complete" and r["val_loss"] is not None]
    best = min(complete, key=lambda r: r["val_loss"], default=None)
    names = sorted({name for row in rows for name in row.get("params", {})})
    counts = {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "fail", "running")}
    return {
        "kind": "sweep",
        "ended": sweep_ended(out),
        "trials_asked": values.get("trials"),
        "counts": counts,
        "parameters": names,
        "best": best["trial"] if best else None,
        "trials": [
            {**{c: row.get(c) for c in COLUMNS}, "params": row.get("params", {}), "best": row is best} for row in rows
        ],
        "curves": {str(row["trial"]): sorted([int(e), v] for e, v in row.get("curve", {}).items()) for row in rows},
    }
