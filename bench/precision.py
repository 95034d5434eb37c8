"""Precision on this machine: bf16 vs fp32 speed (training step and scoring) and bit-repeatability.

    .venv/bin/python bench/precision.py                       # resnet18 at 32 and 224 px, batch 16
    .venv/bin/python bench/precision.py --sizes 224 --model densenet121

Speed: one training step (forward, backward, SGD) and one scoring forward per precision, the
precisions alternated `--rounds` times in this one process, best round of each; the ratio is
what `--precision auto` weighs (it picks a reduced precision only at >= 1.1x, and only where
the run's promise allows). Repeatability: `--steps` training steps twice per precision from the
same seed and data; "repeatable" when the weights are bit-identical, also with oneDNN's
deterministic mode (torch.backends.mkldnn.deterministic) for bf16.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from pathlib import Path


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    found = sorted(set(re.findall(r"\b(avx512_bf16|amx_bf16|avx512f|avx2)\b", text)))
    return " ".join(found) or "none of avx2/avx512f/avx512_bf16/amx_bf16"


def make_net(model: str, seed: int = 0):
    import torch
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.get_model(model, num_classes=10)


def timed_steps(model: str, size: int, batch: int, precisions: list[str], rounds: int) -> dict[str, dict[str, float]]:
    """Best seconds per training step and per scoring forward, for each precision."""
    import torch

    from imgtrain.devices import autocast_for

    device = torch.device("cpu")
    net = make_net(model)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True, fused=True)
    images, labels = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))

    def train_step(precision: str) -> float:
        start = time.perf_counter()
        net.train()
        with autocast_for(device, precision):
            loss = torch.nn.functional.cross_entropy(net(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    def score_step(precision: str) -> float:
        start = time.perf_counter()
        net.eval()
        with torch.inference_mode(), autocast_for(device, precision):
            torch.softmax(net(images.contiguous(memory_format=torch.channels_last)).float(), 1)
        return time.perf_counter() - start

    best = {p: {"train": float("inf"), "score": float("inf")} for p in precisions}
    for precision in precisions:  # warm-up: kernels chosen, caches filled
        train_step(precision), score_step(precision)
    for _ in range(rounds):
        for precision in precisions:
            best[precision]["train"] = min(best[precision]["train"], train_step(precision))
            best[precision]["score"] = min(best[precision]["score"], score_step(precision))
    return best


def weights_hash(model: str, size: int, batch: int, precision: str, steps: int, deterministic: bool) -> str:
    import torch

    from imgtrain.devices import autocast_for

    torch.backends.mkldnn.deterministic = deterministic
    net = make_net(model)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9, nesterov=True, fused=True)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    for _ in range(steps):
        with autocast_for(torch.device("cpu"), precision):
            loss = torch.nn.functional.cross_entropy(net(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.backends.mkldnn.deterministic = False
    digest = hashlib.md5()
    for tensor in net.state_dict().values():
        digest.update(tensor.float().numpy().tobytes())
    return digest.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="training steps of each repeatability run")
    parser.add_argument("--repeat-size", type=int, default=32, help="image size of the repeatability runs")
    args = parser.parse_args()

    import torch

    from imgtrain.devices import Capability, candidate_precision, cpu_has_fast_bf16

    cap = Capability.of(torch.device("cpu"))
    print(f"CPU flags: {cpu_flags()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}"
          f", {torch.get_num_threads()} threads; bf16 matmul measured fast: {cpu_has_fast_bf16()}")
    print(f"auto may try: repeatable -> {candidate_precision(cap, True) or 'fp32 only'}, "
          f"--no-repeatable -> {candidate_precision(cap, False) or 'fp32 only'}")
    for size in args.sizes:
        best = timed_steps(args.model, size, args.batch, ["fp32", "bf16"], args.rounds)
        for kind in ("train", "score"):
            fp32, bf16 = best["fp32"][kind], best["bf16"][kind]
            print(f"{args.model} {size:>3} px {kind:<5} batch {args.batch}: fp32 {args.batch / fp32:8.1f} img/s, "
                  f"bf16 {args.batch / bf16:8.1f} img/s, bf16/fp32 {fp32 / bf16:5.2f}x")
    for precision, deterministic in (("fp32", False), ("bf16", False), ("bf16", True)):
        hashes = [weights_hash(args.model, args.repeat_size, 8, precision, args.steps, deterministic)
                  for _ in range(2)]
        label = precision + (" + onednn deterministic" if deterministic else "")
        print(f"repeatable {label:<28}: {'yes' if hashes[0] == hashes[1] else 'NO'} ({' '.join(hashes)})")


if __name__ == "__main__":
    main()
