"""imgtrain: Azure ML designer's image-classification modules as a Python library and CLI.

The public names below are imported when first used (PEP 562), so `import imgtrain` and
`imgtrain --help` do not load torch; `imgtrain.train(...)` loads what training needs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from . import errors as _errors  # noqa: E402 (no torch: errors.py imports nothing heavy)

#: Public name -> the module that defines it (every error class of errors.py, a light module, is public).
_PUBLIC = {
    **dict.fromkeys(_errors.__all__, ".errors"),
    "Architecture": ".models.architectures",
    "create_model_directory": ".models.architectures",
    "open_untrained": ".models.architectures",
    "audit": ".auditing.run",
    "convert": ".data.convert",
    "ImageDataset": ".data.dataset",
    "ImageDirectory": ".data.image_directory",
    "ImageRecord": ".data.image_directory",
    "evaluate": ".inference.evaluation",
    "explain": ".inference.explain",
    "TrainedModel": ".models.model_directory",
    "open_model_directory": ".models.model_directory",
    "Model": ".inference.model",
    "load_model": ".inference.model",
    "score": ".inference.scoring",
    "split": ".data.split",
    "EarlyStopping": ".training.state",
    "TrainConfig": ".config",
    "train": ".training.loop",
    "TrainResult": ".training.job",
    "sweep": ".sweeps.run",
    "SweepConfig": ".sweeps.settings",
    "SweepResult": ".sweeps.run",
    "TransformSpec": ".config",
    "apply_transform": ".data.transforms",
    "build_transform": ".data.transforms",
    "init_transform": ".data.transform_file",
    "load_transform": ".data.transform_file",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'imgtrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found directly next time
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
