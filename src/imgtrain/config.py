"""Every parameter dataclass and catalog constant, importable without torch.

The CLI and the studio read options and defaults from here (one source of truth), so
`imgtrain --help` answers without loading torch. The modules that do the work import these names.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, fields
from typing import Any

from .errors import ParameterError, list_problems

# --- seeds

#: Seeds are 32-bit, as the designer's; larger ones overflowed torch's generator deep inside a run.
MAX_SEED = 2**32 - 1

def check_seed(seed: object) -> int:
    """The seed if it is an integer from 0 to MAX_SEED; ParameterError saying so otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ParameterError(f"seed must be an integer from 0 to {MAX_SEED}, got {str(seed)[:40]!r}.",
                             hint="the designer's default is 1.")
    return seed


# --- architectures

FAMILIES: dict[str, tuple[str, ...]] = {
    "densenet": ("densenet121", "densenet161", "densenet169", "densenet201"),
    "resnet": ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
               "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"),
}
#: The family of `imgtrain model` networks (any of the catalog, models.catalog).
CATALOG_FAMILY = "torchvision"
DEFAULT_MODEL = {"densenet": "densenet201", "resnet": "resnext101_32x8d"}
OPTIONS = {"densenet": ("memory_efficient",), "resnet": ("zero_init_residual",)}

# --- precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# --- class imbalance

#: none: every image counts the same; balanced: each class's loss is weighted n / (k * n_class) (scikit-learn's
#: "balanced"), so every class weighs the same in total.
CLASS_WEIGHTS = ("none", "balanced")
#: uniform: each epoch is a shuffle of the training images; balanced: each epoch draws as many images, with
#: replacement, every class equally likely.
SAMPLERS = ("uniform", "balanced")


# --- transformations

TRANSFORM_FORMAT = "imgtrain.transformation"
TRANSFORM_FORMAT_VERSION = 1
MAX_SIZE = 16384


@dataclass(frozen=True)
class TransformSpec:
    """The designer's Init Image Transformation parameters, with its defaults."""

    resize: bool = True
    size: int = 256
    center_crop: bool = True
    crop_size: int = 224
    pad: bool = False
    padding: int = 0
    color_jitter: bool = False
    grayscale: bool = False
    random_resized_crop: bool = False
    random_resized_crop_size: int = 256
    random_crop: bool = False
    random_crop_size: int = 224
    random_horizontal_flip: bool = True
    random_vertical_flip: bool = False
    random_rotation: bool = False
    random_rotation_degrees: float = 0
    random_affine: bool = False
    random_affine_degrees: float = 0
    random_grayscale: bool = False
    random_perspective: bool = False
    random_erasing: bool = False

    def __post_init__(self) -> None:
        problems = spec_problems(dataclasses.asdict(self))
        if problems:
            raise ParameterError("Invalid transformation parameters:\n" + list_problems(problems))

    def to_json(self) -> dict:
        """The transformation file's content."""
        return {"format": TRANSFORM_FORMAT, "format_version": TRANSFORM_FORMAT_VERSION, "transforms": dataclasses.asdict(self)}


SWITCHES = {f.name for f in fields(TransformSpec) if f.type in (bool, "bool")}
RANDOM_STEPS = {"color_jitter"} | {name for name in SWITCHES if name.startswith("random_")}
RANGES = {
    "size": (1, MAX_SIZE), "crop_size": (1, MAX_SIZE), "padding": (0, MAX_SIZE),
    "random_resized_crop_size": (1, MAX_SIZE), "random_crop_size": (1, MAX_SIZE),
    "random_rotation_degrees": (0, 180), "random_affine_degrees": (0, 180),
}


def spec_problems(values: dict) -> list[str]:
    """What is wrong with a dict of transformation parameters (empty when valid)."""
    problems = []
    known = {f.name for f in fields(TransformSpec)}
    for name in sorted(set(values) - known):
        problems.append(f"{name!r} is not one of the designer's transformation parameters")
    for name, value in values.items():
        if name in SWITCHES and not isinstance(value, bool):
            problems.append(f"{name} must be true or false, got {value!r}")
        elif name in RANGES:
            low, high = RANGES[name]
            integral = not name.endswith("degrees")
            kinds = int if integral else int | float
            if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
                kind = "an integer" if integral else "a number"
                problems.append(f"{name} must be {kind} from {low} to {high}, got {value!r}")
    return problems or _frame_problems({f.name: f.default for f in fields(TransformSpec)} | values)


def _frame_problems(s: dict) -> list[str]:
    """Crops larger than the image they are given: torchvision pads the difference with black, so the picture
    ends up small in a black frame. Only the sizes the spec fixes are checked (without a resize, the image's)."""
    problems = []
    side, made_by = (s["size"], "the resize (size)") if s["resize"] else (None, "")
    if s["center_crop"]:
        if side is not None and s["crop_size"] > side:
            problems.append(f"crop_size must be at most size when both resize and center_crop are on, got crop_size "
                            f"{s['crop_size']} with size {side}: a {s['crop_size']} px center crop of an image "
                            f"resized to {side} px is that image in a black frame; lower crop_size to {side} or "
                            f"less, or raise size to {s['crop_size']} or more")
        side, made_by = s["crop_size"], "the center crop (crop_size)"
    if s["pad"] and side is not None:
        side, made_by = side + 2 * s["padding"], f"{made_by} and the padding"
    if s["random_resized_crop"]:
        side, made_by = s["random_resized_crop_size"], "the random resized crop (random_resized_crop_size)"
    if s["random_crop"] and side is not None and s["random_crop_size"] > side:
        problems.append(f"random_crop_size must be at most {side}, the side {made_by} leaves, got "
                        f"{s['random_crop_size']}: the random crop would pad the image with black to "
                        f"{s['random_crop_size']} px; lower random_crop_size to {side} or less (or turn on pad "
                        "with a padding, if a black border is what you want)")
    return problems


# --- training

#: The integer parameters of TrainConfig and their ranges (None: no upper bound), checked in __post_init__ and
#: shown by the studio's form.
TRAIN_RANGES: dict[str, tuple[int, int | None]] = {
    "epochs": (1, None), "batch_size": (1, None), "seed": (0, MAX_SEED), "patience": (1, None),
    "warmup_epochs": (0, None), "freeze_epochs": (0, None), "print_frequency": (1, None)}

@dataclass(frozen=True)
class TrainConfig:
    """Train PyTorch Model's parameters (the designer's names and defaults) and how to run."""

    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 0.001
    seed: int = 1
    patience: int = 3
    warmup_epochs: int = 0
    freeze_epochs: int = 0  # fine-tuning: epochs that train the new head alone (backbone and its BatchNorm fixed)
    head_lr_scale: float = 10.0  # fine-tuning: the new head's learning rate relative to learning_rate
    print_frequency: int = 10
    device: str = "auto"
    precision: str = "auto"
    repeatable: bool = True  # same seed -> bit-identical weights; off lets `auto` pick bf16 where it is faster
    workers: int | None = None
    cache: bool = True  # keep large photos decoded and resized on disk (data.decoding), read from epoch 2 on
    class_weights: str = "none"  # CLASS_WEIGHTS
    sampler: str = "uniform"  # SAMPLERS
    calibrate: bool = True  # fit a temperature on the validation set after training (inference.calibration)
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    log_dir: str | None = None  # TensorBoard event files
    mlflow: bool = False

    def __post_init__(self) -> None:
        check_seed(self.seed)
        for name, (low, _) in TRAIN_RANGES.items():
            value = getattr(self, name)
            if name != "seed" and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}.")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr < sys.float_info.epsilon:
            raise ParameterError(f"learning_rate must be a finite number >= {sys.float_info.epsilon:.3g}, got {lr!r}.",
                                 hint="the designer's default is 0.001.")
        scale = self.head_lr_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1000:
            raise ParameterError(f"head_lr_scale must be a number above 0 and at most 1000, got {scale!r}.",
                                 hint="1 trains the head at the backbone's rate (the designer's behaviour).")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ParameterError(f"device must be auto, cpu or cuda, got {self.device!r}.")
        if self.precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 0):
            raise ParameterError(f"workers must be an integer >= 0, got {self.workers!r}.")
        for name, choices in (("class_weights", CLASS_WEIGHTS), ("sampler", SAMPLERS)):
            if getattr(self, name) not in choices:
                raise ParameterError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}.",
                                     hint="balanced helps when some classes have far fewer images than others.")
        for name in ("repeatable", "cache", "calibrate"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.resume and self.overwrite:
            raise ParameterError("resume and overwrite exclude each other.", hint="choose one.")

    def hyperparameters(self) -> dict[str, Any]:
        """The parameters that shape the result (not how the run is executed)."""
        return {k: getattr(self, k) for k in ("epochs", "batch_size", "learning_rate", "seed", "patience",
                                               "warmup_epochs", "repeatable", "freeze_epochs",
                                               "head_lr_scale", "class_weights", "sampler")}


# --- scoring and serving

SCORE_BATCH_SIZE = 32
#: Explanations (imgtrain explain): most confident errors, and right answers, explained by default.
EXPLAIN_COUNT = 8
#: The label score and serve answer for an image whose top probability is below --min-confidence.
UNKNOWN_LABEL = "unknown"
BEST_GUESS = "Best Guess"  # the scores column that keeps the top class when the label is UNKNOWN_LABEL


def check_min_confidence(value: object, classes: tuple[str, ...] | list[str] = ()) -> float | None:
    """The threshold if None or a probability in (0, 1]; ParameterError saying so otherwise (also when a class is
    itself named UNKNOWN_LABEL, which would make the answer ambiguous)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ParameterError(f"min_confidence must be a probability above 0 and at most 1, got {value!r}.",
                             hint="e.g. 0.5: images whose top class is less likely than that are answered "
                                  f"{UNKNOWN_LABEL!r}.")
    if UNKNOWN_LABEL in classes:
        raise ParameterError(f"The model has a class named {UNKNOWN_LABEL!r}, so an {UNKNOWN_LABEL!r} answer below "
                             "--min-confidence could not be told from it.", hint="leave out --min-confidence.")
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

    def __post_init__(self) -> None:
        check_min_confidence(self.min_confidence)
        if (self.max_upload_bytes < 1 or self.max_pixels < 1 or self.max_batch < 1 or self.decode_threads < 1
                or not 0 <= self.batch_wait_ms <= 60_000):
            raise ParameterError("upload size, pixel limit, batch size and decode threads must be positive, "
                                 "the wait 0 to 60000 ms.")


