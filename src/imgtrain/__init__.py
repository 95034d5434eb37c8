"""imgtrain: Azure ML designer's image-classification modules as a Python library and CLI."""

from __future__ import annotations

__version__ = "0.1.0"

# Imported eagerly: `imgtrain.convert` / `imgtrain.split` must be the functions, not the
# submodules of the same names, whatever was imported first.
from .models.architectures import Architecture, create_model_directory, open_untrained  # noqa: E402
from .data.convert import convert  # noqa: E402
from .errors import (  # noqa: E402
    ImageExceedsLimitError,
    ImgtrainError,
    InvalidDatasetError,
    InvalidModelDirectoryError,
    InvalidTransformationDirectoryError,
    NotLabeledDatasetError,
    OutputExistsError,
    OutputWriteError,
    TrainingInterrupted,
    ParameterError,
    TrainingDivergedError,
)
from .data.image_directory import ImageDataset, ImageDirectory, ImageRecord  # noqa: E402
from .inference.evaluation import evaluate  # noqa: E402
from .models.model_directory import TrainedModel, open_model_directory  # noqa: E402
from .inference.scoring import Model, load_model, score  # noqa: E402
from .data.split import split  # noqa: E402
from .training.loop import EarlyStopping, TrainConfig, train  # noqa: E402
from .data.transforms import TransformSpec, apply_transform, build_transform, init_transform, load_transform  # noqa: E402

__all__ = [
    "__version__",
    "convert",
    "split",
    "ImageDirectory",
    "ImageDataset",
    "ImageRecord",
    "Architecture",
    "create_model_directory",
    "open_untrained",
    "train",
    "TrainConfig",
    "EarlyStopping",
    "TrainedModel",
    "open_model_directory",
    "score",
    "load_model",
    "Model",
    "evaluate",
    "TransformSpec",
    "init_transform",
    "load_transform",
    "build_transform",
    "apply_transform",
    "ImgtrainError",
    "ParameterError",
    "InvalidDatasetError",
    "NotLabeledDatasetError",
    "InvalidModelDirectoryError",
    "InvalidTransformationDirectoryError",
    "ImageExceedsLimitError",
    "OutputExistsError",
    "OutputWriteError",
    "TrainingInterrupted",
    "TrainingDivergedError",
]
