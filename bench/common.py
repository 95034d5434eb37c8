"""Shared pieces of the benchmarks: generated data, child processes, peak memory, FLOP counts."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_class_folder(root: Path, count: int, size: int, classes: int = 10, seed: int = 0) -> Path:
    """`count` learnable images in `classes` folders: a class is a coloured shape position plus noise."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        label = i % classes
        pixels = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
        band = slice(label * size // classes, (label + 1) * size // classes)
        pixels[band, :, label % 3] = 230
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png" if size <= 64 else folder / f"{i:06d}.jpg")
    return root


def make_photos(root: Path, count: int, width: int = 4032, height: int = 3024, classes: int = 4,
                seed: int = 0) -> Path:
    """`count` camera-like JPEGs (quality 90) in `classes` folders: a class is a large shape of its own colour on
    a smooth random scene, overlaid with fine texture, so the files are as large (3-4 MB at 12 MP) and as
    costly to decode as real photos; flat colour would decode several times faster."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    tile = rng.normal(0, 10, (1024, 1024, 3))
    for i in range(count):
        label = i % classes
        small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
            (width // 8, height // 8), Image.BICUBIC)
        draw = ImageDraw.Draw(small)
        for _ in range(6):  # clutter shared by every class
            x, y = rng.integers(0, width // 8, 2)
            draw.rectangle([x, y, x + rng.integers(10, 80), y + rng.integers(10, 80)],
                           fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        x, y, r = rng.integers(width // 32, width // 12), rng.integers(height // 32, height // 12), height // 24
        colour = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40)][label % 4]
        draw.ellipse([x, y, x + 2 * r, y + 2 * r], fill=colour)
        pixels = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.float32)
        dy, dx = rng.integers(0, 1024, 2)
        texture = np.roll(tile, (dy, dx), axis=(0, 1))
        pixels += np.tile(texture, (height // 1024 + 1, width // 1024 + 1, 1))[:height, :width]
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str, args: list[str]) -> dict:
    """Run `script --child ...` in a fresh process and return the JSON it prints last."""
    result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def matmul_peak_gflops(dtype_name: str = "float32", n: int = 2048, seconds: float = 2.0) -> float:
    """Achieved GFLOP/s of a large square matmul: this machine's practical peak for `dtype_name`."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def train_step_flops(model_name: str, size: int, batch: int, classes: int = 10) -> float:
    """FLOPs of one forward + backward pass of `model_name` on a batch."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    net = torchvision.models.get_model(model_name, num_classes=classes)
    x = torch.randn(batch, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return float(counter.get_total_flops())


def eval_flops(model_name: str, size: int, batch: int, classes: int = 10) -> float:
    """FLOPs of one forward pass."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    net = torchvision.models.get_model(model_name, num_classes=classes).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net(torch.randn(batch, 3, size, size))
    return float(counter.get_total_flops())


def alternate(script: str, args: list[str], rounds: int,
              names: tuple[str, ...] = ("plain", "imgtrain")) -> dict[str, list[dict]]:
    """Run each named child (plain and imgtrain by default) `rounds` times, alternating, so drift hits all alike."""
    results: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in results:
            results[name].append(run_child(script, ["--child", name, *args]))
    return results


def report(results: dict[str, list[dict]], flops_per_image: float, peak_gflops: float) -> None:
    """One line per side (best round), then the ratio imgtrain / plain."""
    best = {}
    for name, runs in results.items():
        best[name] = max(runs, key=lambda r: r["images_per_second"])
        rate = best[name]["images_per_second"]
        extra = "".join(f"; {key} {value:.3f}" if isinstance(value, float) else f"; {key} {value}"
                        for key, value in best[name].items() if key not in ("images_per_second", "rss_mb"))
        rounds = ", ".join(f"{r['images_per_second']:.1f}" for r in runs)
        print(f"  {name:8s}: {rate:7.1f} img/s (rounds: {rounds}); "
              f"peak RSS {best[name]['rss_mb']:.0f} MB; {rate * flops_per_image / 1e9 / peak_gflops:.0%} of matmul "
              f"peak{extra}")
    print(f"  ratio imgtrain / plain: {best['imgtrain']['images_per_second'] / best['plain']['images_per_second']:.2f}x")
    if "ceiling" in best:
        top = best["ceiling"]["images_per_second"]
        print(f"  of the model-only ceiling: imgtrain {best['imgtrain']['images_per_second'] / top:.0%}, "
              f"plain {best['plain']['images_per_second'] / top:.0%}")
