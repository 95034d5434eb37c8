"""What a sweep leaves beside its trials: trials.csv / trials.json (one row per trial), Optuna's plots as PNG, and
best/, a copy of the best trial's model directory, with best.json saying which it is."""

from __future__ import annotations

import csv
import io
import logging
import shutil
import socket
import warnings
from pathlib import Path
from typing import Any

from ..errors import OutputExistsError
from ..files import atomic_file, atomic_write_json, atomic_write_text, building_dir
from ..models.model_directory import open_model_directory
from ..plots import pyplot
from .study import optuna_module

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("trial", "state", "val_loss", "val_top1", "best_epoch", "epochs_run", "seconds", "folder", "host")
PLOTS = {
    "history.png": "plot_optimization_history",
    "curves.png": "plot_intermediate_values",
    "importance.png": "plot_param_importances",
}
BEST = "best"
TABLE_JSON, TABLE_CSV, BEST_JSON = "trials.json", "trials.csv", "best.json"
#: every file the report writes in a sweep's folder (besides best/)
REPORT_FILES = (TABLE_JSON, TABLE_CSV, BEST_JSON, *PLOTS)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial of the study (every worker's): its state, result, where its model is, and parameters."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        state = trial.state.name.lower()
        if state == "fail" and "orphaned" in attrs:
            state = "interrupted"
        elif state == "fail" and "surplus" in attrs:
            state = "surplus"
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
        rows.append(
            {
                "trial": trial.number,
                "state": state,
                "val_loss": trial.value if trial.value is not None else _last(trial.intermediate_values),
                "val_top1": attrs.get("val_top1"),
                "best_epoch": attrs.get("best_epoch"),
                "epochs_run": attrs.get("epochs_run"),
                "seconds": round(seconds, 1) if seconds is not None else None,
                "folder": attrs.get("folder"),
                "host": attrs.get("host"),
                "failure": attrs.get("failure") or attrs.get("orphaned") or attrs.get("surplus"),
                "sweep": attrs.get("sweep"),
                "retry_of": attrs.get("retry_of"),
                "params": dict(trial.params),
                "curve": {int(k): v for k, v in sorted(trial.intermediate_values.items())},
            }
        )
    return rows


def _last(values: dict[int, float]) -> float | None:
    return values[max(values)] if values else None


def write_report(study: Any, out: Path) -> dict[str, Any] | None:
    """Write the table, the plots and best/; return the best trial's row (None until a trial completes)."""
    rows = trial_rows(study)
    best = min((r for r in rows if r["state"] == "complete"), key=lambda r: r["val_loss"], default=None)
    atomic_write_json(out / TABLE_JSON, {"format": "imgtrain.sweep_trials", "format_version": 1, "trials": rows})
    atomic_write_text(out / TABLE_CSV, _csv(rows))
    _plots(study, out)
    if best is not None:
        _promote(best, out)
    return best


def _csv(rows: list[dict[str, Any]]) -> str:
    names = sorted({name for row in rows for name in row["params"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*TABLE_COLUMNS, *names, "failure"])
    for row in rows:
        writer.writerow([*(row[c] for c in TABLE_COLUMNS), *(row["params"].get(n) for n in names), row["failure"]])
    return buffer.getvalue()


def _plots(study: Any, out: Path) -> None:
    """Optuna's own matplotlib plots, where the trials so far allow each (importance needs two complete ones)."""
    optuna = optuna_module()
    plt = pyplot()
    from optuna.visualization import matplotlib as figures

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    for name, function in PLOTS.items():
        if not complete or (name == "importance.png" and (len(complete) < 2 or not complete[0].distributions)):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = getattr(figures, function)(study)
        except (ValueError, RuntimeError) as exc:  # too few trials for this plot, or one parameter only
            log.debug("no %s: %s", name, exc)
            continue
        if name != "importance.png":
            _label(axes, name)
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        with atomic_file(out / name, suffix=".png") as tmp:  # a name of its own: workers plot at once
            figure.savefig(tmp, dpi=100)
        plt.close(figure)


def _label(axes: Any, name: str) -> None:
    """Validation loss on a log scale (one diverged trial would flatten every other curve), epochs on x."""
    axes.set_ylabel("validation loss" if name == "curves.png" else "best validation loss")
    if name == "curves.png":
        axes.set_xlabel("epoch")
    if all(y > 0 for line in axes.get_lines() for y in line.get_ydata()):
        axes.set_yscale("log")


def _promote(best: dict[str, Any], out: Path) -> None:
    """Copy the best trial's model directory to out/best (when this host holds it) and say which it is."""
    folder = out / str(best["folder"])
    here = best["host"] == socket.gethostname() and best["sweep"] == str(out.resolve())
    held_here = here and (folder / "imgtrain-model.json").is_file()
    atomic_write_json(
        out / BEST_JSON,
        {
            "format": "imgtrain.sweep_best",
            "format_version": 1,
            **{k: best[k] for k in ("trial", "val_loss", "val_top1", "folder", "host", "params")},
            "copied_to": BEST if held_here else None,
        },
    )
    if not held_here:
        log.info("the best trial, %d, was trained on %s: its model is in %s there", best["trial"], best["host"], folder)
        return
    recorded = out / BEST / "imgtrain-model.json"
    if recorded.is_file() and recorded.read_bytes() == (folder / "imgtrain-model.json").read_bytes():
        return  # already this trial's
    try:
        with building_dir(out / BEST, overwrite=True, validate=open_model_directory) as tmp:
            shutil.rmtree(tmp)
            shutil.copytree(folder, tmp)
    except OutputExistsError:  # another worker is copying it now; the sweep's last report copies it once more
        log.debug("%s is being written by another worker", out / BEST)
