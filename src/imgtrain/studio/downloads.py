"""A run's files as the studio hands them out: one output file, the model directory as a zip, its ONNX export."""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..files import atomic_file
from .runner import BadRequest

DOWNLOADS = ("model", "onnx", "scores")


def output_file(folder: Path, name: str) -> Path:
    """A file of a run's outputs (plots, metrics, scores); nothing outside the run's folder."""
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise BadRequest(404, f"the run has no file {name!r}.")
    return path


def download_file(folder: Path, what: str) -> Path:
    """The model directory as a zip, its ONNX export, or the scores: made once, on the first request."""
    if what not in DOWNLOADS:
        raise BadRequest(404, f"downloads are {', '.join(DOWNLOADS)}; not {what!r}.")
    model = folder / "model"
    if not (model / "imgtrain-model.json").is_file():
        raise BadRequest(409, "the run has no trained model yet.")
    if what == "scores":
        return output_file(folder, "scores.csv")
    if what == "onnx":
        return _onnx_export(model, folder / "export")
    return _zipped_model(model, folder / "downloads" / "model.zip")


def _onnx_export(model: Path, out: Path) -> Path:
    # imported here: the export loads torch and onnx, which the server does not load to serve the page
    from ..models.export import export_model

    if not (out / "model.onnx").is_file():
        export_model(model, out, "onnx", overwrite=True)
    return out / "model.onnx"


def _zipped_model(model: Path, zipped: Path) -> Path:
    """The model directory under `model/` in a zip, without its training checkpoint."""
    if not zipped.is_file():
        with atomic_file(zipped) as tmp, zipfile.ZipFile(tmp, "w") as archive:
            for path in sorted(model.rglob("*")):
                if path.is_file() and "checkpoint" not in path.relative_to(model).parts:
                    archive.write(path, Path("model") / path.relative_to(model))
    return zipped
