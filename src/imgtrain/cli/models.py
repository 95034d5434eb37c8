"""The model subcommands: densenet / resnet, model, models (the catalog), export."""

from __future__ import annotations

import argparse

from ..config import CATALOG_FAMILY, DEFAULT_MODEL, FAMILIES
from ..deploy.formats import (
    CALIBRATION_IMAGES,
    CHECK_IMAGES,
    FORMAT_HELP,
    FORMATS,
    INT8_FORMATS,
    MAX_CALIBRATION_IMAGES,
    NOT_CHECKED_COREML,
)
from .options import Formatter, number


def add_architectures(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `architectures` subcommands (densenet, resnet)."""
    for family, option, option_help in (
        ("densenet", "--memory-efficient", "trade speed for memory with gradient checkpointing"),
        ("resnet", "--zero-init-residual", "zero-initialise the last BatchNorm of each residual branch"),
    ):
        p = sub.add_parser(
            family,
            parents=common,
            formatter_class=Formatter,
            help=f"{'ResNet' if family == 'resnet' else 'DenseNet'}: create an untrained model directory",
            description=f"Create an untrained {family} model directory for `imgtrain train`. "
            "Pretrained ImageNet weights come from --weights FILE, or from torch's cache "
            "($TORCH_HOME/hub/checkpoints), where they are downloaded once from torchvision's official "
            "URL and checked against its SHA-256. IMGTRAIN_WEIGHTS_URL replaces the base of that URL "
            "(a mirror; hashes still checked); IMGTRAIN_OFFLINE=1 or --offline never downloads.",
        )
        p.add_argument("out", metavar="OUT", help="model directory to create")
        p.add_argument("--model-name", choices=FAMILIES[family], default=DEFAULT_MODEL[family], help="architecture")
        p.add_argument(option, action="store_true", help=option_help)
        add_pretrained_options(p)
        p.set_defaults(loads_torch=True, func=cmd_architecture, family=family, option=option[2:].replace("-", "_"))


def add_model(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `model` subcommand: any network of the catalog."""
    p = sub.add_parser(
        "model",
        parents=common,
        formatter_class=Formatter,
        help="any torchvision or timm network with ImageNet weights (EfficientNet, ConvNeXt, ViT, ...) -> "
        "untrained model directory",
        description="Create an untrained model directory for `imgtrain train` from any network of the "
        "catalogs: torchvision's (`imgtrain models`) or timm's as timm/NAME (`imgtrain models --source timm`, "
        "needs `pip install 'imgtrain[timm]'`). The classifier head is sized to the training classes. torchvision's "
        "pretrained weights are found and downloaded as for `imgtrain resnet`; timm's come from the Hugging Face "
        "Hub (HF_ENDPOINT for a mirror) into torch's cache, checked against the SHA-256 the Hub states. The input "
        "normalization is the weights' own: timm's configuration, or a .safetensors --weights file's "
        '"mean" and "std" metadata.',
    )
    p.add_argument("out", metavar="OUT", help="model directory to create")
    p.add_argument(
        "--model-name",
        required=True,
        metavar="NAME",
        help="a network of `imgtrain models` (resnet50, efficientnet_b0, ...), or timm/NAME for a timm network "
        "(timm/efficientnet_lite0, timm/convnext_nano.in12k_ft_in1k: a tag after the dot picks its weights)",
    )
    add_pretrained_options(p)
    p.set_defaults(loads_torch=True, func=cmd_architecture, family=CATALOG_FAMILY, option=None)


def add_models(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `models` subcommand: the catalog as a table."""
    p = sub.add_parser(
        "models",
        parents=common,
        formatter_class=Formatter,
        help="list the model catalog: parameters, ImageNet top-1, GFLOPs, weights, cached or not",
        description="List every network `imgtrain model` can create, with torchvision's figures for "
        "its ImageNet weights and whether they are already in torch's cache; with --source timm, timm's "
        "pretrained networks with what timm says of them (input size, crop, classes pretrained on, licence).",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--source", choices=["torchvision", "timm"], default="torchvision", help="which catalog to list")
    p.set_defaults(loads_torch=True, func=cmd_models)


def add_pretrained_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pretrained", action=argparse.BooleanOptionalAction, default=True, help="start from ImageNet weights"
    )
    p.add_argument(
        "--weights",
        metavar="FILE",
        default=None,
        help="ImageNet weights (.safetensors or .pth state dict); default: torch's cache, downloaded when missing",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="never download: fail naming the file and the folder to put it in when it is not cached",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def cmd_architecture(args: argparse.Namespace) -> int:
    from ..models.architectures import Architecture, create_model_directory

    options = {args.option: getattr(args, args.option)} if args.option else {}
    architecture = (
        Architecture.from_catalog(args.model_name)
        if args.family == CATALOG_FAMILY
        else Architecture(args.family, args.model_name, options)
    )
    model = create_model_directory(
        args.out,
        architecture,
        pretrained=args.pretrained,
        weights=args.weights,
        overwrite=args.overwrite,
        offline=args.offline,
    )
    print(
        f"wrote untrained model directory {model.path}: {args.model_name}, "
        f"{'pretrained' if model.pretrained else 'not pretrained'}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import json

    if args.source == "timm":
        return _timm_models(args.json)
    from ..models.catalog import catalog_rows
    from ..models.weights import imagenet_weights

    rows = [{**row, "cached": imagenet_weights(row["model"]).path.is_file()} for row in catalog_rows()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'model':<20} {'params (M)':>10} {'top-1 %':>8} {'GFLOPs':>8} {'weights MB':>10} {'min input':>9}  cached")
    for r in rows:
        print(
            f"{r['model']:<20} {r['params_m']:>10.1f} {r['top1']:>8.2f} {r['gflops']:>8.2f} {r['size_mb']:>10.1f} "
            f"{'x'.join(map(str, r['min_size'][::-1])):>9}  {'yes' if r['cached'] else 'no'}"
        )
    return 0


def _timm_models(as_json: bool) -> int:
    import json

    from ..models import timm_catalog
    from ..models.weights import hub_weights

    rows = [
        {**row, "cached": bool(row["hub"]) and hub_weights(row["hub"], timm_catalog.HUB_FILE).path.is_file()}
        for row in timm_catalog.catalog_rows()
    ]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'model':<56} {'input':>9} {'crop':>5} {'classes':>7} {'licence':<14} cached")
    for r in rows:
        print(
            f"{r['model']:<56} {r['input']:>9}{'*' if r['fixed_input'] else ' '}{r['crop_pct']:>5.3f} "
            f"{r['pretrained_classes']:>7} {str(r['license'])[:14]:<14} {'yes' if r['cached'] else 'no'}"
        )
    print("* made for this input size only; classes 0: pretrained without a classifier (features only)")
    return 0


def add_export(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `export` subcommand."""
    p = sub.add_parser(
        "export",
        parents=common,
        formatter_class=Formatter,
        help="trained model -> ONNX, TorchScript, OpenVINO or Core ML (INT8 too), checked against PyTorch",
        description="Export a trained model directory. The exported model takes float32 RGB images "
        "in [0, 1], NCHW, resized and cropped as OUT/imgtrain-export.json describes (normalization "
        "is inside), and returns per-class probabilities. With --images, the export runs on those images "
        "beside the PyTorch model and says how often their labels agree, the largest change of a probability and, "
        "for labeled images, both accuracies: read it before trusting an INT8 file. The numbers are also in "
        "imgtrain-export.json under `check`.",
    )
    p.add_argument("model", metavar="MODELDIR", help="trained model directory (imgtrain train)")
    p.add_argument("out", metavar="OUT", help="folder to write (the format's model file + imgtrain-export.json)")
    p.add_argument("--format", choices=list(FORMATS), default="onnx", help=FORMAT_HELP)
    p.add_argument(
        "--int8",
        action="store_true",
        help=f"quantize to 8-bit integers ({' and '.join(INT8_FORMATS)}): about 4x smaller and, on CPUs with "
        "VNNI or AMX, several times faster; calibrated on --images, which it needs",
    )
    p.add_argument(
        "--images",
        metavar="DIR",
        help="your validation images (an image directory, or a folder of images, class folders for labels): INT8 "
        "calibrates on them, and every export is checked against the PyTorch model on them",
    )
    p.add_argument(
        "--calibration-images",
        type=number(1, MAX_CALIBRATION_IMAGES, int),
        default=CALIBRATION_IMAGES,
        metavar="N",
        help="at most this many of --images calibrate INT8 (evenly spaced over them); the check then runs on the "
        "others (on all of them when none are left, and says so)",
    )
    p.add_argument(
        "--check-images",
        type=number(1, 10_000_000, int),
        default=CHECK_IMAGES,
        metavar="N",
        help="at most this many of --images check the export (evenly spaced over them)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(loads_torch=True, func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..deploy.check import summary
    from ..deploy.export import export_model

    result = export_model(
        args.model,
        args.out,
        fmt=args.format,
        overwrite=args.overwrite,
        int8=args.int8,
        images=args.images,
        calibration_images=args.calibration_images,
        check_images_count=args.check_images,
    )
    print(f"wrote {args.format}{' int8' if args.int8 else ''} export {result.path}")
    if result.check is not None:
        print(f"checked against PyTorch {summary(result.check)}")
    elif args.images:
        print(f"not checked: {NOT_CHECKED_COREML}")
    return 0
