"""What the studio shows of a run: its summary, its progress so far, each module's output, its confident errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..config import PROBABILITY_PREFIX, SCORED_LABELS
from ..data.image_directory import ImageDirectory
from .events import epoch_rows
from .registry import run_folder_name
from .runner import BadRequest

#: The image directories a run writes (converted, split), which the page shows as counts and samples.
IMAGE_OUTPUTS = ("train-images", "valid-images", "train", "valid")
#: A run's outputs, in the pipeline's order, as the page links them.
OUTPUTS = ("train-images", "train", "valid", "untrained", "model", "scores.csv", "evaluation")


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A run as the registry has it (request, status, error), with its folder relative to the root."""
    return {
        "id": run["id"],
        "created": run["created"],
        "status": run["status"],
        "request": run["request"],
        "error": run["error"],
        "folder": run_folder_name(run["id"]),
    }


def run_details(root: Path, folder: Path) -> dict[str, Any]:
    """What a run has produced so far: its epoch rows, the evaluation's metrics, the output paths that exist."""
    metrics_file = folder / "evaluation" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    outputs = {name: str((folder / name).relative_to(root)) for name in OUTPUTS if (folder / name).exists()}
    return {"history": epoch_rows(folder), "metrics": metrics, "outputs": outputs}


def best_accuracy(folder: Path) -> float | None:
    """The run's best validation accuracy so far (None before its first validated epoch), for the runs' list."""
    return max((row["val_top1"] for row in epoch_rows(folder) if row.get("val_top1") is not None), default=None)


def output_summary(folder: Path, name: str) -> dict[str, Any]:
    """What one module wrote, for its box: an image directory's counts and a few images, the model's card, the
    first scores, the evaluation's metrics."""
    path = folder / name
    if name in IMAGE_OUTPUTS and path.is_dir():
        directory = ImageDirectory.open(path)
        samples = [str((path / r.path).relative_to(folder)) for r in directory.records[:8]]
        return {
            "kind": "image directory",
            "images": len(directory),
            "classes": directory.class_counts(),
            "samples": samples,
        }
    if name == "model" and (path / "imgtrain-model.json").is_file():
        # imported here: it loads torch, which the server does not load to serve the page
        from ..models.model_directory import open_model_directory

        trained = open_model_directory(path)
        return {"kind": "model", "classes": list(trained.classes), "training": trained.meta.get("training", {})}
    if name == "scores.csv" and path.is_file():
        with open(path, encoding="utf-8") as f:
            return {"kind": "scores", "head": [next(f, "").rstrip("\n") for _ in range(11)]}
    if name == "evaluation" and (path / "metrics.json").is_file():
        return {"kind": "evaluation", "metrics": json.loads((path / "metrics.json").read_text())}
    raise BadRequest(404, f"the run has no output {name!r} (yet).")


def confident_errors(folder: Path, count: int = 16) -> list[dict[str, Any]]:
    """The most confidently wrong predictions of a run's scores, each with its image's path in the run's folder
    (None for an image outside it: a validation directory given as it was)."""
    # imported here: the scores' column names live with scoring, which loads torch

    scores = folder / "scores.csv"
    if not scores.is_file():
        raise BadRequest(409, "the run has no scores yet.")
    wrong = []
    with open(scores, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("label") and row.get(SCORED_LABELS) and row["label"] != row[SCORED_LABELS]:
                confidence = float(row[PROBABILITY_PREFIX + row[SCORED_LABELS]])
                wrong.append((confidence, row))
    wrong.sort(key=lambda pair: -pair[0])
    valid = folder / "valid" if (folder / "valid").is_dir() else folder / "valid-images"
    return [
        {
            "path": str((valid / row["path"]).relative_to(folder)) if (valid / row["path"]).is_file() else None,
            "true": row["label"],
            "predicted": row[SCORED_LABELS],
            "probability": confidence,
        }
        for confidence, row in wrong[:count]
    ]
