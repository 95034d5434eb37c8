"""The data subcommands: convert, split, audit, transform init / apply."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from ..config import MAX_SEED, TransformSpec
from ..data.options import ConvertOptions, SplitOptions
from .options import WORKERS_HELP, Formatter, add_declared_options, count, describe, number, options_of, waited


def add_convert(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `convert` subcommand."""
    p = sub.add_parser(
        "convert",
        parents=common,
        formatter_class=Formatter,
        help="Convert to Image Directory: folder, archive, manifest or designer directory -> image directory",
        description="Convert images into an imgtrain image directory. SRC is a folder in "
        "class-sub-folder layout (SRC/<class>/...), a flat folder (unlabeled), a "
        ".zip/.tar/.tar.gz/.tgz/.tar.bz2 archive of either, a CSV or JSON-lines manifest (path,label; "
        "paths relative to the manifest), or an image directory written by the Azure ML designer "
        "(_meta.yaml + images.lst). SRC may also be in object storage: s3://bucket/prefix, "
        "az://container/prefix, gs://bucket/prefix or any fsspec URL (a prefix, an archive or a "
        "manifest with keys relative to it), copied in with retries. Credentials come from the "
        "environment: the AWS variables or profile (AWS_ENDPOINT_URL for MinIO and other S3-compatible "
        "stores), AZURE_STORAGE_CONNECTION_STRING (BlobEndpoint for Azurite), Google's application "
        "default credentials. Needs pip install 'imgtrain[s3]', '[azure]' or '[gcs]'.",
    )
    p.add_argument("src", metavar="SRC", help="folder, archive, manifest or designer image directory, or a URL")
    p.add_argument("out", metavar="OUT", help="image directory to create")
    add_declared_options(p, ConvertOptions)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..data.convert import convert

    options = options_of(args, ConvertOptions)
    directory = convert(
        args.src,
        args.out,
        overwrite=args.overwrite,
        skip_invalid=options.skip_invalid,
        allow_outside=options.allow_outside_paths,
        workers=options.workers,
        cache=options.cache,
    )
    print(f"wrote image directory {describe(directory)} ({waited(args)})")
    return 0


def add_split(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `split` subcommand."""
    p = sub.add_parser(
        "split",
        parents=common,
        formatter_class=Formatter,
        help="Split Image Directory: one image directory -> two, stratified by class",
        description="Split an image directory: OUT1 gets floor(fraction x n) images, OUT2 the rest.",
    )
    p.add_argument("src", metavar="SRC", help="image directory to split")
    p.add_argument("out1", metavar="OUT1", help="first part (e.g. training)")
    p.add_argument("out2", metavar="OUT2", help="second part (e.g. validation)")
    add_declared_options(p, SplitOptions)
    p.add_argument("--overwrite", action="store_true", help="replace OUT1 / OUT2 if they exist")
    p.set_defaults(func=cmd_split)


def cmd_split(args: argparse.Namespace) -> int:
    from ..data.split import split

    options = options_of(args, SplitOptions)
    first, second = split(
        args.src,
        args.out1,
        args.out2,
        fraction=options.fraction,
        seed=options.seed,
        stratify=options.stratify,
        overwrite=args.overwrite,
    )
    print(f"wrote image directory {describe(first)}")
    print(f"wrote image directory {describe(second)}")
    return 0


def add_audit(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `audit` subcommand."""
    p = sub.add_parser(
        "audit",
        parents=common,
        formatter_class=Formatter,
        help="audit an image directory before training: duplicates, leakage, label errors, imbalance",
        description="Read every image of IMAGEDIR (and of each --against directory) once and list: "
        "exact duplicates (identical bytes); near-duplicates (resized, re-encoded or slightly cropped "
        "copies, by perceptual hash); leakage (copies in IMAGEDIR and in an --against directory, such "
        "as train and validation); copies with conflicting labels; images per class and the imbalance "
        "ratio; tiny images, odd aspect ratios and size outliers; likely label errors (5-fold logistic "
        "regression on thumbnails, ranked by cleanlab). Writes OUT/audit.json and a self-contained "
        "OUT/audit.html with thumbnails; prints a summary.",
    )
    p.add_argument("images", metavar="IMAGEDIR", help="image directory to audit (imgtrain convert)")
    p.add_argument(
        "--against",
        nargs="+",
        default=[],
        metavar="DIR",
        help="other image directories (validation, test) to look for copies of IMAGEDIR's images in",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for audit.json and audit.html")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when leakage or conflicting labels are found (for CI pipelines)",
    )
    p.add_argument(
        "--labels",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="look for likely label errors (--no-labels skips the k-fold check)",
    )
    p.add_argument("--seed", type=number(0, MAX_SEED, int), default=0, metavar="N", help="seed of the k-fold split")
    p.add_argument("--workers", type=count, default=None, metavar="N", help=WORKERS_HELP + " (default: one per core)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from ..auditing.run import audit, summary_text

    report = audit(
        args.images,
        args.against,
        args.out,
        overwrite=args.overwrite,
        workers=args.workers,
        check_labels=args.labels,
        seed=args.seed,
    )
    print(summary_text(report))
    print(f"report: {os.path.join(args.out, 'audit.html')}")
    found = report["summary"]["leakage_groups"] + report["summary"]["conflicting_label_groups"]
    if args.strict and found:
        print(
            f"imgtrain audit: --strict: {found} groups of leaked or conflicting copies; see the report.",
            file=sys.stderr,
        )
        return 1
    return 0


def add_transform(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `transform` subcommand."""
    p = sub.add_parser(
        "transform",
        parents=common,
        formatter_class=Formatter,
        help="Init / Apply Image Transformation",
        description="Create a transformation file, or apply one to an image directory.",
    )
    tsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = tsub.add_parser(
        "init",
        parents=common,
        formatter_class=Formatter,
        help="Init Image Transformation: write a transformation file",
        description="Write a transformation file with the designer's Init Image Transformation options.",
    )
    t.add_argument("out", metavar="OUT", help="transformation file to write (a folder gets OUT/transform.json)")
    add_declared_options(t, TransformSpec)
    t.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    t.set_defaults(func=cmd_transform_init)

    t = tsub.add_parser(
        "apply",
        parents=common,
        formatter_class=Formatter,
        help="Apply Image Transformation: write a transformed image directory",
        description="Apply a transformation file to every image of an image directory; images are written as PNG.",
    )
    t.add_argument("spec", metavar="SPEC", help="transformation file from `imgtrain transform init`")
    t.add_argument("src", metavar="SRC", help="image directory to transform")
    t.add_argument("out", metavar="OUT", help="image directory to create")
    t.add_argument(
        "--mode", choices=["training", "inference"], default="training", help="inference drops every random transform"
    )
    t.add_argument("--seed", type=number(0, MAX_SEED, int), default=1, help="seed of the random transforms")
    t.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    t.add_argument(
        "--workers", type=count, default=None, metavar="N", help=WORKERS_HELP + " (default: one per CPU core)"
    )
    t.set_defaults(loads_torch=True, func=cmd_transform_apply)


def cmd_transform_init(args: argparse.Namespace) -> int:
    from ..data.transform_file import init_transform

    spec = TransformSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TransformSpec)})
    path = init_transform(args.out, spec, overwrite=args.overwrite)
    print(f"wrote transformation file {path}")
    return 0


def cmd_transform_apply(args: argparse.Namespace) -> int:
    from ..data.transforms import apply_transform

    directory = apply_transform(
        args.spec, args.src, args.out, mode=args.mode, seed=args.seed, overwrite=args.overwrite, workers=args.workers
    )
    print(f"wrote image directory {describe(directory)} ({waited(args)})")
    return 0
