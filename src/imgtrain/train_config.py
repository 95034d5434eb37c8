"""Train PyTorch Model's parameters (`TrainConfig`), the seeds' range, the recipes and the other choices a training
run is declared with, importable without torch; `config` re-exports them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from .errors import ParameterError
from .params import check, is_integer, param, shaping

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

# --- training recipes

#: What each recipe gives the options left unset (None). `modern` keeps only the pieces that measured better on
#: real ImageNet features and from scratch (docs/performance.md, "Training recipes"; the rest are written there).
RECIPES: dict[str, dict[str, Any]] = {
    "designer": {
        "optimizer": "sgd",
        "augment": "none",
        "mixup": 0.0,
        "cutmix": 0.0,
        "label_smoothing": 0.0,
        "ema": 0.0,
    },
    "modern": {
        "optimizer": "adamw",
        "augment": "none",
        "mixup": 0.0,
        "cutmix": 0.0,
        "label_smoothing": 0.0,
        "ema": 0.0,
    },
}
OPTIMIZERS = ("sgd", "adamw")
AUGMENTS = ("none", "trivialaugment", "randaugment")


def _recipe_param(name: str, what: str, **declaration: Any) -> Any:
    """A parameter the recipe fills when left unset (None): its help ends with each recipe's value; it shapes the
    result and is an option of the CLI only (the studio offers the recipe)."""
    values = ", ".join(f"{recipe} {table[name]}" for recipe, table in RECIPES.items())
    return param(None, f"{what} (default: the --recipe's: {values})", shapes_result=True, studio=False, **declaration)


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
        "and BatchNorm statistics stay as they are); 0 trains everything from the start, as the designer does. Ignored "
        "when training from scratch",
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
    recipe: str = param(
        "designer",
        "designer: the Azure designer's 2019 recipe (SGD with Nesterov momentum, polynomial decay, nothing more); "
        "modern: AdamW with a cosine decay, the one piece of the field's recipes that measured better on average, "
        "fine-tuning real ImageNet features and from scratch at equal epochs (TrivialAugment, mixup, cutmix, label "
        "smoothing and the moving average did not, and stay options of their own; docs/performance.md, Training "
        "recipes). An option given explicitly overrides its recipe's value",
        choices=tuple(RECIPES),
        shapes_result=True,
    )
    optimizer: str = _recipe_param(  # None until __post_init__ fills in the recipe's
        "optimizer",
        "sgd: SGD with Nesterov momentum 0.9, weight decay 1e-4 and polynomial decay (the designer's); adamw: "
        "AdamW, weight decay 0.05, cosine decay; both after --warmup-epochs of linear warmup",
        choices=OPTIMIZERS,
    )
    augment: str = _recipe_param(
        "augment",
        "automatic augmentation of each training image after the transformation: trivialaugment "
        "(TrivialAugment Wide: one random operation of random strength) or randaugment (two operations, "
        "magnitude 9); none",
        choices=AUGMENTS,
    )
    mixup: float = _recipe_param(
        "mixup",
        "mixup: blend pairs of training images and their labels, weights drawn from Beta(A, A); 0 = off",
        low=0,
        high=10,
        metavar="A",
    )
    cutmix: float = _recipe_param(
        "cutmix",
        "cutmix: paste a box of another training image in, labels mixed by area, Beta(A, A); 0 = off; with "
        "mixup too, each batch gets one of them",
        low=0,
        high=10,
        metavar="A",
    )
    label_smoothing: float = _recipe_param(
        "label_smoothing",
        "train towards 1 - S on the true class and S spread over all classes (Szegedy et al. 2016), so the "
        "network is not pushed to ever larger logits; the validation loss that picks the best epoch is not "
        "smoothed",
        low=0,
        high=0.9,
        metavar="S",
    )
    ema: float = _recipe_param(
        "ema",
        "keep an exponential moving average of the weights with this decay (warmed up: min(D, (1+n)/(10+n)) "
        "after n steps) and validate and save it instead of the last weights; 0 = off",
        low=0,
        high=0.99999,
        metavar="D",
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
        if self.recipe in RECIPES:  # else check() below says so
            for name, value in RECIPES[self.recipe].items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)  # frozen: the recipe fills what was left unset
        check(self)
        if self.resume and self.overwrite:
            raise ParameterError("resume and overwrite exclude each other.", hint="choose one.")

    def hyperparameters(self) -> dict[str, Any]:
        """The parameters that shape the result (not how the run is executed)."""
        return shaping(self)
