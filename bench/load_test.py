"""Load test of `imgtrain serve` on loopback: N concurrent clients for a fixed time.

    .venv/bin/python bench/load_test.py --clients 8 --seconds 20 --size 64

Trains a small resnet18 on generated images, starts `imgtrain serve` in a child process, and
runs `--clients` threads that each POST one image after another for `--seconds`. Prints
requests/s, p50 / p99 latency and the error count (must be 0). The baseline is the same load
with batching off (--max-batch 1), in the same run: the ratio shows what batching brings.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import make_class_folder  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def load(url: str, image: bytes, clients: int, seconds: float) -> dict:
    body, content_type = _multipart(image)
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds

    def client() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                request = urllib.request.Request(url + "predict", data=body, headers={"Content-Type": content_type})
                with urllib.request.urlopen(request, timeout=30) as answer:
                    answer.read()
                latencies.append(time.perf_counter() - started)
            except Exception:
                errors[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"rps": len(latencies) / elapsed, "p50": float(np.percentile(ms, 50)) if len(ms) else 0.0,
            "p99": float(np.percentile(ms, 99)) if len(ms) else 0.0, "requests": len(latencies), "errors": errors[0]}


def run_server(model: Path, max_batch: int, clients: int, seconds: float, image: bytes) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, "-m", "imgtrain", "serve", str(model), "--port", str(port),
                               "--max-batch", str(max_batch)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        load(url, image, clients, 2.0)  # warm-up
        return load(url, image, clients, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=64, help="side of the served images (pixels)")
    args = parser.parse_args()

    import logging

    import imgtrain

    logging.getLogger("imgtrain").setLevel("WARNING")
    with tempfile.TemporaryDirectory(prefix="imgtrain-load-") as tmp:
        root = Path(tmp)
        imgtrain.convert(make_class_folder(root / "src", 100, args.size), root / "images", progress=False)
        imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"),
                                        pretrained=False)
        spec = imgtrain.TransformSpec(resize=False, center_crop=False)
        imgtrain.train(root / "untrained", root / "images", root / "images", root / "model",
                       imgtrain.TrainConfig(epochs=1, progress=False), spec)
        image = next((root / "src").rglob("*.png")).read_bytes()
        results = {}
        for name, max_batch in (("no batching (--max-batch 1)", 1), ("batching (--max-batch 16)", 16)):
            r = results[name] = run_server(root / "model", max_batch, args.clients, args.seconds, image)
            print(f"{name}: {args.clients} clients x {args.seconds:.0f}s, {args.size}px images: {r['rps']:.1f} req/s, "
                  f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['requests']} requests, {r['errors']} errors",
                  flush=True)
        base, batched = results.values()
        print(f"ratio batching / no batching: {batched['rps'] / base['rps']:.2f}x requests/s")


if __name__ == "__main__":
    main()
