"""Scoring speed: imgtrain score against a plain `model.eval()` loop, same weights, images and transforms.

    .venv/bin/python bench/score_speed.py --size 224 --images 480 --model resnet18

Fresh process per run, alternated `--rounds` times, best round of each compared. Prints images/s,
the ratio imgtrain / plain, peak RSS and FLOP/s as a fraction of the float32 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, eval_flops, make_class_folder, matmul_peak_gflops, peak_rss_mb, report  # noqa: E402


def plain_loop(folder: Path, model_dir: Path, args) -> dict:
    """The loop a user writes: ImageFolder, DataLoader(batch_size=16), model.eval(), torch.no_grad()."""
    import torch
    import torchvision
    from safetensors.torch import load_file
    from torchvision import datasets, transforms

    steps = [transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    if args.size > 64:
        steps = [transforms.Resize(256), transforms.CenterCrop(224)] + steps
    data = datasets.ImageFolder(folder, transforms.Compose(steps))
    net = torchvision.models.get_model(args.model, num_classes=len(data.classes))
    net.load_state_dict(load_file(model_dir / "model.safetensors"))
    net.eval()
    start, rows = time.perf_counter(), 0
    with torch.no_grad():
        for images, _ in torch.utils.data.DataLoader(data, batch_size=16):
            torch.softmax(net(images), 1)
            rows += len(images)
    return {"images_per_second": rows / (time.perf_counter() - start), "rss_mb": peak_rss_mb()}


def imgtrain_loop(directory: Path, model_dir: Path, args) -> dict:
    import imgtrain
    from imgtrain.inference.scoring import score_to_file

    model = imgtrain.load_model(model_dir)
    out = Path(tempfile.mkdtemp()) / "scores.csv"
    start = time.perf_counter()
    _, rows = score_to_file(model, directory, out, progress=False)
    return {"images_per_second": rows / (time.perf_counter() - start), "rss_mb": peak_rss_mb()}


def make_model_directory(out: Path, model_name: str, size: int) -> None:
    """A model directory with random weights (speed does not depend on what the weights learned)."""
    import torch

    import imgtrain
    from imgtrain.files import building_dir
    from imgtrain.models.model_directory import write_model_directory

    family = "densenet" if model_name.startswith("densenet") else "resnet"
    arch = imgtrain.Architecture(family, model_name)
    torch.manual_seed(0)
    spec = imgtrain.TransformSpec(random_horizontal_flip=False) if size > 64 else imgtrain.TransformSpec(
        resize=False, center_crop=False, random_horizontal_flip=False)
    with building_dir(out) as tmp:
        write_model_directory(tmp, architecture=arch, classes=[f"class{i}" for i in range(10)],
                              weights=arch.build(10).state_dict(), transform=spec, mean=(0.485, 0.456, 0.406),
                              std=(0.229, 0.224, 0.225), training={}, history=[], best_epoch=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=480)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=["plain", "imgtrain"])
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.child:
        data = Path(args.data)
        if args.child == "plain":
            result = plain_loop(data / "folders", data / "model", args)
        else:
            result = imgtrain_loop(data / "images", data / "model", args)
        print(json.dumps(result))
        return

    import imgtrain

    with tempfile.TemporaryDirectory(prefix="imgtrain-bench-") as tmp:
        data = Path(tmp)
        make_class_folder(data / "folders", args.images, args.size)
        imgtrain.convert(data / "folders", data / "images", progress=False)
        make_model_directory(data / "model", args.model, args.size)
        common = ["--data", str(data), "--size", str(args.size), "--model", args.model]
        results = alternate(__file__, common, args.rounds)
        peak = matmul_peak_gflops()
    flops = eval_flops(args.model, 224 if args.size > 64 else args.size, 1)
    print(f"score {args.model} {args.size}px, {args.images} images, {args.rounds} rounds; "
          f"float32 matmul peak {peak:.0f} GFLOP/s")
    report(results, flops, peak)


if __name__ == "__main__":
    main()
