"""Every parameter dataclass and catalog constant, importable without torch.

The CLI and the studio read options and defaults from here (one source of truth), so
`imgtrain --help` answers without loading torch. The modules that do the work import these names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .deploy.formats import BACKENDS
from .errors import ParameterError
from .params import is_number
from .train_config import (  # noqa: F401 (re-exported: callers import every parameter from here)
    AUGMENTS,
    CLASS_WEIGHTS,
    MAX_SEED,
    OPTIMIZERS,
    PRECISIONS,
    RECIPES,
    SAMPLERS,
    TASKS,
    TrainConfig,
    check_seed,
)
from .transform_config import (  # noqa: F401 (re-exported: callers import every parameter from here)
    MAX_SIZE,
    RANDOM_STEPS,
    SWITCHES,
    TRANSFORM_FORMAT,
    TRANSFORM_FORMAT_VERSION,
    TransformSpec,
    spec_problems,
)

# --- architectures

FAMILIES: dict[str, tuple[str, ...]] = {
    "densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
    "resnet": (
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnext50_32x4d",
        "resnext101_32x8d",
        "wide_resnet50_2",
        "wide_resnet101_2",
    ),
}
#: The family of `imgtrain model` networks (any of the catalog, models.catalog).
CATALOG_FAMILY = "torchvision"
#: The family of `imgtrain model --model-name timm/NAME` networks (timm's catalog, models.timm_catalog).
TIMM_FAMILY = "timm"
DEFAULT_MODEL = {"densenet": "densenet201", "resnet": "resnext101_32x8d"}
OPTIONS = {"densenet": ("memory_efficient",), "resnet": ("zero_init_residual",)}
#: The model a studio run starts from unless the page picks another: the smallest ResNet, pretrained (minutes on a
#: laptop's CPU, where the designer's default resnext101_32x8d takes hours).
STUDIO_MODEL = {"family": "resnet", "model_name": "resnet18", "pretrained": True}
#: Where a studio run's training parameters default otherwise than the library's: every batch reaches the page.
STUDIO_TRAIN_DEFAULTS = {"print_frequency": 1}

# --- scoring and serving

SCORE_BATCH_SIZE = 32
#: The largest scoring batch accepted: more would only hold more images in memory at once.
MAX_SCORE_BATCH = 65536
#: Explanations (imgtrain explain): most confident errors, and right answers, explained by default.
EXPLAIN_COUNT = 8
#: The label score and serve answer for an image whose top probability is below --min-confidence.
UNKNOWN_LABEL = "unknown"
PROBABILITY_PREFIX = "Scored Probabilities_"  # the scores' column of each class: the prefix, then the class
SCORED_LABELS = "Scored Labels"  # the scores' column of the answer
#: Between the classes of one image in a CSV cell (a manifest's 'labels' column; multi-label scores' answers).
LABEL_SEPARATOR = ";"
BEST_GUESS = "Best Guess"  # the scores column that keeps the top class when the label is UNKNOWN_LABEL


def check_min_confidence(value: object, classes: tuple[str, ...] | list[str] = ()) -> float | None:
    """The threshold if None or a probability in (0, 1]; ParameterError saying so otherwise (also when a class is
    itself named UNKNOWN_LABEL, which would make the answer ambiguous)."""
    if value is None:
        return None
    if not is_number(value, 0, 1) or value == 0:
        raise ParameterError(
            f"min_confidence must be a probability above 0 and at most 1, got {value!r}.",
            hint=f"e.g. 0.5: images whose top class is less likely than that are answered {UNKNOWN_LABEL!r}.",
        )
    if UNKNOWN_LABEL in classes:
        raise ParameterError(
            f"The model has a class named {UNKNOWN_LABEL!r}, so an {UNKNOWN_LABEL!r} answer below "
            "--min-confidence could not be told from it.",
            hint="leave out --min-confidence.",
        )
    return float(value)


DEFAULT_MAX_UPLOAD_MB = 10.0
DEFAULT_MAX_PIXELS = 40_000_000
MAX_IMAGES_PER_REQUEST = 64


@dataclass
class ServeConfig:
    """Limits and batching of the endpoint."""

    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 2**20)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = 16
    batch_wait_ms: float = 5.0
    decode_threads: int = 2  # images decoded at once, off the event loop; bounds decoding memory too
    min_confidence: float | None = None  # below it the answer is UNKNOWN_LABEL
    threshold: float | None = None  # a multi-label model's threshold for every class (checked as it loads)
    backend: str = "torch"  # what computes the scores (deploy.formats.BACKENDS)

    def __post_init__(self) -> None:
        check_min_confidence(self.min_confidence)
        if self.backend not in BACKENDS:
            raise ParameterError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}.")
        if (
            self.max_upload_bytes < 1
            or self.max_pixels < 1
            or self.max_batch < 1
            or self.decode_threads < 1
            or not 0 <= self.batch_wait_ms <= 60_000
        ):
            raise ParameterError(
                "upload size, pixel limit, batch size and decode threads must be positive, the wait 0 to 60000 ms."
            )
