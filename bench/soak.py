"""Soak: many scorings and trainings in one process; resident memory must stay flat.

    .venv/bin/python bench/soak.py --score-rounds 50 --train-rounds 20

Prints the resident set size (RSS, current, not peak) after each round and the least-squares
slope in MB per round over the second half of the rounds (the first rounds fill caches and
allocator pools). A leak shows as a steady positive slope; the baseline is the slope of a loop
that allocates the same tensors without imgtrain (plain torch model forward passes).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import make_class_folder  # noqa: E402


def rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import resource

    return pages * resource.getpagesize() / 2**20


def slope(values: list[float]) -> float:
    """MB per round over the second half (least squares)."""
    half = values[len(values) // 2:]
    if len(half) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(half)), half, 1)[0])


def rounds(name: str, count: int, work) -> list[float]:
    values, started = [], time.perf_counter()
    for i in range(count):
        work(i)
        gc.collect()
        values.append(rss_mb())
    shown = " ".join(f"{v:.0f}" for v in values)
    print(f"{name}: {count} rounds in {time.perf_counter() - started:.0f}s; RSS MB per round: {shown}")
    print(f"{name}: RSS {values[0]:.0f} -> {values[-1]:.0f} MB; slope over the second half {slope(values):+.2f} "
          f"MB/round", flush=True)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--score-rounds", type=int, default=50)
    parser.add_argument("--train-rounds", type=int, default=20)
    parser.add_argument("--images", type=int, default=200, help="images scored per round; training uses as many")
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    import torch

    import imgtrain
    from imgtrain.inference.scoring import score_to_file

    logging_off = __import__("logging").getLogger("imgtrain")
    logging_off.setLevel("WARNING")
    with tempfile.TemporaryDirectory(prefix="imgtrain-soak-") as tmp:
        root = Path(tmp)
        imgtrain.convert(make_class_folder(root / "src", args.images, args.size), root / "images", progress=False)
        imgtrain.convert(make_class_folder(root / "vsrc", 50, args.size, seed=1), root / "valid", progress=False)
        imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"),
                                        pretrained=False)
        spec = imgtrain.TransformSpec(resize=False, center_crop=False)
        config = imgtrain.TrainConfig(epochs=1, batch_size=16, progress=False, overwrite=True)
        imgtrain.train(root / "untrained", root / "images", root / "valid", root / "model", config, spec)

        net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(64, 10)).eval()
        batch = torch.randn(32, 3, args.size, args.size)

        def plain(i: int) -> None:
            with torch.inference_mode():
                for _ in range(args.images // 32):
                    net(batch.clone())

        def score(i: int) -> None:
            score_to_file(root / "model", root / "images", root / "scores.csv", overwrite=True, progress=False)

        def train(i: int) -> None:
            imgtrain.train(root / "untrained", root / "images", root / "valid", root / "trained", config, spec)

        base = rounds("baseline (plain torch forward)", args.score_rounds, plain)
        scored = rounds(f"score ({args.images} images)", args.score_rounds, score)
        trained = rounds(f"train (1 epoch, {args.images} images)", args.train_rounds, train)
        print(f"summary: slope MB/round — baseline {slope(base):+.2f}, score {slope(scored):+.2f}, "
              f"train {slope(trained):+.2f}")


if __name__ == "__main__":
    main()
