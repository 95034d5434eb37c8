"""Every parameter dataclass and catalog constant, importable without torch.

The CLI and the studio read options and defaults from here (one source of truth), so
`imgtrain --help` answers without loading torch. The modules that do the work import these names.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError
from .params import check, is_integer, is_number, param, shaping
from .transform_config import (  # noqa: F401 (re-exported: callers import every parameter from here)
    MAX_SIZE,
    RANDOM_STEPS,
    SWITCHES,
    TRANSFORM_FORMAT,
    TRANSFORM_FORMAT_VERSION,
    TransformSpec,
    spec_problems,
)

# --- seeds

#: Seeds are 32-bit, as the designer's; larger ones overflowed torch's generator deep inside a run.
MAX_SEED = 2**32 - 1


def check_seed(seed: object) -> int:
    """The seed if it is an integer from 0 to MAX_SEED; ParameterError saying so otherwise."""
    if not is_integer(seed, 0, MAX_SEED):
        raise ParameterError(
            f"seed must be an integer from 0 to {MAX_SEED}, got {str(seed)[:40]!r}.",
            hint="the designer's default is 1.",
        )
    return seed


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

# --- precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# --- class imbalance

#: none: every image counts the same; balanced: each class's loss is weighted n / (k * n_class) (scikit-learn's
#: "balanced"), so every class weighs the same in total.
CLASS_WEIGHTS = ("none", "balanced")
#: uniform: each epoch is a shuffle of the training images; balanced: each epoch draws as many images, with
#: replacement, every class equally likely.
SAMPLERS = ("uniform", "balanced")
TASKS = ("auto", "single_label", "multilabel")


# --- training


def _is_cuda_device(value: object) -> bool:
    return isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit()


@dataclass(frozen=True)
class TrainConfig:
    """Train PyTorch Model's parameters (the designer's names and defaults) and how to run.

    Each field declares itself once (params.param): the checks, `imgtrain train`'s options, the studio's form and
    what a model directory records are built from these declarations."""

    epochs: int = param(5, "number of epochs", low=1, metavar="N", shapes_result=True)
    batch_size: int = param(16, "images per batch", low=1, metavar="N", shapes_result=True)
    learning_rate: float = param(
        0.001,
        "initial SGD learning rate",
        low=sys.float_info.epsilon,
        metavar="LR",
        shapes_result=True,
        hint="the designer's default is 0.001.",
    )
    seed: int = param(
        1,
        "random seed; with --repeatable the same seed gives bit-identical weights",
        low=0,
        high=MAX_SEED,
        metavar="N",
        shapes_result=True,
        hint="the designer's default is 1.",
    )
    patience: int = param(
        3, "epochs without a better validation loss before stopping", low=1, metavar="N", shapes_result=True
    )
    warmup_epochs: int = param(0, "epochs of linear learning-rate warmup", low=0, metavar="N", shapes_result=True)
    freeze_epochs: int = param(
        0,
        "fine-tuning: train only the new classifier head for the first N epochs (the pretrained backbone's weights "
        "and BatchNorm statistics stay as they are); 0 trains everything from the start, as the designer does",
        low=0,
        metavar="N",
        shapes_result=True,
    )
    head_lr_scale: float = param(
        10.0,
        "fine-tuning: on a pretrained backbone the new classifier head learns at X times --learning-rate, the "
        "backbone at --learning-rate (default 10: measured, fine-tuning then beats training from scratch in 5 epochs "
        "on few images; see docs/performance.md, Transfer); 1 = one rate for all, as the designer does. Ignored when "
        "training from scratch",
        low=0,
        above=True,
        high=1000,
        metavar="X",
        shapes_result=True,
        hint="1 trains the head at the backbone's rate (the designer's behaviour).",
    )
    print_frequency: int = param(10, "report progress every N batches", low=1, metavar="N")
    device: str = param(
        "auto",
        "auto, cpu or cuda (auto picks a GPU when there is one); cuda:N picks one GPU",
        choices=("auto", "cpu", "cuda"),
        accepts=_is_cuda_device,
        expected="auto, cpu, cuda or cuda:N",
    )
    precision: str = param(
        "auto",
        "arithmetic. auto = the fastest that keeps the --repeatable promise: on a CPU fp32 (bf16 there is "
        "not bit-repeatable), on a GPU bf16 (fp16 without bf16) with deterministic kernels; with --no-repeatable, "
        "bf16 wherever one training step of this model at this image size measured faster than fp32 (at least "
        "1.1x). A resumed run keeps its precision",
        choices=PRECISIONS,
    )
    repeatable: bool = param(
        True,
        "same seed and inputs -> bit-identical weights (and --resume ends as an uninterrupted run). "
        "--no-repeatable trades this for speed: bf16 on CPUs with native bf16 where measured faster, cuDNN "
        "autotuning on GPUs; resume then restores the exact saved state but the rest of the run may differ in the "
        "last bits",
        shapes_result=True,
    )
    workers: int | None = param(
        None,
        "worker processes; 0 = all work in this process (default: 0 on 2 cores or fewer, else up to 4)",
        low=0,
        metavar="N",
        studio=False,
    )
    cache: bool = param(
        True,
        "keep images that the transformation's resize shrinks at least 4x (camera photos) decoded and resized "
        "in the decoded-image cache, so epochs after the first read them instead of decoding them again; the "
        "weights are the same with or without it. The cache is in $IMGTRAIN_CACHE_DIR, else "
        "~/.cache/imgtrain/decoded; delete it any time",
    )
    class_weights: str = param(
        "none",
        "class imbalance: balanced weighs each class's loss by n / (classes x images of the class), so every "
        "class counts the same in total (the validation loss that picks the best epoch is weighted the same way); "
        "none counts every image the same, as the designer does",
        choices=CLASS_WEIGHTS,
        shapes_result=True,
        hint="balanced helps when some classes have far fewer images than others.",
    )
    task: str = param(
        "auto",
        "auto trains as the data says: one softmax over the classes, or one sigmoid per class for a multi-label "
        "image directory; multilabel gives single-label data one sigmoid per class too (each class judged on its "
        "own, so the model may answer none of them or several, with a threshold per class)",
        choices=TASKS,
        shapes_result=True,
        hint="leave auto unless single-label images should train a multi-label model.",
    )
    sampler: str = param(
        "uniform",
        "class imbalance: balanced draws each epoch's images with replacement, every class equally likely "
        "(minority images repeat, majority images are left out); uniform shuffles the training images, as the "
        "designer does",
        choices=SAMPLERS,
        shapes_result=True,
        hint="balanced helps when some classes have far fewer images than others.",
    )
    label_smoothing: float = param(
        0.0,
        "train towards 1 - S on the true class and S spread over all classes (Szegedy et al. 2016), instead of "
        "all on the true class, so the network is not pushed to ever larger logits; 0.1 is the usual value in "
        "modern recipes (torchvision's, timm's). The validation loss that picks the best epoch is not smoothed; "
        "0 = plain cross-entropy, as the designer does",
        low=0,
        high=0.9,
        metavar="S",
        shapes_result=True,
    )
    calibrate: bool = param(
        True,
        "after training, fit a temperature to the validation set so the model's confidences match how often "
        "it is right (temperature scaling, Guo et al. 2017); stored in the model directory and used by score, serve, "
        "export and the studio. Rankings and labels do not change. No temperature (T = 1, and the log says why) "
        "below 50 validation images, when every validation image is already right, or when temperatures fitted on "
        "4/5 of the validation images do not lower the log loss on the other 1/5 (5-fold); T lies in 0.1-20 "
        "(docs/trust.md)",
    )
    resume: bool = param(False, "continue an interrupted run in --out from its last checkpoint", studio=False)
    overwrite: bool = param(False, "replace --out if it holds a model or an interrupted run", studio=False)
    progress: bool = param(True, "show progress bars (on a terminal)", studio=False)
    log_dir: str | None = param(
        None,
        "write TensorBoard event files here (loss, accuracy, learning rate, images/s "
        "per epoch); view with `tensorboard --logdir DIR`",
        metavar="DIR",
        studio=False,
    )
    mlflow: bool = param(
        False,
        "also log parameters and per-epoch metrics to MLflow (needs mlflow installed; "
        "MLFLOW_TRACKING_URI, else ./mlruns)",
        studio=False,
    )

    def __post_init__(self) -> None:
        check(self)
        if self.resume and self.overwrite:
            raise ParameterError("resume and overwrite exclude each other.", hint="choose one.")

    def hyperparameters(self) -> dict[str, Any]:
        """The parameters that shape the result (not how the run is executed)."""
        return shaping(self)


# --- scoring and serving

SCORE_BATCH_SIZE = 32
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

    def __post_init__(self) -> None:
        check_min_confidence(self.min_confidence)
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
