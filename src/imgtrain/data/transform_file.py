"""The transformation file (Init Image Transformation): written and read without torch; data.transforms applies it."""

from __future__ import annotations

from pathlib import Path

from ..config import TRANSFORM_FORMAT as FORMAT
from ..config import TRANSFORM_FORMAT_VERSION as FORMAT_VERSION
from ..config import TransformSpec, spec_problems
from ..errors import InvalidTransformationDirectoryError, list_problems
from ..files import atomic_write_json, check_output
from ..jsonfiles import is_imgtrain_json, read_versioned_json

FILE_NAME = "transform.json"


def init_transform(out: str | Path, spec: TransformSpec | None = None, *, overwrite: bool = False) -> Path:
    """Write a transformation file (Init Image Transformation); an existing folder gets OUT/transform.json."""
    spec = spec or TransformSpec()
    out = Path(out)
    if out.is_dir():
        out = out / FILE_NAME
    check_output(out, overwrite, ours=lambda path: is_imgtrain_json(path, FORMAT))
    atomic_write_json(out, spec.to_json())
    return out


def load_transform(path: str | Path) -> TransformSpec:
    """Read and validate a transformation file (or a folder holding transform.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    hint = "create one with `imgtrain transform init FILE`."
    data = read_versioned_json(path, FORMAT, FORMAT_VERSION, InvalidTransformationDirectoryError, hint)
    values = data.get("transforms")
    problems = ["'transforms' must be an object"] if not isinstance(values, dict) else spec_problems(values)
    if problems or not isinstance(values, dict):
        raise InvalidTransformationDirectoryError(f"{path} is invalid:\n{list_problems(problems)}", hint)
    return TransformSpec(**values)


def transform_spec(transform: TransformSpec | str | Path | None) -> TransformSpec:
    """A transformation given as a spec, a transformation file, or None (the designer's default)."""
    if isinstance(transform, TransformSpec):
        return transform
    return load_transform(transform) if transform is not None else TransformSpec()
