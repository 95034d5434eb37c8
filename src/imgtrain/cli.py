"""The `imgtrain` command: one subcommand per designer module, a thin layer over the library."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import (CATALOG_FAMILY, DEFAULT_MODEL, EXPLAIN_COUNT, FAMILIES, MAX_SEED, PRECISIONS,
                     SCORE_BATCH_SIZE, ServeConfig, TrainConfig, TransformSpec)
from .errors import ImgtrainError, TrainingInterrupted
from .interrupts import Terminated, terminate_cleanly
from .params import declared

#: When this module was imported: as the `imgtrain` command, within a tenth of a second of the process's start.
IMPORTED = time.monotonic()

class _ProgressAwareHandler(logging.Handler):
    """Log lines printed above a running progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, except where there is none to show (required options, None)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


def _number(low: float, high: float, kind: type = float):
    """An argparse type: a finite number of `kind` from `low` to `high` (nan, inf and 1e400 refused)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
        if not low <= value <= high:  # also false for nan
            raise argparse.ArgumentTypeError(f"must be from {kind(low)} to {kind(high)}, got {text[:40]}")
        return value

    return parse


WORKERS_HELP = "worker processes; 0 = all work in this process"


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


MIN_CONFIDENCE_HELP = ("answer 'unknown' for an image whose most likely class has a probability below P (0 < P <= "
                       "1), instead of a class it is unsure of; the probabilities are the calibrated ones (see train "
                       "--calibrate)")


def _add_declared_options(p: argparse.ArgumentParser, cls: type) -> None:
    """One option per declared field of the parameter dataclass `cls` (params.param): its default, help, metavar
    and choices from the declaration. Integers with a closed range are checked here (wrong usage, exit 2); every
    other value by the library, whose message names the parameter (exit 1)."""
    for declared_field in declared(cls):
        p_ = declared_field.param
        options: dict[str, Any] = {"default": declared_field.default, "help": p_.help.replace("%", "%%")}
        if declared_field.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif p_.choices and p_.accepts is None:
            options["choices"] = p_.choices
        elif declared_field.kind in (int, float):
            closed = declared_field.kind is int and p_.low is not None and p_.high is not None
            options["type"] = _number(p_.low, p_.high, int) if closed else declared_field.kind
        if p_.metavar and "choices" not in options and declared_field.kind is not bool:
            options["metavar"] = p_.metavar
        p.add_argument(declared_field.flag, **options)


def _common() -> argparse.ArgumentParser:
    # Accept --debug / --quiet after the subcommand too, without overriding the ones given before it.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="log warnings and errors only")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `imgtrain` command."""
    parser = argparse.ArgumentParser(
        prog="imgtrain",
        description="Azure ML designer's image-classification modules, on your own machine.",
        formatter_class=_Formatter,
        epilog="Pipeline: convert -> split -> transform init -> train -> score -> evaluate.\n"
        "Run `imgtrain COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"imgtrain {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks on errors")
    parser.add_argument("--quiet", action="store_true", default=False, help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common()]
    for add in (_add_convert, _add_split, _add_audit, _add_transform, _add_architectures, _add_model, _add_models,
                _add_train, _add_score, _add_evaluate, _add_explain, _add_export, _add_serve, _add_studio, _add_demo):
        add(sub, common)
    return parser


def _add_convert(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `convert` subcommand."""
    p = sub.add_parser("convert", parents=common, formatter_class=_Formatter,
                       help="Convert to Image Directory: folder, archive, manifest or designer directory -> image directory",
                       description="Convert images into an imgtrain image directory. SRC is a folder in class-sub-folder "
                       "layout (SRC/<class>/...), a flat folder (unlabeled), a .zip/.tar/.tar.gz/.tgz/.tar.bz2 archive "
                       "of either, a CSV or JSON-lines manifest (path,label; paths relative to the manifest), or an "
                       "image directory written by the Azure ML designer (_meta.yaml + images.lst). SRC may also be "
                       "in object storage: s3://bucket/prefix, az://container/prefix, gs://bucket/prefix or any "
                       "fsspec URL (a prefix, an archive or a manifest with keys relative to it), copied in with "
                       "retries. Credentials come from the environment: the AWS variables or profile "
                       "(AWS_ENDPOINT_URL for MinIO and other S3-compatible stores), AZURE_STORAGE_CONNECTION_STRING "
                       "(BlobEndpoint for Azurite), Google's application default credentials. Needs "
                       "pip install 'imgtrain[s3]', '[azure]' or '[gcs]'.")
    p.add_argument("src", metavar="SRC", help="folder, archive, manifest or designer image directory, or a URL")
    p.add_argument("out", metavar="OUT", help="image directory to create")
    p.add_argument("--skip-invalid", action="store_true",
                   help="leave unreadable images out (listed in OUT/convert-report.json) instead of failing")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let a manifest name files outside its own folder (absolute paths, ..); refused otherwise")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--workers", type=_count, default=None, metavar="N", help=WORKERS_HELP + " (default: one per CPU core)")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="also keep photos that the default transformation's resize (256) shrinks at least 4x resized "
                   "in the decoded-image cache, so the first epoch of training and scoring start from them (see "
                   "train --help)")
    p.set_defaults(func=_cmd_convert)


def _add_split(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `split` subcommand."""
    p = sub.add_parser("split", parents=common, formatter_class=_Formatter,
                       help="Split Image Directory: one image directory -> two, stratified by class",
                       description="Split an image directory: OUT1 gets floor(fraction x n) images, OUT2 the rest.")
    p.add_argument("src", metavar="SRC", help="image directory to split")
    p.add_argument("out1", metavar="OUT1", help="first part (e.g. training)")
    p.add_argument("out2", metavar="OUT2", help="second part (e.g. validation)")
    p.add_argument("--fraction", type=float, default=0.9, help="share of images in OUT1, 0-1 (count rounded down)")
    p.add_argument("--seed", type=_number(0, MAX_SEED, int), metavar="N", default=1,
                   help="random seed; the same seed gives the same split")
    p.add_argument("--stratify", action=argparse.BooleanOptionalAction, default=True,
                   help="keep each class's share the same in both parts")
    p.add_argument("--overwrite", action="store_true", help="replace OUT1 / OUT2 if they exist")
    p.set_defaults(func=_cmd_split)


def _add_audit(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `audit` subcommand."""
    p = sub.add_parser("audit", parents=common, formatter_class=_Formatter,
                       help="audit an image directory before training: duplicates, leakage, label errors, imbalance",
                       description="Read every image of IMAGEDIR (and of each --against directory) once and list: exact "
                       "duplicates (identical bytes); near-duplicates (resized, re-encoded or slightly cropped copies, "
                       "by perceptual hash); leakage (copies in IMAGEDIR and in an --against directory, such as train "
                       "and validation); copies with conflicting labels; images per class and the imbalance ratio; "
                       "tiny images, odd aspect ratios and size outliers; likely label errors (5-fold logistic "
                       "regression on thumbnails, ranked by cleanlab). Writes OUT/audit.json and a self-contained "
                       "OUT/audit.html with thumbnails; prints a summary.")
    p.add_argument("images", metavar="IMAGEDIR", help="image directory to audit (imgtrain convert)")
    p.add_argument("--against", nargs="+", default=[], metavar="DIR",
                   help="other image directories (validation, test) to look for copies of IMAGEDIR's images in")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for audit.json and audit.html")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when leakage or conflicting labels are found (for CI pipelines)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=True,
                   help="look for likely label errors (--no-labels skips the k-fold check)")
    p.add_argument("--seed", type=_number(0, MAX_SEED, int), default=0, metavar="N", help="seed of the k-fold split")
    p.add_argument("--workers", type=_count, default=None, metavar="N", help=WORKERS_HELP + " (default: one per core)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_cmd_audit)


def _add_transform(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `transform` subcommand."""
    p = sub.add_parser("transform", parents=common, formatter_class=_Formatter,
                       help="Init / Apply Image Transformation",
                       description="Create a transformation file, or apply one to an image directory.")
    tsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = tsub.add_parser("init", parents=common, formatter_class=_Formatter,
                        help="Init Image Transformation: write a transformation file",
                        description="Write a transformation file with the designer's Init Image Transformation options.")
    t.add_argument("out", metavar="OUT", help="transformation file to write (a folder gets OUT/transform.json)")
    _add_declared_options(t, TransformSpec)
    t.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    t.set_defaults(func=_cmd_transform_init)

    t = tsub.add_parser("apply", parents=common, formatter_class=_Formatter,
                        help="Apply Image Transformation: write a transformed image directory",
                        description="Apply a transformation file to every image of an image directory; images are written as PNG.")
    t.add_argument("spec", metavar="SPEC", help="transformation file from `imgtrain transform init`")
    t.add_argument("src", metavar="SRC", help="image directory to transform")
    t.add_argument("out", metavar="OUT", help="image directory to create")
    t.add_argument("--mode", choices=["training", "inference"], default="training",
                   help="inference drops every random transform")
    t.add_argument("--seed", type=_number(0, MAX_SEED, int), default=1, help="seed of the random transforms")
    t.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    t.add_argument("--workers", type=_count, default=None, metavar="N", help=WORKERS_HELP + " (default: one per CPU core)")
    t.set_defaults(func=_cmd_transform_apply)


def _add_architectures(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `architectures` subcommands (densenet, resnet)."""
    for family, option, option_help in (
        ("densenet", "--memory-efficient", "trade speed for memory with gradient checkpointing"),
        ("resnet", "--zero-init-residual", "zero-initialise the last BatchNorm of each residual branch"),
    ):
        p = sub.add_parser(family, parents=common, formatter_class=_Formatter,
                           help=f"{'ResNet' if family == 'resnet' else 'DenseNet'}: create an untrained "
                           "model directory",
                           description=f"Create an untrained {family} model directory for `imgtrain train`. "
                           "Pretrained ImageNet weights come from --weights FILE, or from torch's cache "
                           "($TORCH_HOME/hub/checkpoints), where they are downloaded once from torchvision's official "
                           "URL and checked against its SHA-256. IMGTRAIN_WEIGHTS_URL replaces the base of that URL "
                           "(a mirror; hashes still checked); IMGTRAIN_OFFLINE=1 or --offline never downloads.")
        p.add_argument("out", metavar="OUT", help="model directory to create")
        p.add_argument("--model-name", choices=FAMILIES[family], default=DEFAULT_MODEL[family], help="architecture")
        p.add_argument(option, action="store_true", help=option_help)
        _add_pretrained_options(p)
        p.set_defaults(func=_cmd_architecture, family=family, option=option[2:].replace("-", "_"))


def _add_model(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `model` subcommand: any network of the catalog."""
    p = sub.add_parser("model", parents=common, formatter_class=_Formatter,
                       help="any torchvision network with ImageNet weights (EfficientNet, ConvNeXt, ViT, ...) -> "
                       "untrained model directory",
                       description="Create an untrained model directory for `imgtrain train` from any network of the "
                       "catalog (`imgtrain models` lists them). The classifier head is sized to the training classes; "
                       "pretrained weights are found and downloaded as for `imgtrain resnet`.")
    p.add_argument("out", metavar="OUT", help="model directory to create")
    p.add_argument("--model-name", required=True, metavar="NAME", help="a network of `imgtrain models`")
    _add_pretrained_options(p)
    p.set_defaults(func=_cmd_architecture, family=CATALOG_FAMILY, option=None)


def _add_models(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `models` subcommand: the catalog as a table."""
    p = sub.add_parser("models", parents=common, formatter_class=_Formatter,
                       help="list the model catalog: parameters, ImageNet top-1, GFLOPs, weights, cached or not",
                       description="List every network `imgtrain model` can create, with torchvision's figures for "
                       "its ImageNet weights and whether they are already in torch's cache.")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.set_defaults(func=_cmd_models)


def _add_pretrained_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="start from ImageNet weights")
    p.add_argument("--weights", metavar="FILE", default=None,
                   help="ImageNet weights (.safetensors or .pth state dict); default: torch's cache, downloaded "
                   "when missing")
    p.add_argument("--offline", action="store_true",
                   help="never download: fail naming the file and the folder to put it in when it is not cached")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _add_train(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `train` subcommand."""
    p = sub.add_parser("train", parents=common, formatter_class=_Formatter,
                       help="Train PyTorch Model: untrained model + training/validation images -> trained model",
                       description="Train an untrained model directory. SGD (momentum 0.9, Nesterov, weight decay "
                       "1e-4), learning rate warmed up linearly for --warmup-epochs then decayed as "
                       "(lr - 1e-7)(1 - t)^2 + 1e-7 per epoch; the model of the epoch with the lowest validation "
                       "loss is saved; training stops when validation loss has not improved for --patience epochs.")
    p.add_argument("--model", required=True, metavar="DIR", help="untrained model directory (imgtrain resnet/densenet)")
    p.add_argument("--train", required=True, metavar="DIR", help="labeled training image directory")
    p.add_argument("--valid", required=True, metavar="DIR", help="labeled validation image directory")
    p.add_argument("--out", required=True, metavar="DIR", help="trained model directory to write")
    p.add_argument("--transform", metavar="SPEC", default=None,
                   help="transformation file (default: the designer's: resize 256, center crop 224, random "
                   "horizontal flip)")
    _add_declared_options(p, TrainConfig)
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="data-parallel workers on this machine (torch.distributed; gloo on CPU, NCCL on GPU); the "
                   "batch size is per worker and the learning rate is multiplied by the number of workers")
    p.add_argument("--nnodes", type=int, default=1, metavar="M", help="machines in the job")
    p.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's rank, 0 to M-1")
    p.add_argument("--master-addr", default="127.0.0.1", metavar="HOST", help="address of the node-rank-0 machine")
    p.add_argument("--master-port", type=_number(1, 65535, int), default=29500, metavar="PORT", help="free port on that machine")
    p.add_argument("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                   help="c10d rendezvous endpoint instead of --master-addr/--master-port")
    p.set_defaults(func=_cmd_train)


def _add_score(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `score` subcommand."""
    p = sub.add_parser("score", parents=common, formatter_class=_Formatter,
                       help="Score Image Model: trained model + image directory -> per-class probabilities",
                       description="Score every image of an image directory with a trained model, using the "
                       "model's own inference transformation. One row per image: id, path, source, label (when "
                       "the directory has labels), 'Scored Probabilities_<class>' per class, 'Scored Labels'.")
    p.add_argument("--model", required=True, metavar="DIR", help="trained model directory (imgtrain train)")
    p.add_argument("--data", required=True, metavar="DIR", help="image directory to score, a plain folder of images "
                   "(read as convert reads it, nothing copied), or the images under a remote prefix "
                   "(s3://bucket/prefix, az://container/prefix, ...: streamed, each object read when its batch is "
                   "scored); in a folder or prefix, class folders give the label column")
    p.add_argument("--out", required=True, metavar="FILE", help="scores file to write (.csv or .jsonl)")
    p.add_argument("--format", choices=["csv", "jsonl"], default=None,
                   help="file format (default: from the --out extension, else csv)")
    p.add_argument("--batch-size", type=int, default=SCORE_BATCH_SIZE, metavar="N", help="images per batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="arithmetic: auto = bf16 on GPUs, and on CPUs with native bf16 where one batch measured "
                   "faster than fp32; else fp32 (bf16 probabilities differ from fp32 in the 3rd-4th decimal)")
    p.add_argument("--workers", type=_count, default=None, metavar="N",
                   help=WORKERS_HELP + " (default: one per core for photos over 2 megapixels, where decoding is the "
                   "work; else 0 on 2 cores or fewer, up to 4 on more)")
    p.add_argument("--min-confidence", type=_number(1e-9, 1), default=None, metavar="P", help=MIN_CONFIDENCE_HELP
                   + "; a 'Best Guess' column keeps the top class")
    p.add_argument("--skip-invalid", action="store_true",
                   help="give unreadable images a row with an 'error' column instead of failing")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="read photos the resize shrinks at least 4x through the decoded-image cache (see train "
                   "--help), and keep them there for the next run; the scores are the same either way")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_score)


def _add_evaluate(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `evaluate` subcommand."""
    p = sub.add_parser("evaluate", parents=common, formatter_class=_Formatter,
                       help="Evaluate Model: scores -> accuracy, precision, recall, F1, confusion matrix",
                       description="Evaluate a scores file of a labeled image directory. Writes metrics.json, "
                       "confusion_matrix.json / .png, most_confident_errors.png and reliability.png (calibration: how "
                       "well the confidences match the accuracy, with its expected calibration error) to --out and "
                       "prints a summary.")
    p.add_argument("--scores", required=True, metavar="FILE", help="scores file from `imgtrain score`")
    p.add_argument("--out", required=True, metavar="DIR", help="report directory to write")
    p.add_argument("--model", default=None, metavar="DIR", help="the trained model that made the scores: adds Grad-CAM "
                   "explanations of its most confident errors and of some right answers (--out/explanations/, as "
                   "`imgtrain explain` writes them)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_evaluate)


def _add_explain(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `explain` subcommand."""
    p = sub.add_parser("explain", parents=common, formatter_class=_Formatter,
                       help="Grad-CAM heatmaps: what the model looked at in its errors and in right answers",
                       description="Score a labeled image directory with a trained model, then explain its most "
                       "confident errors and a seeded sample of its correct predictions with Grad-CAM heatmaps of the "
                       "predicted class (captum's LayerGradCam at the network's last spatial layer). Writes "
                       "OUT/explanations.json, OUT/heatmaps.safetensors, one overlay PNG per image and "
                       "OUT/explanations.png (a grid). `evaluate --model` adds the same to its report.")
    p.add_argument("--model", required=True, metavar="DIR", help="trained model directory (imgtrain train)")
    p.add_argument("--data", required=True, metavar="DIR", help="labeled image directory")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the explanations to")
    p.add_argument("--errors", type=_count, default=EXPLAIN_COUNT, metavar="N", help="most confident errors to explain")
    p.add_argument("--correct", type=_count, default=EXPLAIN_COUNT, metavar="N", help="correct predictions to explain (a seeded "
                   "random sample)")
    p.add_argument("--seed", type=_number(0, MAX_SEED, int), default=0, metavar="N", help="seed of the sample")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_cmd_explain)


def _add_export(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `export` subcommand."""
    p = sub.add_parser("export", parents=common, formatter_class=_Formatter,
                       help="trained model -> ONNX or TorchScript for other runtimes",
                       description="Export a trained model directory. The exported model takes float32 RGB images "
                       "in [0, 1], NCHW, resized and cropped as OUT/imgtrain-export.json describes (normalization "
                       "is inside), and returns per-class probabilities.")
    p.add_argument("model", metavar="MODELDIR", help="trained model directory (imgtrain train)")
    p.add_argument("out", metavar="OUT", help="folder to write (model.onnx or model.pt + imgtrain-export.json)")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="runtime format")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_cmd_export)


def _add_serve(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `serve` subcommand."""
    p = sub.add_parser("serve", parents=common, formatter_class=_Formatter,
                       help="real-time endpoint: POST /predict, GET /health, a web page at /",
                       description="Serve a trained model over HTTP: POST /predict with an uploaded image (multipart "
                       "field `file`) or JSON with base64 images ({\"images\": [...]} or the designer's "
                       "{\"Inputs\": {\"WebServiceInput0\": [{\"image\": ...}]}}); GET /health; a page to try "
                       "it at /; the API description at /docs.")
    p.add_argument("model", metavar="MODELDIR", help="trained model directory (imgtrain train)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=_number(1, 65535, int), default=8000, help="TCP port")
    p.add_argument("--max-upload-mb", type=_number(1e-6, 1e6), default=ServeConfig.max_upload_bytes / 2**20, metavar="MB",
                   help="largest request body accepted")
    p.add_argument("--max-pixels", type=_number(1, 2**40, int), default=ServeConfig.max_pixels, metavar="N",
                   help="largest image accepted (pixels)")
    p.add_argument("--max-batch", type=_number(1, 4096, int), default=ServeConfig.max_batch, metavar="N",
                   help="most images scored together")
    p.add_argument("--batch-wait-ms", type=_number(0, 60_000), default=ServeConfig.batch_wait_ms, metavar="MS",
                   help="how long a request waits for others to share its batch")
    p.add_argument("--decode-threads", type=_number(1, 256, int), default=ServeConfig.decode_threads, metavar="N",
                   help="images decoded at once, off the event loop (each may hold up to --max-pixels x 3 bytes)")
    p.add_argument("--min-confidence", type=_number(1e-9, 1), default=ServeConfig.min_confidence, metavar="P",
                   help=MIN_CONFIDENCE_HELP + "; `best_guess` keeps the top class and `unknown` says so")
    p.set_defaults(func=_cmd_serve)


def _add_demo(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `demo` subcommand."""
    p = sub.add_parser("demo", parents=common, formatter_class=_Formatter,
                       help="run the whole pipeline on scikit-learn's bundled digits",
                       description="Turn scikit-learn's digits into an image directory, split it 90/10, create a "
                       "resnet18 (no pretrained weights), train it with the module's defaults and a transformation "
                       "suited to 32 px images, score the held-out part and evaluate it.")
    p.add_argument("--out", default="demo-output", help="folder for every demo output (replaced on each run)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs, metavar="N", help="training epochs")
    p.set_defaults(func=_cmd_demo)


def _waited(args: argparse.Namespace) -> str:
    """The time the user has waited for this command so far."""
    return f"{time.monotonic() - args.started:.1f} s in all"


def _describe(directory) -> str:
    kind = f"{len(directory.classes)} classes" if directory.labeled else "unlabeled"
    return f"{directory.root}: {len(directory)} images, {kind}"


def _cmd_convert(args: argparse.Namespace) -> int:
    from .data.convert import convert

    directory = convert(args.src, args.out, overwrite=args.overwrite, skip_invalid=args.skip_invalid,
                        allow_outside=args.allow_outside_paths, workers=args.workers, cache=args.cache)
    print(f"wrote image directory {_describe(directory)} ({_waited(args)})")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from .data.split import split

    first, second = split(args.src, args.out1, args.out2, fraction=args.fraction, seed=args.seed,
                          stratify=args.stratify, overwrite=args.overwrite)
    print(f"wrote image directory {_describe(first)}")
    print(f"wrote image directory {_describe(second)}")
    return 0


def _cmd_transform_init(args: argparse.Namespace) -> int:
    from .data.transform_file import init_transform

    spec = TransformSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TransformSpec)})
    path = init_transform(args.out, spec, overwrite=args.overwrite)
    print(f"wrote transformation file {path}")
    return 0


def _cmd_transform_apply(args: argparse.Namespace) -> int:
    from .data.transforms import apply_transform

    directory = apply_transform(args.spec, args.src, args.out, mode=args.mode, seed=args.seed,
                                overwrite=args.overwrite, workers=args.workers)
    print(f"wrote image directory {_describe(directory)} ({_waited(args)})")
    return 0


def _cmd_architecture(args: argparse.Namespace) -> int:
    from .models.architectures import Architecture, create_model_directory

    options = {args.option: getattr(args, args.option)} if args.option else {}
    architecture = Architecture(args.family, args.model_name, options)
    model = create_model_directory(args.out, architecture, pretrained=args.pretrained, weights=args.weights,
                                   overwrite=args.overwrite, offline=args.offline)
    print(f"wrote untrained model directory {model.path}: {args.model_name}, "
          f"{'pretrained' if model.pretrained else 'not pretrained'}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import json

    from .models.catalog import catalog_rows
    from .models.weights import imagenet_weights

    rows = [{**row, "cached": imagenet_weights(row["model"]).path.is_file()} for row in catalog_rows()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'model':<20} {'params (M)':>10} {'top-1 %':>8} {'GFLOPs':>8} {'weights MB':>10} {'min input':>9}  cached")
    for r in rows:
        print(f"{r['model']:<20} {r['params_m']:>10.1f} {r['top1']:>8.2f} {r['gflops']:>8.2f} {r['size_mb']:>10.1f} "
              f"{'x'.join(map(str, r['min_size'][::-1])):>9}  {'yes' if r['cached'] else 'no'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.distributed import LaunchOptions, launch
    from .training.loop import train

    config = TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)})
    options = LaunchOptions(args.nproc_per_node, args.nnodes, args.node_rank, args.master_addr, args.master_port,
                            args.rdzv_endpoint)
    if options.needed and "RANK" not in os.environ:  # this process launches; the workers train (rank 0 reports)
        launch(_train_worker, (args,), options)
        return 0
    result = train(args.model, args.train, args.valid, args.out, config, transform=args.transform)
    if os.environ.get("RANK", "0") != "0":
        return 0
    best = result.best
    print(f"wrote trained model directory {result.out}: best epoch {best['epoch']} of {len(result.history)}, "
          f"validation loss {best['val_loss']:.4f}, top-1 accuracy {best['val_top1']:.4f}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from .inference.scoring import load_model, score_to_file

    model = load_model(args.model, args.device, args.precision)
    path, rows = score_to_file(model, args.data, args.out, fmt=args.format, batch_size=args.batch_size,
                               workers=args.workers, skip_invalid=args.skip_invalid,
                               overwrite=args.overwrite, cache=args.cache, min_confidence=args.min_confidence)
    print(f"wrote {rows} scores to {path}")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from .auditing.run import audit, summary_text

    report = audit(args.images, args.against, args.out, overwrite=args.overwrite, workers=args.workers,
                   check_labels=args.labels, seed=args.seed)
    print(summary_text(report))
    print(f"report: {os.path.join(args.out, 'audit.html')}")
    found = report["summary"]["leakage_groups"] + report["summary"]["conflicting_label_groups"]
    if args.strict and found:
        print(f"imgtrain audit: --strict: {found} groups of leaked or conflicting copies; see the report.",
              file=sys.stderr)
        return 1
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .inference.evaluation import evaluate, summary

    metrics = evaluate(args.scores, args.out, overwrite=args.overwrite, model=args.model)
    print(summary(metrics))
    print(f"report: {args.out}")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from .inference.explain import explain

    document = explain(args.model, args.data, args.out, errors=args.errors, correct=args.correct, seed=args.seed,
                       overwrite=args.overwrite)
    wrong = sum(e["error"] for e in document["images"])
    print(f"explained {len(document['images'])} images ({wrong} errors) with Grad-CAM at "
          f"{document['target_layer']} of {document['architecture']}")
    print(f"report: {os.path.join(args.out, 'explanations.png')}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .models.export import export_model

    out = export_model(args.model, args.out, fmt=args.format, overwrite=args.overwrite)
    print(f"wrote {args.format} export {out}")
    return 0


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    """The endpoint's limits from serve's options."""
    return ServeConfig(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                       max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, decode_threads=args.decode_threads,
                       min_confidence=args.min_confidence)


def _add_studio(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `studio` subcommand."""
    p = sub.add_parser("studio", parents=common, formatter_class=_Formatter,
                       help="the designer's pipeline in a browser: build, run, watch and resume training",
                       description="A local web app over the images in --root: pick a folder, set the designer's "
                       "parameters, submit, watch loss and accuracy live, stop and resume, open the evaluation. Each "
                       "run writes the ordinary outputs (image directories, model directory, scores, evaluation) to "
                       "ROOT/imgtrain-runs/run-N; the run registry survives restarts. Prints the URL to open, with "
                       "its token.")
    p.add_argument("--root", required=True, metavar="DIR", help="the folder the studio reads and writes under")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (another than this machine's own "
                   "only when you mean it: anyone with the token could then run jobs)")
    p.add_argument("--port", type=_number(1, 65535, int), default=8765, help="TCP port")
    p.add_argument("--token", default=None, help="the access token (default: a new random one each start)")
    p.set_defaults(func=_cmd_studio)


def _cmd_studio(args: argparse.Namespace) -> int:
    from .studio.app import studio

    studio(args.root, args.host, args.port, args.token)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serving.serve import serve

    serve(args.model, args.host, args.port, _serve_config(args))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.out, epochs=args.epochs)
    print(f"image directory:      {_describe(result.images)}")
    print(f"training part:        {_describe(result.train)}")
    print(f"held-out part:        {_describe(result.valid)}")
    print(f"transformation file:  {result.transform}")
    print(f"trained model:        {result.model}")
    print(f"scores:               {result.scores}")
    print(f"evaluation report:    {result.report}")
    print(f"held-out accuracy:    {result.metrics['accuracy']:.4f} "
          f"({result.metrics['images']} images, {result.seconds:.0f} s in all)")
    print(f"next: imgtrain score --model {result.model} --data YOUR_IMAGE_DIRECTORY --out scores.csv")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 error, 2 wrong usage)."""
    started = IMPORTED if argv is None else time.monotonic()  # argv None: this is the command, timed from its start
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on wrong usage, 0 on --help / --version
        return int(exc.code or 0)
    args.started = started
    code = _execute(args)
    if argv is None:
        # The process ends next. Measured: with torch loaded, the garbage collector's passes over every module at
        # exit took 2.2 s of silence after the last line; frozen, 0.5 s (the memory goes back at exit anyway).
        gc.freeze()
    return code


def _train_worker(args: argparse.Namespace) -> None:
    """One worker of a distributed `train`, started by the elastic agent: the same command, in this process."""
    code = _execute(args)
    if code:
        raise SystemExit(code)


#: The commands whose library code imports torch (the others never load it).
LOADS_TORCH = {_cmd_transform_apply, _cmd_architecture, _cmd_models, _cmd_train, _cmd_score, _cmd_evaluate,
               _cmd_explain, _cmd_export, _cmd_serve, _cmd_demo}
NOISY_LOGGERS = ("azure", "botocore", "aiobotocore", "s3fs", "adlfs", "gcsfs", "urllib3", "fsspec")


def _execute(args: argparse.Namespace) -> int:
    """Run a parsed command with logging set up; errors become a message and an exit status."""
    handler = _ProgressAwareHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    worker = os.environ.get("RANK", "0") != "0"  # distributed workers other than rank 0 only warn
    logging.basicConfig(level=logging.WARNING if args.quiet or worker else logging.INFO, handlers=[handler],
                        force=True)
    for chatty in NOISY_LOGGERS:  # storage SDKs log every request at INFO, headers included
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if args.func in LOADS_TORCH and "torch" not in sys.modules:  # the first line, before seconds of importing
        logging.getLogger(__name__).info("%s: loading torch", args.command)
    try:
        with terminate_cleanly():
            return args.func(args)
    except ImgtrainError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc.cli_text()}", file=sys.stderr)
        return 128 + exc.signum if isinstance(exc, TrainingInterrupted) else 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `imgtrain models | head`: the reader has gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Terminated:
        print("error: terminated (SIGTERM); outputs are as they were before this command", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as exc:  # never a bare traceback for users; --debug shows it
        if args.debug:
            traceback.print_exc()
        print(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
