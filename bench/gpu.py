"""GPU benchmark: resnet50 training and scoring speed per precision and memory layout, on tensors already on the
GPU and through imgtrain's own data path, with the precision policy's choice, a bit-repeatability check and the
CLI pipeline, all in one run (under 8 minutes on one H100).

    .venv/bin/python bench/gpu.py                                  # a CUDA GPU: everything, gpu-bench.json/.md
    .venv/bin/python bench/gpu.py --quick --out /tmp/gpu.json      # fewer steps, images, repeat runs
    .venv/bin/python bench/gpu.py --dry-run --out /tmp/gpu.json    # the same code on the CPU, tiny (tests)

Every figure goes to --out (JSON); one Markdown table goes to stdout and beside the JSON (.md), with published
figures of other benchmarks as anchors (quoted, not measured here). Progress goes to stderr. A row that fails
(fp16 on a GPU without it, out of memory, ...) is kept with its error string; the bench goes on.

What is timed (every clock read follows torch.cuda.synchronize):
- train, synthetic: the model-only ceiling. resnet50, 1000 classes, 224 px, random tensors already on the GPU,
  imgtrain's SGD (Nesterov momentum 0.9, weight decay 1e-4; fused except under fp16's loss scaler), cuDNN
  autotuning on; --warmup steps untimed, then --steps steps. fp32 = TF32 off for matmul and cuDNN, tf32 = TF32 on
  for both, bf16 / fp16 = autocast (fp16 with a GradScaler); each with channels-last off and on.
- train, imgtrain: `imgtrain.train` itself on an image directory of generated 500x375 JPEGs (made by
  `imgtrain.convert`), with the designer's transformation (resize 256, center crop 224, random flip) and imgtrain's
  own loader (its default workers, pinned memory) and step. images/s is imgtrain's own epoch timing (the training
  batches, from the loader's start to the last step, which ends with a sync) of the epochs after the first: the
  first starts the loader and picks the kernels; validation, checkpoints and the saving of the model fall outside,
  and the whole call's wall time is given beside it.
- score, synthetic: `imgtrain.load_model(...).probabilities(batch)` (BatchNorm folded, channels-last, the
  probabilities copied back to the CPU) on batches already on the GPU.
- score, imgtrain: `imgtrain.score(model, image directory)` (read, decode, transform, batches of 32, the default
  loader workers); the second call is timed, the first warms up.
- policy: what precision "auto" resolves to with and without --repeatable (devices.resolve_precision on
  devices.measure_speedup of the real network, at the bench's batch and at the default 16).
- repeatability: `imgtrain train` twice per precision, each a fresh process, same seed, --repeatable, resnet18, one
  epoch; model.safetensors compared byte for byte.
- CLI: convert -> split -> resnet -> transform init -> train -> score -> evaluate, each `python -m imgtrain`.
"""

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import make_photos  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
try:
    import imgtrain  # noqa: F401
except ImportError:  # a bare checkout: the library from this tree
    sys.path.insert(0, str(SRC))

#: Published figures of other benchmarks, for comparison: quoted from their sources, never measured here.
ANCHORS = [
    "NVIDIA Deep Learning Examples, ResNet-50 v1.5 for PyTorch, training on 1x A100 80GB (DGX A100, NGC "
    "pytorch-21.03, their ImageNet pipeline; DALI is their recommended data backend): 938 img/s in TF32, "
    '2,470 img/s in mixed precision (PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance")',
    "timm results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv: resnet50 at 224 px, training, AMP, "
    "channels-last, batch 512, RTX 3090: 1,218 img/s (NCHW, benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv: 826)",
    "timm results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv: resnet50 at 224 px, inference, AMP, batch 1024, "
    "RTX 4090: 4,303 img/s (channels-last, benchmark-infer-amp-nhwc-pt240-cu124-rtx4090.csv, batch 512: 5,088)",
]
ANCHOR_TITLE = "Published figures for comparison (quoted from their sources, not measured here):"
#: The default batch of `imgtrain train` (the designer's), where the policy is also asked.
DEFAULT_BATCH = 16
#: The CLI pipeline's share of training images in its split.
CLI_FRACTION = 0.8


def cli_batch(train_images: int) -> int:
    """The batch of a CLI training run: the default, or all the images where there are fewer (the dry run)."""
    return min(DEFAULT_BATCH, train_images)


#: Where each section's time ends, as a share of the budget (time a section leaves passes to the next).
SHARES = {"synthetic": 0.27, "imgtrain": 0.52, "score": 0.62, "policy": 0.66, "repeat": 0.82, "cli": 1.0}
#: The generated photos' classes (bench/common.py's make_photos: a coloured disc per class).
CLASSES = 4


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: the real one on a GPU, or the dry run's on the CPU."""

    device: str
    model: str
    size: int
    classes: int
    batch: int
    warmup: int
    steps: int
    precisions: tuple[str, ...]  # synthetic training rows, each with channels-last off and on
    train_runs: tuple[tuple[str, bool, int], ...]  # imgtrain.train rows: precision, repeatable, batch
    score_precisions: tuple[str, ...]
    policy_batches: tuple[int, ...]  # batch shapes the policy is asked at
    photo: tuple[int, int]  # width, height of the generated JPEGs
    images: int  # training images of the real data path
    valid: int
    epochs: int  # of each imgtrain.train row; the first is not timed
    spec: dict[str, Any]  # the transformation (TransformSpec's fields; empty: the designer's default)
    repeat_model: str
    repeat_images: int
    repeat_precisions: tuple[str, ...]
    cli_epochs: int
    budget: float  # seconds; a row not started by its section's share of it is recorded as skipped


FULL = Plan(
    device="cuda",
    model="resnet50",
    size=224,
    classes=1000,
    batch=128,
    warmup=20,
    steps=50,
    precisions=("fp32", "tf32", "bf16", "fp16"),
    train_runs=(
        ("fp32", True, 128),
        ("bf16", True, 128),
        ("fp16", True, 128),
        ("auto", True, 128),
        ("auto", False, 128),
        ("auto", True, DEFAULT_BATCH),
    ),
    score_precisions=("auto", "fp32", "bf16", "fp16"),
    policy_batches=(128, DEFAULT_BATCH),
    photo=(500, 375),
    images=1280,
    valid=64,
    epochs=3,
    spec={},
    repeat_model="resnet18",
    repeat_images=64,
    repeat_precisions=("auto", "bf16", "fp16", "fp32"),  # auto: the default, the policy measures first
    cli_epochs=2,
    budget=380.0,  # rows start until then; the last one ends within a minute, startup takes ~15 s: under 8 minutes
)
DRY = Plan(
    device="cpu",
    model="resnet18",
    size=32,
    classes=10,
    batch=4,
    warmup=1,
    steps=1,
    precisions=("fp32", "bf16"),
    train_runs=(("fp32", True, 4), ("bf16", True, 4), ("auto", False, 4)),
    score_precisions=("auto", "fp32", "bf16"),
    policy_batches=(4,),
    photo=(48, 36),
    images=12,
    valid=4,
    epochs=2,
    spec={"size": 32, "crop_size": 32},
    repeat_model="resnet18",
    repeat_images=8,
    repeat_precisions=("auto",),
    cli_epochs=1,
    budget=240.0,
)


def make_plan(args: argparse.Namespace) -> Plan:
    """The plan the options ask for: FULL or DRY, made smaller by --quick, with any size given explicitly."""
    plan = DRY if args.dry_run else FULL
    if args.quick and not args.dry_run:
        plan = dataclasses.replace(
            plan, warmup=10, steps=20, images=640, repeat_precisions=plan.repeat_precisions[:1], budget=240.0
        )
    if args.batch:  # the rows at the plan's batch move with it; those at the default batch stay
        runs = tuple((p, r, args.batch if b == plan.batch else b) for p, r, b in plan.train_runs)
        batches = tuple(dict.fromkeys(args.batch if b == plan.batch else b for b in plan.policy_batches))
        plan = dataclasses.replace(plan, batch=args.batch, train_runs=runs, policy_batches=batches)
    given = {k: v for k, v in (("steps", args.steps), ("budget", args.budget)) if v}
    return dataclasses.replace(plan, **given)


class Clock:
    """The run's time budget: each section may start rows until its share of it (SHARES)."""

    def __init__(self, budget: float):
        """Start the clock now."""
        self.start, self.budget = time.monotonic(), budget

    def until(self, section: str) -> float:
        """The monotonic time after which `section` starts no more rows."""
        return self.start + self.budget * SHARES[section]

    def left(self) -> float:
        """Seconds of the budget still left (negative once spent)."""
        return self.start + self.budget - time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.start


@dataclass(frozen=True)
class Data:
    """The inputs every section shares, made once in the run's temporary folder."""

    work: Path
    photos: Path  # class folders of JPEGs (the CLI pipeline converts them again)
    train: Path
    valid: Path
    untrained: Path
    spec: Any  # TransformSpec
    transform_file: Path
    repeat_train: Path
    repeat_valid: Path
    repeat_untrained: Path


# --- the device: every CUDA-only call goes through these, so the dry run takes the same paths on the CPU


def sync(device) -> None:
    """Wait for the GPU's queued work, so that a clock read next counts it (nothing to wait for on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    """Start a new high-water mark of the GPU memory allocated (the CPU has none to reset)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device) -> float | None:
    """The GPU memory high-water mark since reset_peak, in MiB; None on the CPU."""
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def free_memory(device) -> None:
    """Give cached GPU blocks back between rows, so one row's leftovers do not count in the next's peak."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def tf32_flags(device) -> dict[str, Any] | None:
    """Whether TF32 is allowed for matmul and for cuDNN convolutions now (None on the CPU), with what torch's newer
    fp32_precision settings say, where this torch has them, as evidence that the flags took."""
    import torch

    if device.type != "cuda":
        return None
    readings = {
        "matmul": lambda: bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn": lambda: bool(torch.backends.cudnn.allow_tf32),
        "matmul_fp32_precision": lambda: getattr(torch.backends.cuda.matmul, "fp32_precision", None),
        "conv_fp32_precision": lambda: getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None),
    }
    flags: dict[str, Any] = {}
    for name, read in readings.items():
        try:
            flags[name] = read()
        except RuntimeError as exc:  # torch refuses to read a mix of its two APIs
            flags[name] = f"unreadable: {exc}"[:120]
    return flags


#: PyTorch's own TF32 defaults (matmul off, cuDNN on): what imgtrain runs with, since it never sets them.
TORCH_TF32 = {"matmul": False, "cudnn": True}


def set_tf32(device, flags: dict[str, bool]) -> dict[str, Any] | None:
    """Allow or forbid TF32 for matmul and cuDNN (CUDA only); the flags now in force."""
    import torch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = flags["matmul"]
        torch.backends.cudnn.allow_tf32 = flags["cudnn"]
    return tf32_flags(device)


def torch_defaults(device) -> None:
    """PyTorch's default TF32 and cuDNN settings, as a user's process has them when imgtrain starts."""
    import torch

    set_tf32(device, TORCH_TF32)
    torch.backends.cudnn.benchmark = False


def guarded(device, deadline: float, work: Callable[[], dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """`fields` with what `work` measured, or with an error string when it raised or its section's time was up:
    one failing row never ends the bench."""
    row = dict(fields)
    label = " ".join(f"{k} {v}" for k, v in fields.items()) or getattr(work, "func", work).__name__
    if time.monotonic() > deadline:
        print(f"  skipped (time budget): {label}", file=sys.stderr, flush=True)
        return row | {"error": "skipped: this section's share of the time budget was spent"}
    try:
        row |= work()
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        row["error"] = f"{type(exc).__name__}: {message}"
    finally:
        free_memory(device)
    rate = row.get("images_per_second")
    print(f"  {label}: {row.get('error') or (f'{rate:.1f} img/s' if rate else 'done')}", file=sys.stderr, flush=True)
    return row


def timed(step: Callable[[], object], warmup: int, steps: int, device) -> float:
    """Seconds that `steps` calls of `step` take after `warmup` untimed ones, the GPU's queue drained both sides."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - start


# --- training


def train_step(net, optimizer, scaler, device, precision: str, images, labels) -> Callable[[], None]:
    """One training step of the ceiling: imgtrain's forward, loss, backward and update without its bookkeeping."""
    import torch

    from imgtrain.devices import autocast_for

    autocast = autocast_for(device, "fp32" if precision == "tf32" else precision)

    def step() -> None:
        """Forward, loss, backward and the optimizer's step on the same batch."""
        with autocast:
            loss = torch.nn.functional.cross_entropy(net(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return step


def synthetic_train(plan: Plan, device, precision: str, channels_last: bool) -> dict[str, Any]:
    """Training images/s and peak memory of the model alone, on random tensors already on the device."""
    import torch
    import torchvision

    from imgtrain.devices import gradient_scaler

    flags = set_tf32(
        device,
        {"fp32": {"matmul": False, "cudnn": False}, "tf32": {"matmul": True, "cudnn": True}}.get(precision, TORCH_TF32),
    )
    torch.backends.cudnn.benchmark = device.type == "cuda"  # the ceiling: cuDNN picks its fastest kernels
    reset_peak(device)
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = torchvision.models.get_model(plan.model, num_classes=plan.classes).to(device, memory_format=layout)
    images = torch.randn(plan.batch, 3, plan.size, plan.size, device=device).contiguous(memory_format=layout)
    labels = torch.randint(0, plan.classes, (plan.batch,), device=device)
    scaler = gradient_scaler(device, "fp16" if precision == "fp16" else "fp32")
    optimizer = torch.optim.SGD(
        net.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=1e-4, fused=scaler is None
    )
    try:
        seconds = timed(
            train_step(net, optimizer, scaler, device, precision, images, labels), plan.warmup, plan.steps, device
        )
    finally:
        torch_defaults(device)
    return {
        "images_per_second": plan.batch * plan.steps / seconds,
        "step_ms": 1000 * seconds / plan.steps,
        "peak_memory_mib": peak_mib(device),
        "tf32": flags,
    }


def imgtrain_train(plan: Plan, data: Data, device, precision: str, repeatable: bool, batch: int) -> dict[str, Any]:
    """`imgtrain.train` itself on the JPEG image directory: its epoch timing after the first epoch, its choice of
    precision, its wall time and peak memory."""
    import imgtrain

    torch_defaults(device)  # imgtrain leaves TF32 as PyTorch sets it
    config = imgtrain.TrainConfig(
        epochs=plan.epochs,
        batch_size=batch,
        patience=plan.epochs,
        device=plan.device,
        precision=precision,
        repeatable=repeatable,
        progress=False,
    )
    out = data.work / f"train-{precision}-{'repeatable' if repeatable else 'free'}-{batch}"
    reset_peak(device)
    start = time.perf_counter()
    history = imgtrain.train(data.untrained, data.train, data.valid, out, config, data.spec).history
    wall = time.perf_counter() - start
    timed_epochs = history[1:] or history
    seconds = sum(row["seconds"] for row in timed_epochs)
    return {
        "images_per_second": sum(row["images_per_second"] * row["seconds"] for row in timed_epochs) / seconds,
        "first_epoch_images_per_second": history[0]["images_per_second"],
        "epochs_timed": len(timed_epochs),
        "images_per_epoch": plan.images,
        "train_call_seconds": wall,
        "resolved_precision": imgtrain.open_model_directory(out).meta["training"]["precision"],
        "peak_memory_mib": peak_mib(device),
        "tf32": tf32_flags(device),
        "model_dir": out.name,
    }


# --- scoring


def synthetic_score(plan: Plan, device, model_dir: Path, precision: str) -> dict[str, Any]:
    """Scoring images/s of imgtrain's prepared network (`Model.probabilities`) on batches already on the device."""
    import torch

    import imgtrain

    torch_defaults(device)
    reset_peak(device)
    model = imgtrain.load_model(model_dir, device=plan.device, precision=precision)
    batch = torch.randn(plan.batch, 3, plan.size, plan.size, device=device)
    seconds = timed(partial(model.probabilities, batch), plan.warmup, plan.steps, device)
    return {
        "images_per_second": plan.batch * plan.steps / seconds,
        "batch_ms": 1000 * seconds / plan.steps,
        "resolved_precision": model.precision,
        "peak_memory_mib": peak_mib(device),
    }


def imgtrain_score(plan: Plan, device, model_dir: Path, images: Path, precision: str) -> dict[str, Any]:
    """`imgtrain.score` on the JPEG image directory, the second call timed (the first picks kernels and precision)."""
    import imgtrain
    from imgtrain.config import SCORE_BATCH_SIZE

    torch_defaults(device)
    reset_peak(device)
    model = imgtrain.load_model(model_dir, device=plan.device, precision=precision)
    imgtrain.score(model, images, progress=False)
    start = time.perf_counter()
    rows = imgtrain.score(model, images, progress=False)
    seconds = time.perf_counter() - start
    return {
        "images_per_second": len(rows) / seconds,
        "images": len(rows),
        "batch": SCORE_BATCH_SIZE,
        "resolved_precision": model.precision,
        "peak_memory_mib": peak_mib(device),
    }


# --- the precision policy


def policy(plan: Plan, device) -> dict[str, Any]:
    """What precision "auto" resolves to for training with and without --repeatable, at the bench's batch and at
    the default one: the policy's candidate, its measured speed-up over fp32 on this network, the choice."""
    import torch
    import torchvision

    from imgtrain.devices import MIN_SPEEDUP, Capability, candidate_precision, measure_speedup, resolve_precision

    torch_defaults(device)  # as start_run measures: before the run's determinism settings are entered
    cap = Capability.of(device)
    torch.manual_seed(0)
    net = torchvision.models.get_model(plan.model, num_classes=CLASSES).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)  # as start_run builds it
    choices = []
    for repeatable in (True, False):
        for batch in plan.policy_batches:
            candidate = candidate_precision(cap, repeatable)
            shape = (batch, 3, plan.size, plan.size)
            ratio = measure_speedup(net, shape, device, candidate) if candidate else None
            chosen = resolve_precision("auto", device, repeatable, speedup=lambda _c, r=ratio: r, cap=cap)
            choices.append(
                {"repeatable": repeatable, "batch": batch, "candidate": candidate, "speedup": ratio, "auto": chosen}
            )
    return {"capability": dataclasses.asdict(cap), "min_speedup": MIN_SPEEDUP, "choices": choices}


# --- the command line: the repeatability check and the pipeline


#: What torch warns (under use_deterministic_algorithms(warn_only=True)) when an op has no deterministic kernel.
NONDETERMINISTIC = "does not have a deterministic implementation"


def options(**values: Any) -> list[Any]:
    """Command-line options from keywords: batch_size=16 -> ["--batch-size", 16]."""
    return [item for key, value in values.items() for item in (f"--{key.replace('_', '-')}", value)]


def run_cli(args: list[Any], clock: Clock) -> dict[str, Any]:
    """`python -m imgtrain ARGS` in a fresh process: its exit code, seconds and, when it failed, its last words."""
    env = os.environ | {
        "IMGTRAIN_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "imgtrain", *map(str, args)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=max(20.0, clock.left() + 30))
    except subprocess.TimeoutExpired:
        return {"exit_code": None, "seconds": time.perf_counter() - start, "error": "timed out"}
    result: dict[str, Any] = {"exit_code": done.returncode, "seconds": time.perf_counter() - start}
    nondeterministic = sorted({line.strip()[:200] for line in done.stderr.splitlines() if NONDETERMINISTIC in line})
    if nondeterministic:  # torch's warn_only notes: an op that ran without a deterministic kernel
        result["nondeterministic_ops"] = nondeterministic
    if done.returncode != 0:
        result["error"] = (done.stderr or done.stdout).strip()[-600:]
    return result


def repeat_once(plan: Plan, data: Data, precision: str, clock: Clock) -> dict[str, Any]:
    """`imgtrain train` twice from the same seed (--repeatable, the default), each in a fresh process; whether the
    two model.safetensors are the same bytes, and which tensors differ when they are not."""
    import imgtrain

    outs, runs = [], []
    for attempt in (1, 2):
        out = data.work / f"repeat-{precision}-{attempt}"
        train = options(
            model=data.repeat_untrained,
            train=data.repeat_train,
            valid=data.repeat_valid,
            out=out,
            transform=data.transform_file,
            epochs=1,
            seed=1,
            device=plan.device,
            precision=precision,
            batch_size=cli_batch(plan.repeat_images),
        )
        run = run_cli(["train", *train, "--repeatable", "--no-progress"], clock)
        if run["exit_code"] != 0:
            raise RuntimeError(f"train run {attempt} failed (exit {run['exit_code']}): {run.get('error', '')}")
        outs.append(out)
        runs.append(run)
    first, second = ((out / "model.safetensors").read_bytes() for out in outs)
    result = {
        "identical": first == second,
        "weights_bytes": len(first),
        "sha256": [hashlib.sha256(b).hexdigest()[:16] for b in (first, second)],
        "resolved_precision": imgtrain.open_model_directory(outs[0]).meta["training"]["precision"],
        "run_seconds": [run["seconds"] for run in runs],
        "nondeterministic_ops": sorted({op for run in runs for op in run.get("nondeterministic_ops", [])}),
    }
    if first != second:
        result["different_tensors"] = differing_tensors(outs[0], outs[1])
    return result


def differing_tensors(a: Path, b: Path) -> dict[str, float]:
    """The tensors (up to 10) whose values differ between two weights files, with the largest difference of each."""
    from safetensors.torch import load_file

    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    found = {}
    for name, tensor in left.items():
        if not tensor.equal(right[name]):
            found[name] = float((tensor.double() - right[name].double()).abs().max())
    return dict(list(found.items())[:10])


def cli_pipeline(plan: Plan, data: Data, clock: Clock) -> dict[str, Any]:
    """The whole pipeline through the command line on the device, stopping at the first failing command; each
    command's exit code and seconds, and the accuracy `evaluate` reports."""
    import imgtrain

    d = data.work / "cli"
    batch = cli_batch(int((plan.images + plan.valid) * CLI_FRACTION))
    commands = [
        ["convert", data.photos, d / "data"],
        ["split", d / "data", d / "train", d / "valid", "--fraction", CLI_FRACTION],
        ["resnet", d / "untrained", "--model-name", plan.model, "--no-pretrained"],
        ["transform", "init", d / "transform.json", *options(**plan.spec)],
        ["train", *options(model=d / "untrained", train=d / "train", valid=d / "valid", out=d / "model"),
         *options(transform=d / "transform.json", epochs=plan.cli_epochs, device=plan.device, batch_size=batch),
         "--no-progress"],
        ["score", *options(model=d / "model", data=d / "valid", out=d / "scores.csv", device=plan.device)],
        ["evaluate", *options(scores=d / "scores.csv", out=d / "report")],
    ]  # fmt: skip
    steps = []
    for args in commands:
        shown = " ".join(str(a).replace(str(d) + os.sep, "").replace(str(data.work) + os.sep, "") for a in args)
        steps.append({"command": f"imgtrain {shown}"} | run_cli(args, clock))
        if steps[-1]["exit_code"] != 0:
            break
    metrics = d / "report" / "metrics.json"
    report = json.loads(metrics.read_text()) if metrics.is_file() else {}
    trained = (d / "model" / "model.safetensors").is_file()
    return {
        "steps": steps,
        "all_exit_zero": len(steps) == len(commands) and all(s["exit_code"] == 0 for s in steps),
        "accuracy": report.get("accuracy"),
        "scored_images": report.get("images"),
        "precision": imgtrain.open_model_directory(d / "model").meta["training"]["precision"] if trained else None,
        "batch": batch,
    }


# --- data


def make_photos_in_parallel(root: Path, count: int, photo: tuple[int, int], seed: int) -> Path:
    """`count` generated JPEGs of `photo` (width, height) in root/<class>/, made by up to one process per core (a
    500x375 photo takes ~11 ms), each part from a seed of its own so that no two are alike."""
    import shutil
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    parts = max(1, min(os.cpu_count() or 1, count // 64))
    if parts == 1:
        return make_photos(root, count, *photo, classes=CLASSES, seed=seed)
    folders = [root / f"part{i}" for i in range(parts)]
    counts = [count // parts + (i < count % parts) for i in range(parts)]
    widths, heights, classes = [photo[0]] * parts, [photo[1]] * parts, [CLASSES] * parts
    seeds = [seed * 1000 + i for i in range(parts)]
    with ProcessPoolExecutor(parts, mp_context=get_context("fork")) as pool:  # numpy and Pillow only: no CUDA
        list(pool.map(make_photos, folders, counts, widths, heights, classes, seeds))
    for folder in folders:
        for file in sorted(folder.rglob("*.jpg")):
            (root / file.parent.name).mkdir(exist_ok=True)
            file.rename(root / file.parent.name / f"{folder.name}-{file.name}")
        shutil.rmtree(folder)
    return root


def image_directories(
    photo: tuple[int, int], work: Path, name: str, train_images: int, valid_images: int
) -> tuple[Path, Path]:
    """`train_images` + `valid_images` generated JPEGs of `photo` (width, height), converted and split into two
    image directories."""
    import imgtrain

    folder = make_photos_in_parallel(work / f"{name}-photos", train_images + valid_images, photo, seed=len(name))
    imgtrain.convert(folder, work / f"{name}-all", progress=False)
    train, valid = work / f"{name}-train", work / f"{name}-valid"
    imgtrain.split(work / f"{name}-all", train, valid, fraction=train_images / (train_images + valid_images))
    return train, valid


def make_data(plan: Plan, work: Path) -> Data:
    """The JPEG image directories, the untrained model directories and the transformation file."""
    import imgtrain

    train, valid = image_directories(plan.photo, work, "bench", plan.images, plan.valid)
    repeat_train, repeat_valid = image_directories(plan.photo, work, "repeat", plan.repeat_images, plan.valid)
    for name, model in (("untrained", plan.model), ("repeat-untrained", plan.repeat_model)):
        imgtrain.create_model_directory(work / name, imgtrain.Architecture("resnet", model), pretrained=False)
    spec = imgtrain.TransformSpec(**plan.spec)
    transform_file = imgtrain.init_transform(work / "transform.json", spec)
    return Data(
        work,
        work / "bench-photos",
        train,
        valid,
        work / "untrained",
        spec,
        transform_file,
        repeat_train,
        repeat_valid,
        work / "repeat-untrained",
    )


# --- the run


def environment(device) -> dict[str, Any]:
    """The machine and the software versions the figures belong to."""
    import torch

    import imgtrain
    from imgtrain.parallel import default_loader_workers

    env = {
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "imgtrain": imgtrain.__version__,
        "cpu_cores": os.cpu_count(),
        "loader_workers": default_loader_workers(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "device_name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "tf32_at_start": tf32_flags(device),
        }
    else:
        names = [line.split(":", 1)[1].strip() for line in cpuinfo().splitlines() if line.startswith("model name")]
        env["device_name"] = f"CPU: {names[0] if names else platform.processor() or 'unknown'}"
    return env


def cpuinfo() -> str:
    """/proc/cpuinfo's text, or nothing where there is none."""
    path = Path("/proc/cpuinfo")
    return path.read_text() if path.exists() else ""


STARTED = time.monotonic()


def section(title: str) -> None:
    """A progress line on stderr (stdout carries only the table), with the seconds since the start."""
    print(f"[{time.monotonic() - STARTED:5.0f} s] {title} ...", file=sys.stderr, flush=True)


def training_sections(plan: Plan, device, data: Data, clock: Clock) -> dict[str, list[dict[str, Any]]]:
    """The synthetic training rows (each precision, channels-last off and on), then imgtrain.train's rows."""
    section(f"train {plan.model}, synthetic tensors on {device}")
    deadline = clock.until("synthetic")
    synthetic = [
        guarded(
            device,
            deadline,
            partial(synthetic_train, plan, device, precision, layout),
            precision=precision,
            channels_last=layout,
            batch=plan.batch,
        )
        for precision in plan.precisions
        for layout in (False, True)
    ]
    section(f"train {plan.model} with imgtrain.train on {plan.images} JPEGs")
    deadline = clock.until("imgtrain")
    real = [
        guarded(
            device,
            deadline,
            partial(imgtrain_train, plan, data, device, precision, repeatable, batch),
            precision=precision,
            repeatable=repeatable,
            batch=batch,
        )
        for precision, repeatable, batch in plan.train_runs
    ]
    return {"train_synthetic": synthetic, "train_imgtrain": real}


def scoring_sections(plan: Plan, device, data: Data, clock: Clock, trained: Path | None) -> dict[str, Any]:
    """Scoring rows, synthetic then through imgtrain.score, with a model that the training rows wrote."""
    deadline = clock.until("score")
    if trained is None:
        missing = {"error": "no trained model: every imgtrain.train row failed"}
        return {"score_synthetic": [missing], "score_imgtrain": [missing]}
    section(f"score with {plan.model} (model of {trained.name})")
    synthetic = [
        guarded(
            device,
            deadline,
            partial(synthetic_score, plan, device, trained, precision),
            precision=precision,
            channels_last=True,
            batch=plan.batch,
        )
        for precision in plan.score_precisions
    ]
    real = [
        guarded(
            device,
            deadline,
            partial(imgtrain_score, plan, device, trained, data.train, precision),
            precision=precision,
            channels_last=True,
        )
        for precision in plan.score_precisions
    ]
    return {"score_synthetic": synthetic, "score_imgtrain": real, "scored_with": trained.name}


def check_sections(plan: Plan, device, data: Data, clock: Clock) -> dict[str, Any]:
    """The policy's choice, the repeatability check and the CLI pipeline."""
    section("precision policy")
    chosen = guarded(device, clock.until("policy"), partial(policy, plan, device))
    section(f"repeatability: imgtrain train twice per precision, {plan.repeat_model}")
    runs = [
        guarded(device, clock.until("repeat"), partial(repeat_once, plan, data, precision, clock), precision=precision)
        for precision in plan.repeat_precisions
    ]
    section("CLI pipeline")
    pipeline = guarded(device, clock.until("cli"), partial(cli_pipeline, plan, data, clock))
    repeat = {
        "model": plan.repeat_model,
        "images": plan.repeat_images,
        "epochs": 1,
        "batch": cli_batch(plan.repeat_images),
    }
    return {
        "policy": chosen,
        "repeatability": repeat
        | {"runs": runs, "identical": bool(runs) and all(r.get("identical") is True for r in runs)},
        "cli_pipeline": pipeline,
    }


def run(plan: Plan, work: Path) -> dict[str, Any]:
    """Every section, in order; the document that --out receives."""
    import torch

    device = torch.device(plan.device)
    clock = Clock(plan.budget)
    doc: dict[str, Any] = {"format": "imgtrain.gpu-bench", "format_version": 1, "dry_run": plan.device == "cpu"}
    doc |= {"environment": environment(device), "plan": dataclasses.asdict(plan), "timed": TIMED}
    section(f"making {plan.images + plan.valid} + {plan.repeat_images + plan.valid} JPEGs of {plan.photo}")
    data = make_data(plan, work)
    doc |= training_sections(plan, device, data, clock)
    models = [data.work / row["model_dir"] for row in doc["train_imgtrain"] if "model_dir" in row]
    doc |= scoring_sections(plan, device, data, clock, models[0] if models else None)
    doc |= check_sections(plan, device, data, clock)
    doc["anchors"] = ANCHORS
    doc["seconds"] = clock.elapsed()
    return doc


TIMED = {
    "train_synthetic": "the model alone: --steps SGD steps on random tensors on the device after --warmup untimed "
    "ones, between two torch.cuda.synchronize; cuDNN autotuning on; fp32 = TF32 off, tf32 = TF32 on",
    "train_imgtrain": "imgtrain.train on a JPEG image directory (imgtrain.convert): its own epoch timing (loader "
    "start to the last step, which syncs) of the epochs after the first; validation, checkpoints and saving are "
    "outside it (train_call_seconds is the whole call); TF32 as PyTorch sets it (matmul off, cuDNN on)",
    "score_synthetic": "Model.probabilities on batches already on the device (BatchNorm folded, channels-last, the "
    "probabilities copied to the CPU), after --warmup untimed batches",
    "score_imgtrain": "imgtrain.score on the training JPEGs (read, decode, transform, batches of 32, default loader "
    "workers): the second call's wall time",
    "policy": "devices.resolve_precision('auto') with devices.measure_speedup of the real network's step",
    "repeatability": "two `imgtrain train` processes, same seed, --repeatable; model.safetensors compared bytewise",
    "cli_pipeline": "each command a fresh `python -m imgtrain` process",
}


# --- the report


def rate(value: float | None) -> str:
    """images/s as the table shows it."""
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def mib(value: float | None) -> str:
    """Peak memory as the table shows it."""
    return "" if value is None else f"{value / 1024:.1f} GiB"


def speed_lines(doc: dict[str, Any]) -> list[str]:
    """The table's rows of the speed sections."""
    lines = []
    labels = {
        "train_synthetic": "train, tensors on the device (ceiling)",
        "train_imgtrain": "train, imgtrain.train on JPEGs",
        "score_synthetic": "score, Model.probabilities on tensors",
        "score_imgtrain": "score, imgtrain.score on JPEGs",
    }
    for key, label in labels.items():
        for row in doc[key]:
            precision = row.get("precision", "")
            resolved = row.get("resolved_precision")
            if resolved and resolved != precision:
                precision = f"{precision} -> {resolved}"
            note = row.get("error") or ""
            if key == "train_imgtrain" and not note:
                note = (
                    f"{'repeatable' if row['repeatable'] else '--no-repeatable'}; first epoch "
                    f"{rate(row['first_epoch_images_per_second'])} img/s; train() {row['train_call_seconds']:.0f} s"
                )
            layout = {True: "yes", False: "no"}.get(row.get("channels_last"), "yes")
            lines.append(
                f"| {label} | {precision} | {layout} | {row.get('batch', '')} | "
                f"{rate(row.get('images_per_second'))} | {mib(row.get('peak_memory_mib'))} | {note} |"
            )
    return lines


def check_lines(doc: dict[str, Any]) -> list[str]:
    """The table's rows of the policy, the repeatability check and the CLI pipeline."""
    lines = []
    policy_doc = doc["policy"]
    for choice in policy_doc.get("choices", []):
        speed = f"{choice['candidate']} measured {choice['speedup']:.2f}x fp32" if choice["speedup"] else "no candidate"
        flag = "--repeatable" if choice["repeatable"] else "--no-repeatable"
        lines.append(f"| precision auto, {flag} | -> {choice['auto']} | | {choice['batch']} | | | {speed} |")
    if "error" in policy_doc:
        lines.append(f"| precision auto | | | | | | {policy_doc['error']} |")
    repeat = doc["repeatability"]
    for run in repeat["runs"]:
        verdict = run.get("error") or ("bit-identical weights" if run["identical"] else "weights DIFFER")
        precision = run["precision"] + (f" -> {run['resolved_precision']}" if "resolved_precision" in run else "")
        lines.append(
            f"| same seed twice, {repeat['model']}, 1 epoch | {precision} | | {repeat['batch']} | | | {verdict} |"
        )
    cli = doc["cli_pipeline"]
    codes = ", ".join(str(step["exit_code"]) for step in cli.get("steps", []))
    accuracy = f"; accuracy {cli['accuracy']:.3f} on {cli['scored_images']} images" if cli.get("accuracy") else ""
    verdict = cli.get("error") or f"exit codes {codes}{accuracy}"
    lines.append(
        f"| CLI convert, split, resnet, transform, train, score, evaluate | auto -> {cli.get('precision')} "
        f"| | {cli.get('batch', '')} | | | {verdict} |"
    )
    return lines


def markdown(doc: dict[str, Any]) -> str:
    """The Markdown table of every figure, with the anchors under it."""
    env, plan = doc["environment"], doc["plan"]
    head = (
        f"`bench/gpu.py{' --dry-run' if doc['dry_run'] else ''}` on {env['device_name']} ({env['date']}; torch "
        f"{env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; {env['cpu_cores']} CPU cores, "
        f"{env['loader_workers']} loader workers): {plan['model']} at {plan['size']} px, {doc['seconds']:.0f} s in all."
    )
    lines = [head, "", "| what | precision | channels-last | batch | images/s | peak GPU memory | note |"]
    lines.append("|---|---|---|---|---|---|---|")
    lines += speed_lines(doc) + check_lines(doc)
    lines += ["", ANCHOR_TITLE, *(f"- {anchor}" for anchor in doc["anchors"])]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu-bench.json"), help="JSON file; the table goes beside")
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU at tiny sizes (tests)")
    parser.add_argument("--quick", action="store_true", help="fewer steps, images and repeatability runs")
    parser.add_argument("--batch", type=int, help="batch of the synthetic rows (default 128; dry run 4)")
    parser.add_argument("--steps", type=int, help="timed steps per synthetic row (default 50)")
    parser.add_argument("--budget", type=float, help="seconds before the remaining rows are skipped (default 380)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the plan, write the JSON and the table, print the table."""
    args = parse_args(argv)
    plan, out = make_plan(args), args.out
    if args.dry_run:  # it checks the code, not the speed: one thread each, so a busy 2-core machine cannot stall it
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    if plan.device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU here; --dry-run runs the same code on the CPU.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="imgtrain-gpu-bench-") as tmp:
        os.environ["IMGTRAIN_CACHE_DIR"] = str(Path(tmp) / "decoded-cache")  # no cache from earlier runs
        os.environ.setdefault("IMGTRAIN_OFFLINE", "1")
        doc = run(plan, Path(tmp))
    table = markdown(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table, end="")
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
