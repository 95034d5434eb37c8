"""The subcommands that use a trained model: score, evaluate, explain, serve, and the studio and demo."""

from __future__ import annotations

import argparse
import os

from ..config import EXPLAIN_COUNT, MAX_SCORE_BATCH, MAX_SEED, PRECISIONS, SCORE_BATCH_SIZE, ServeConfig, TrainConfig
from ..deploy.formats import BACKEND_HELP, BACKENDS
from ..serving.web import ALLOWED_HOSTS_HELP
from .options import MIN_CONFIDENCE_HELP, THRESHOLD_HELP, WORKERS_HELP, Formatter, count, describe, number


def add_score(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `score` subcommand."""
    p = sub.add_parser(
        "score",
        parents=common,
        formatter_class=Formatter,
        help="Score Image Model: trained model + image directory -> per-class probabilities",
        description="Score every image of an image directory with a trained model, using the "
        "model's own inference transformation. One row per image: id, path, source, label (when "
        "the directory has labels), 'Scored Probabilities_<class>' per class, 'Scored Labels'. A multi-label "
        "model's rows have 'labels' (the true classes) and 'Scored Labels' as lists: JSON lists in .jsonl, "
        "joined by ';' in .csv.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="trained model directory (imgtrain train)")
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="image directory to score, a plain folder of images "
        "(read as convert reads it, nothing copied), or the images under a remote prefix "
        "(s3://bucket/prefix, az://container/prefix, ...: streamed, each object read when its batch is "
        "scored); in a folder or prefix, class folders give the label column",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="scores file to write (.csv or .jsonl)")
    p.add_argument(
        "--format",
        choices=["csv", "jsonl"],
        default=None,
        help="file format (default: from the --out extension, else csv)",
    )
    _add_score_compute_options(p)
    p.add_argument(
        "--min-confidence",
        type=number(1e-9, 1),
        default=None,
        metavar="P",
        help=MIN_CONFIDENCE_HELP + "; a 'Best Guess' column keeps the top class",
    )
    add_threshold(p)
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average each image's probabilities with those of its left-right mirror "
        "(twice the work; docs/performance.md says what it measured)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="give unreadable images a row with an 'error' column instead of failing",
    )
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read photos the resize shrinks at least 4x through the decoded-image cache (see train "
        "--help), and keep them there for the next run; the scores are the same either way",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(loads_torch=True, func=cmd_score)


def add_threshold(p: argparse.ArgumentParser) -> None:
    """--threshold, of score and serve."""
    p.add_argument("--threshold", type=number(1e-9, 1 - 1e-9), default=None, metavar="P", help=THRESHOLD_HELP)


def _add_score_compute_options(p: argparse.ArgumentParser) -> None:
    """How `score` computes: batch size, device, precision, loader workers."""
    p.add_argument(
        "--batch-size",
        type=number(1, MAX_SCORE_BATCH, int),
        default=SCORE_BATCH_SIZE,
        metavar="N",
        help="images per batch",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="arithmetic: auto = bf16 on GPUs, and on CPUs with native bf16 where one batch measured "
        "faster than fp32; else fp32 (bf16 probabilities differ from fp32 in the 3rd-4th decimal)",
    )
    p.add_argument("--backend", choices=BACKENDS, default="torch", help=BACKEND_HELP)
    p.add_argument(
        "--workers",
        type=count,
        default=None,
        metavar="N",
        help=WORKERS_HELP + " (default: one per core for photos over 2 megapixels, where decoding is the "
        "work; else 0 on 2 cores or fewer, up to 4 on more)",
    )


def cmd_score(args: argparse.Namespace) -> int:
    from ..inference.model import load_model
    from ..inference.scoring import score_to_file

    model = load_model(args.model, args.device, args.precision, args.threshold, args.tta, args.backend)
    path, rows = score_to_file(
        model,
        args.data,
        args.out,
        fmt=args.format,
        batch_size=args.batch_size,
        workers=args.workers,
        skip_invalid=args.skip_invalid,
        overwrite=args.overwrite,
        cache=args.cache,
        min_confidence=args.min_confidence,
    )
    print(f"wrote {rows} scores to {path}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `evaluate` subcommand."""
    p = sub.add_parser(
        "evaluate",
        parents=common,
        formatter_class=Formatter,
        help="Evaluate Model: scores -> accuracy, precision, recall, F1, confusion matrix",
        description="Evaluate a scores file of a labeled image directory. Writes metrics.json, "
        "confusion_matrix.json / .png, most_confident_errors.png and reliability.png (calibration: how "
        "well the confidences match the accuracy, with its expected calibration error) to --out and "
        "prints a summary.",
    )
    p.add_argument("--scores", required=True, metavar="FILE", help="scores file from `imgtrain score`")
    p.add_argument("--out", required=True, metavar="DIR", help="report directory to write")
    p.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="the trained model that made the scores: adds Grad-CAM "
        "explanations of its most confident errors and of some right answers (--out/explanations/, as "
        "`imgtrain explain` writes them)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(loads_torch=True, func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..inference.evaluation import evaluate, summary

    metrics = evaluate(args.scores, args.out, overwrite=args.overwrite, model=args.model)
    print(summary(metrics))
    print(f"report: {args.out}")
    return 0


def add_explain(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `explain` subcommand."""
    p = sub.add_parser(
        "explain",
        parents=common,
        formatter_class=Formatter,
        help="Grad-CAM heatmaps: what the model looked at in its errors and in right answers",
        description="Score a labeled image directory with a trained model, then explain its most "
        "confident errors and a seeded sample of its correct predictions with Grad-CAM heatmaps of the "
        "predicted class (captum's LayerGradCam at the network's last spatial layer). Writes "
        "OUT/explanations.json, OUT/heatmaps.safetensors, one overlay PNG per image and "
        "OUT/explanations.png (a grid). `evaluate --model` adds the same to its report.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="trained model directory (imgtrain train)")
    p.add_argument("--data", required=True, metavar="DIR", help="labeled image directory")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the explanations to")
    p.add_argument("--errors", type=count, default=EXPLAIN_COUNT, metavar="N", help="most confident errors to explain")
    p.add_argument(
        "--correct",
        type=count,
        default=EXPLAIN_COUNT,
        metavar="N",
        help="correct predictions to explain (a seeded random sample)",
    )
    p.add_argument("--seed", type=number(0, MAX_SEED, int), default=0, metavar="N", help="seed of the sample")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(loads_torch=True, func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from ..inference.explain import explain

    document = explain(
        args.model,
        args.data,
        args.out,
        errors=args.errors,
        correct=args.correct,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    wrong = sum(e["error"] for e in document["images"])
    print(
        f"explained {len(document['images'])} images ({wrong} errors) with Grad-CAM at "
        f"{document['target_layer']} of {document['architecture']}"
    )
    print(f"report: {os.path.join(args.out, 'explanations.png')}")
    return 0


def add_serve(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `serve` subcommand."""
    p = sub.add_parser(
        "serve",
        parents=common,
        formatter_class=Formatter,
        help="real-time endpoint: POST /predict, GET /health, a web page at /",
        description="Serve a trained model over HTTP: POST /predict with an uploaded image (multipart "
        'field `file`) or JSON with base64 images ({"images": [...]} or the designer\'s '
        '{"Inputs": {"WebServiceInput0": [{"image": ...}]}}); GET /health; a page to try '
        "it at /; the API description at /docs.",
    )
    p.add_argument("model", metavar="MODELDIR", help="trained model directory (imgtrain train)")
    add_listening(p, 8000, "address to listen on (0.0.0.0: every interface)")
    p.add_argument(
        "--max-upload-mb",
        type=number(1e-6, 1e6),
        default=ServeConfig.max_upload_bytes / 2**20,
        metavar="MB",
        help="largest request body accepted",
    )
    p.add_argument(
        "--max-pixels",
        type=number(1, 2**40, int),
        default=ServeConfig.max_pixels,
        metavar="N",
        help="largest image accepted (pixels)",
    )
    p.add_argument(
        "--max-batch",
        type=number(1, 4096, int),
        default=ServeConfig.max_batch,
        metavar="N",
        help="most images scored together",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=number(0, 60_000),
        default=ServeConfig.batch_wait_ms,
        metavar="MS",
        help="how long a request waits for others to share its batch",
    )
    p.add_argument(
        "--decode-threads",
        type=number(1, 256, int),
        default=ServeConfig.decode_threads,
        metavar="N",
        help="images decoded at once, off the event loop (each may hold up to --max-pixels x 3 bytes)",
    )
    p.add_argument(
        "--min-confidence",
        type=number(1e-9, 1),
        default=ServeConfig.min_confidence,
        metavar="P",
        help=MIN_CONFIDENCE_HELP + "; `best_guess` keeps the top class and `unknown` says so",
    )
    add_threshold(p)
    p.add_argument("--backend", choices=BACKENDS, default=ServeConfig.backend, help=BACKEND_HELP)
    p.set_defaults(loads_torch=True, func=cmd_serve)


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The endpoint's limits from serve's options."""
    return ServeConfig(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        decode_threads=args.decode_threads,
        min_confidence=args.min_confidence,
        threshold=args.threshold,
        backend=args.backend,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serving.serve import serve

    serve(args.model, args.host, args.port, serve_config(args), args.allowed_hosts)
    return 0


def add_listening(p: argparse.ArgumentParser, port: int, host_help: str) -> None:
    """--host, --port and --allowed-hosts, as serve and the studio take them."""
    p.add_argument("--host", default="127.0.0.1", help=host_help)
    p.add_argument("--port", type=number(1, 65535, int), default=port, help="TCP port")
    p.add_argument(
        "--allowed-hosts",
        type=lambda text: [name for name in text.split(",") if name.strip()],
        default=[],
        metavar="NAMES",
        help=ALLOWED_HOSTS_HELP,
    )


def add_studio(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `studio` subcommand."""
    p = sub.add_parser(
        "studio",
        parents=common,
        formatter_class=Formatter,
        help="the designer's pipeline in a browser: build, run, watch and resume training",
        description="A local web app over the images in --root: pick a folder, set the designer's "
        "parameters, submit, watch loss and accuracy live, stop and resume, open the evaluation. Each "
        "run writes the ordinary outputs (image directories, model directory, scores, evaluation) to "
        "ROOT/imgtrain-runs/run-N; the run registry survives restarts. Prints the URL to open, with "
        "its token.",
    )
    p.add_argument("--root", required=True, metavar="DIR", help="the folder the studio reads and writes under")
    add_listening(
        p,
        8765,
        "address to listen on (another than this machine's own only when you mean it: anyone with the token could "
        "then run jobs)",
    )
    p.add_argument(
        "--token",
        default=None,
        help="the access token; better in $IMGTRAIN_STUDIO_TOKEN, since any user of this machine sees an option in "
        "`ps` (default: the one kept in ROOT/.imgtrain-studio/token, made owner-only on the first start)",
    )
    p.set_defaults(func=cmd_studio)


def cmd_studio(args: argparse.Namespace) -> int:
    from ..studio.app import studio

    studio(args.root, args.host, args.port, args.token, args.allowed_hosts)
    return 0


def add_demo(sub: argparse._SubParsersAction, common: list[argparse.ArgumentParser]) -> None:
    """The `demo` subcommand."""
    p = sub.add_parser(
        "demo",
        parents=common,
        formatter_class=Formatter,
        help="run the whole pipeline on scikit-learn's bundled digits",
        description="Turn scikit-learn's digits into an image directory, split it 90/10, create a "
        "resnet18 (no pretrained weights), train it with the module's defaults and a transformation "
        "suited to 32 px images, score the held-out part and evaluate it.",
    )
    p.add_argument("--out", default="demo-output", help="folder for every demo output (replaced on each run)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs, metavar="N", help="training epochs")
    p.set_defaults(loads_torch=True, func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    result = run_demo(args.out, epochs=args.epochs)
    print(f"image directory:      {describe(result.images)}")
    print(f"training part:        {describe(result.train)}")
    print(f"held-out part:        {describe(result.valid)}")
    print(f"transformation file:  {result.transform}")
    print(f"trained model:        {result.model}")
    print(f"scores:               {result.scores}")
    print(f"evaluation report:    {result.report}")
    print(
        f"held-out accuracy:    {result.metrics['accuracy']:.4f} "
        f"({result.metrics['images']} images, {result.seconds:.0f} s in all)"
    )
    print(f"next: imgtrain score --model {result.model} --data YOUR_IMAGE_DIRECTORY --out scores.csv")
    return 0
