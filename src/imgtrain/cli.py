"""The `imgtrain` command: one subcommand per designer module, a thin layer over the library."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import traceback
from collections.abc import Sequence

from . import __version__
from .errors import ImgtrainError

TRANSFORM_HELP = {
    "resize": "resize the shorter side to --size",
    "size": "target length of the shorter side for --resize",
    "center_crop": "crop the center square of --crop-size",
    "crop_size": "side of the center crop",
    "pad": "pad every border with --padding black pixels",
    "padding": "pixels added on each border for --pad",
    "color_jitter": "randomly change brightness, contrast and saturation (each by up to 40%%)",
    "grayscale": "convert to grayscale (kept as 3 channels)",
    "random_resized_crop": "crop a random area (8-100%%) and aspect ratio (3/4-4/3), resized to --random-resized-crop-size",
    "random_resized_crop_size": "output side of the random resized crop",
    "random_crop": "crop a random square of --random-crop-size (padding when smaller)",
    "random_crop_size": "side of the random crop",
    "random_horizontal_flip": "flip left-right with probability 0.5",
    "random_vertical_flip": "flip upside down with probability 0.5",
    "random_rotation": "rotate by a random angle within +-degrees",
    "random_rotation_degrees": "largest rotation angle, 0-180",
    "random_affine": "random affine transform rotating within +-degrees",
    "random_affine_degrees": "largest affine rotation angle, 0-180",
    "random_grayscale": "convert to grayscale with probability 0.1",
    "random_perspective": "random perspective distortion (scale 0.5) with probability 0.5",
    "random_erasing": "erase a random rectangle with probability 0.5",
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


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

    p = sub.add_parser("convert", parents=common, formatter_class=_Formatter,
                       help="Convert to Image Directory: folder, archive, manifest or designer directory -> image directory",
                       description="Convert images into an imgtrain image directory. SRC is a folder in class-sub-folder "
                       "layout (SRC/<class>/...), a flat folder (unlabeled), a .zip/.tar/.tar.gz/.tgz/.tar.bz2 archive "
                       "of either, a CSV or JSON-lines manifest (path,label; paths relative to the manifest), or an "
                       "image directory written by the Azure ML designer (_meta.yaml + images.lst).")
    p.add_argument("src", metavar="SRC", help="folder, archive, manifest or designer image directory")
    p.add_argument("out", metavar="OUT", help="image directory to create")
    p.add_argument("--skip-invalid", action="store_true", help="leave unreadable images out (listed in OUT/convert-report.json) instead of failing")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--workers", type=_count, default=0, metavar="N", help="decoding processes; 0 = one per CPU core")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("split", parents=common, formatter_class=_Formatter,
                       help="Split Image Directory: one image directory -> two, stratified by class",
                       description="Split an image directory: OUT1 gets floor(fraction x n) images, OUT2 the rest.")
    p.add_argument("src", metavar="SRC", help="image directory to split")
    p.add_argument("out1", metavar="OUT1", help="first part (e.g. training)")
    p.add_argument("out2", metavar="OUT2", help="second part (e.g. validation)")
    p.add_argument("--fraction", type=float, default=0.9, help="share of images in OUT1, 0-1 (count rounded down)")
    p.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same split")
    p.add_argument("--stratify", action=argparse.BooleanOptionalAction, default=True,
                   help="keep each class's share the same in both parts")
    p.add_argument("--overwrite", action="store_true", help="replace OUT1 / OUT2 if they exist")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("transform", parents=common, formatter_class=_Formatter,
                       help="Init / Apply Image Transformation",
                       description="Create a transformation file, or apply one to an image directory.")
    tsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = tsub.add_parser("init", parents=common, formatter_class=_Formatter,
                        help="Init Image Transformation: write a transformation file",
                        description="Write a transformation file with the designer's Init Image Transformation options.")
    t.add_argument("out", metavar="OUT", help="transformation file to write (a folder gets OUT/transform.json)")
    from .transforms import TransformSpec

    for field in dataclasses.fields(TransformSpec):
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            t.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default,
                           help=TRANSFORM_HELP[field.name])
        else:
            is_angle = field.type in (float, "float")
            t.add_argument(flag, type=float if is_angle else int, default=field.default,
                           metavar="DEGREES" if is_angle else "PIXELS", help=TRANSFORM_HELP[field.name])
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
    t.add_argument("--seed", type=int, default=1, help="seed of the random transforms")
    t.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    t.add_argument("--workers", type=_count, default=0, metavar="N", help="processes; 0 = one per CPU core")
    t.set_defaults(func=_cmd_transform_apply)

    p = sub.add_parser("demo", parents=common, formatter_class=_Formatter,
                       help="run the pipeline on scikit-learn's bundled digits",
                       description="Turn scikit-learn's digits into an image directory, split it 90/10 and write a "
                       "transformation suited to 32 px images. Training and scoring join as they land.")
    p.add_argument("--out", default="demo-output", help="folder for every demo output (replaced on each run)")
    p.set_defaults(func=_cmd_demo)
    return parser


def _describe(directory) -> str:
    kind = f"{len(directory.classes)} classes" if directory.labeled else "unlabeled"
    return f"{directory.root}: {len(directory)} images, {kind}"


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    directory = convert(args.src, args.out, overwrite=args.overwrite, skip_invalid=args.skip_invalid,
                        workers=args.workers or None)
    print(f"wrote image directory {_describe(directory)}")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from .split import split

    first, second = split(args.src, args.out1, args.out2, fraction=args.fraction, seed=args.seed,
                          stratify=args.stratify, overwrite=args.overwrite)
    print(f"wrote image directory {_describe(first)}")
    print(f"wrote image directory {_describe(second)}")
    return 0


def _cmd_transform_init(args: argparse.Namespace) -> int:
    from .transforms import TransformSpec, init_transform

    spec = TransformSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TransformSpec)})
    path = init_transform(args.out, spec, overwrite=args.overwrite)
    print(f"wrote transformation file {path}")
    return 0


def _cmd_transform_apply(args: argparse.Namespace) -> int:
    from .transforms import apply_transform

    directory = apply_transform(args.spec, args.src, args.out, mode=args.mode, seed=args.seed,
                                overwrite=args.overwrite, workers=args.workers or None)
    print(f"wrote image directory {_describe(directory)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(args.out)
    print(f"image directory:     {_describe(result.images)}")
    print(f"training part:       {_describe(result.train)}")
    print(f"validation part:     {_describe(result.valid)}")
    print(f"transformation file: {result.transform}")
    print("next: training, scoring and evaluation arrive with the Train / Score issues.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 error, 2 wrong usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on wrong usage, 0 on --help / --version
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    try:
        return args.func(args)
    except ImgtrainError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # never a bare traceback for users; --debug shows it
        if args.debug:
            traceback.print_exc()
        print(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
