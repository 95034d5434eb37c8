"""imgtrain: Azure ML designer's image-classification modules as a Python library and CLI."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names and the module that holds each; imported on first use so that
# `import imgtrain` and `imgtrain --help` stay fast (torch takes seconds to import).
_EXPORTS = {
    "ImageDirectory": "image_directory",
    "ImageRecord": "image_directory",
    "convert": "convert",
    "split": "split",
    "TransformSpec": "transforms",
    "init_transform": "transforms",
    "load_transform": "transforms",
    "build_transform": "transforms",
    "apply_transform": "transforms",
    "ImgtrainError": "errors",
    "ParameterError": "errors",
    "InvalidDatasetError": "errors",
    "NotLabeledDatasetError": "errors",
    "InvalidModelDirectoryError": "errors",
    "InvalidTransformationDirectoryError": "errors",
    "ImageExceedsLimitError": "errors",
    "OutputExistsError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imgtrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
