"""Convert benchmark: images/s on one core vs all cores, and peak memory vs number of images.

    .venv/bin/python bench/convert_speed.py [--images 10000] [--size 32]

Each measurement runs in a fresh process so peak memory is its own. Prints one line per
run and the ratio of the parallel run to the single-process baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(root: Path, count: int, size: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8)
    for i in range(count):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(base[i % 64] ^ np.uint8(i % 251)).save(folder / f"img{i:06d}.png")


def measure(src: Path, out: Path, workers: int) -> dict:
    """Run convert in a child process; return its wall time and peak RSS (self + workers)."""
    os.sync()  # start each run with no dirty pages from the previous one being flushed
    code = (
        "import json, resource, sys, time, imgtrain\n"
        "t = time.perf_counter()\n"
        f"d = imgtrain.convert({str(src)!r}, {str(out)!r}, workers={workers}, progress=False)\n"
        "dt = time.perf_counter() - t\n"
        "own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'images': len(d), 'seconds': dt, 'rss_mb': own / 1024, 'worker_rss_mb': kids / 1024}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--small", type=int, default=2_000, help="image count of the memory baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imgtrain-bench-") as tmp:
        tmp = Path(tmp)
        make_images(tmp / "big", args.images, args.size)
        make_images(tmp / "small", args.small, args.size)
        one = measure(tmp / "big", tmp / "out1", workers=1)
        two = measure(tmp / "big", tmp / "out2", workers=2)
        small = measure(tmp / "small", tmp / "out3", workers=2)
    for name, r in (("1 process ", one), ("2 processes", two), (f"2 processes, {args.small} images", small)):
        print(f"convert {name}: {r['images']} images in {r['seconds']:.2f}s = {r['images'] / r['seconds']:,.0f} img/s; "
              f"peak RSS main {r['rss_mb']:.0f} MB, largest worker {r['worker_rss_mb']:.0f} MB")
    print(f"ratio 2 processes / 1 process: {one['seconds'] / two['seconds']:.2f}x")
    print(f"main-process peak RSS growth {args.small} -> {args.images} images: "
          f"{two['rss_mb'] - small['rss_mb']:+.0f} MB")


if __name__ == "__main__":
    main()
