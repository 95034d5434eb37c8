"""A run's files as the studio hands them out: one output file, the model directory as a zip, its ONNX export."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

from ..files import atomic_file
from .runner import BadRequest, usable_path

DOWNLOADS = ("model", "onnx", "scores")
_making = threading.Lock()  # concurrent first downloads make the file once; the others wait for it


def output_file(folder: Path, name: str) -> Path:
    """A file of a run's outputs (plots, metrics, scores); nothing outside the run's folder."""
    try:
        path = (folder / usable_path(name, "file")).resolve()
        found = path.is_relative_to(folder.resolve()) and path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        raise BadRequest(404, f"the run has no file {name!r:.200}.")
    return path


def download_file(model: Path, scores: Path | None, what: str) -> Path:
    """A trained model directory as a zip, its ONNX export, or the scores made with it: made once, next to the
    model, on the first request."""
    if what not in DOWNLOADS:
        raise BadRequest(404, f"downloads are {', '.join(DOWNLOADS)}; not {what!r}.")
    if what == "scores":
        if scores is None:
            raise BadRequest(409, "the model has scored no images yet.")
        return scores
    with _making:
        if what == "onnx":
            return _onnx_export(model, model.parent / f"{model.name}-export")
        return _zipped_model(model, model.parent / f"{model.name}-downloads" / "model.zip")


def _onnx_export(model: Path, out: Path) -> Path:
    # imported here: the export loads torch and onnx, which the server does not load to serve the page
    from ..deploy.export import export_model

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
