"""Deployment speed and accuracy on this CPU: torch fp32 against ONNX Runtime and OpenVINO, fp32 and INT8.

    .venv/bin/python bench/deploy_speed.py --out deploy.json        # ~10 minutes on 2 cores

Two networks at 224 px: resnet18 (trained from scratch here) and a mobile one, timm's efficientnet_lite0 with real
ImageNet-1k weights (bench/imagenet_backbone.py) fine-tuned; both on bench/real_photos.py's eight classes of crops
of real photographs (--shots training crops per class, --valid held-out crops per class, from disjoint parts of
each photo). Each trained model is exported with `imgtrain export` in every format that runs here; INT8 is
calibrated on the training crops, so no validation crop is seen before it is scored.

Speed: the network alone (the export's own file: normalization and softmax inside) on the same preprocessed
batches of --batch images, every runtime timed in turn within each of --rounds rounds (alternated, so a slow minute
hits all of them), the median round kept; torch is imgtrain's scorer network (BatchNorm folded, channels-last) at
fp32, and at the precision `--precision auto` picks here. Accuracy: every validation crop, top-1, and the share of
labels that agree with torch fp32's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIZE = 224
NETWORKS = {"resnet18": "resnet18", "efficientnet_lite0": "timm/efficientnet_lite0"}
EXPORTS = {
    "onnxruntime fp32": ("onnx", False),
    "onnxruntime int8": ("onnx", True),
    "openvino fp32": ("openvino", False),
    "openvino int8": ("openvino", True),
}


def _bench(name: str):
    """Another bench script as a module (they are not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare_data(root: Path, shots: int, valid: int) -> tuple[Path, Path]:
    """(train, valid) image directories of real-photo crops at SIZE px."""
    import imgtrain

    train_src, valid_src = _bench("real_photos").make_texture_photos(root / "src", shots, valid, seed=0, size=SIZE)
    imgtrain.convert(train_src, root / "train", progress=False)
    imgtrain.convert(valid_src, root / "valid", progress=False)
    return root / "train", root / "valid"


def train_model(root: Path, name: str, train: Path, valid: Path, epochs: int) -> Path:
    """A trained model directory of network `name` (the mobile one from ImageNet weights, resnet18 from scratch)."""
    import imgtrain

    pretrained = name == "efficientnet_lite0"
    weights = _bench("imagenet_backbone").write_backbone(root / "lite0.safetensors") if pretrained else None
    untrained = root / f"{name}-untrained"
    imgtrain.create_model_directory(
        untrained, imgtrain.Architecture.from_catalog(NETWORKS[name]), pretrained=pretrained, weights=weights
    )
    config = imgtrain.TrainConfig(epochs=epochs, patience=epochs, progress=False, workers=0, recipe="modern")
    spec = imgtrain.TransformSpec(size=SIZE, crop_size=SIZE)
    imgtrain.train(untrained, train, valid, root / name, config, spec)
    return root / name


def runners(root: Path, model: Path, train: Path) -> dict:
    """{row: (run a float32 batch in [0, 1] -> probabilities, seconds the export took)} for every runtime here."""
    import torch

    import imgtrain
    from imgtrain.deploy.export import export_model
    from imgtrain.deploy.exported import ExportedModel
    from imgtrain.deploy.runtimes import Runtime
    from imgtrain.inference.model import _inference_network

    trained = imgtrain.open_model_directory(model)
    found: dict = {}
    for precision in ("fp32", "auto"):
        scorer = imgtrain.load_model(model, device="cpu", precision=precision)
        probe = torch.zeros(16, 3, SIZE, SIZE)
        scorer.probabilities(probe)  # resolves `auto` by measuring, as `imgtrain score` does
        net = ExportedModel(_inference_network(trained.network(), torch.device("cpu")), trained.mean, trained.std)
        found[f"torch {scorer.precision}" + (" (auto)" if precision == "auto" else "")] = (
            _torch_runner(net.eval(), scorer),
            0.0,
        )
    for row, (fmt, int8) in EXPORTS.items():
        started = time.perf_counter()
        out = export_model(
            model, root / f"{model.name}-{row.replace(' ', '-')}", fmt, int8=int8, images=train if int8 else None
        ).path
        runtime = Runtime(out / ("model.onnx" if fmt == "onnx" else "model.xml"), row.split()[0])
        found[row] = (runtime.run, time.perf_counter() - started)
    return found


def _torch_runner(net, scorer):
    """The export's function computed by torch at the scorer's precision."""
    import torch

    from imgtrain.devices import autocast_for

    def run(batch):
        with torch.inference_mode(), autocast_for(scorer.device, scorer.precision):
            return net(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)).float().numpy()

    return run


def measure(model: Path, valid: Path, found: dict, batch: int, rounds: int) -> dict:
    """{row: images/s (median round), accuracy, agreement with torch fp32, export seconds} on the validation crops."""
    import numpy as np

    import imgtrain
    from imgtrain.deploy.check import check_images

    trained = imgtrain.open_model_directory(model)
    images = check_images(trained, valid)
    batches = list(images.batches(batch))
    labels = [label for _, chunk in batches for label in chunk]
    answers = {row: np.concatenate([run(b) for b, _ in batches]).argmax(1) for row, (run, _) in found.items()}
    reference = answers["torch fp32"]
    timed = [b for b, _ in batches if len(b) == batch][:4]
    seconds: dict[str, list[float]] = {row: [] for row in found}
    for _ in range(rounds):
        for row, (run, _) in found.items():
            started = time.perf_counter()
            for b in timed:
                run(b)
            seconds[row].append(time.perf_counter() - started)
    torch_speed = len(timed) * batch / statistics.median(seconds["torch fp32"])
    result = {}
    for row, (_, export_seconds) in found.items():
        speed = len(timed) * batch / statistics.median(seconds[row])
        result[row] = {
            "images_per_second": speed,
            "speedup_vs_torch_fp32": speed / torch_speed,
            "accuracy": float(
                np.mean([trained.classes[a] == label for a, label in zip(answers[row], labels, strict=True)])
            ),
            "agreement_with_torch_fp32": float(np.mean(answers[row] == reference)),
            "export_seconds": export_seconds,
        }
    return result


def table(results: dict, cpu: str) -> str:
    """The Markdown table of every network and runtime."""
    lines = [
        f"CPU: {cpu}",
        "",
        "| network | runtime | images/s | × torch fp32 | top-1 | Δ top-1 (points) | labels = torch fp32 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for network, rows in results.items():
        base = rows["torch fp32"]["accuracy"]
        for row, r in rows.items():
            lines.append(
                f"| {network} | {row} | {r['images_per_second']:.0f} | {r['speedup_vs_torch_fp32']:.2f} | "
                f"{100 * r['accuracy']:.1f}% | {100 * (r['accuracy'] - base):+.1f} | "
                f"{100 * r['agreement_with_torch_fp32']:.1f}% |"
            )
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name and whether it has VNNI (fast INT8) and native bf16."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    extras = [f for f in ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8") if f in flags]
    import torch

    return f"{model}, {torch.get_num_threads()} threads, {' '.join(extras) or 'no VNNI / bf16 / AMX'}"


def main(argv: list[str] | None = None) -> None:
    """Train both networks, export them, time and score every runtime, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("deploy-speed.json"))
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--shots", type=int, default=20, help="training crops per class")
    parser.add_argument("--valid", type=int, default=100, help="validation crops per class")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="deploy-speed-"))
    train, valid = prepare_data(root, args.shots, args.valid)
    results = {}
    for name in args.networks:
        started = time.perf_counter()
        model = train_model(root, name, train, valid, args.epochs)
        results[name] = measure(model, valid, runners(root, model, train), args.batch, args.rounds)
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    cpu = cpu_name()
    text = table(results, cpu)
    print(text)
    args.out.write_text(
        json.dumps(
            {"cpu": cpu, "size": SIZE, "args": vars(args) | {"out": str(args.out)}, "results": results}, indent=2
        )
        + "\n"
    )
    args.out.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
