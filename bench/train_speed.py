"""Training speed: imgtrain against the plain PyTorch-tutorial loop, same model, data, epochs, batch size.

    .venv/bin/python bench/train_speed.py --size 32 --images 3000 --model resnet18
    .venv/bin/python bench/train_speed.py --size 224 --images 400 --model densenet121 --epochs 1

Each run is a fresh process (its own peak memory): the plain loop, imgtrain, and the model-only ceiling
(the same network and SGD step on tensors already in memory) are alternated `--rounds` times and the
ratios use the best round of each, so a noisy neighbour does not decide them.
Prints training images/s, ratio imgtrain / plain, validation accuracy, peak RSS, and the
achieved FLOP/s as a fraction of this machine's float32 matmul peak (measured here too).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate, make_class_folder, matmul_peak_gflops, peak_rss_mb, report, train_step_flops  # noqa: E402


def plain_loop(train: Path, valid: Path, args) -> dict:
    """What a user writes from the PyTorch tutorial: ImageFolder, DataLoader defaults, SGD."""
    import torch
    import torchvision
    from torchvision import datasets, transforms

    torch.manual_seed(1)
    steps = [transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    if args.size > 64:
        steps = [transforms.Resize(256), transforms.CenterCrop(224)] + steps
    train_set = datasets.ImageFolder(train, transforms.Compose(steps))
    valid_set = datasets.ImageFolder(valid, transforms.Compose(steps))
    loader = torch.utils.data.DataLoader(train_set, batch_size=16, shuffle=True, drop_last=True)
    net = torchvision.models.get_model(args.model, num_classes=len(train_set.classes))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, nesterov=True, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    seen, seconds = 0, 0.0
    for _ in range(args.epochs):
        net.train()
        start = time.perf_counter()
        for images, labels in loader:
            optimizer.zero_grad()
            loss = criterion(net(images), labels)
            loss.backward()
            optimizer.step()
            seen += len(labels)
        seconds += time.perf_counter() - start
    net.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(valid_set, batch_size=16):
            correct += int((net(images).argmax(1) == labels).sum())
    return {"images_per_second": seen / seconds, "accuracy": correct / len(valid_set), "rss_mb": peak_rss_mb()}


def imgtrain_loop(train: Path, valid: Path, args) -> dict:
    import imgtrain

    work = Path(tempfile.mkdtemp(prefix="imgtrain-bench-"))
    spec = imgtrain.TransformSpec(random_horizontal_flip=False) if args.size > 64 else imgtrain.TransformSpec(
        resize=False, center_crop=False, random_horizontal_flip=False)
    imgtrain.create_model_directory(work / "untrained", imgtrain.Architecture(
        "densenet" if args.model.startswith("densenet") else "resnet", args.model), pretrained=False)
    config = imgtrain.TrainConfig(epochs=args.epochs, batch_size=16, patience=args.epochs, progress=False,
                                  precision=args.precision, repeatable=not args.no_repeatable)
    history = imgtrain.train(work / "untrained", train, valid, work / "model", config, spec)
    seen = sum(row["images_per_second"] * row["seconds"] for row in history)
    return {"images_per_second": seen / sum(row["seconds"] for row in history), "accuracy": history[-1]["val_top1"],
            "rss_mb": peak_rss_mb(), "precision": imgtrain.open_model_directory(work / "model").meta["training"].get(
                "precision")}


def ceiling(args) -> dict:
    """The model alone: the same network, SGD step and batch on random tensors in memory, for as long as an epoch."""
    import torch
    import torchvision

    size = 224 if args.size > 64 else args.size
    net = torchvision.models.get_model(args.model, num_classes=10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, nesterov=True, weight_decay=1e-4,
                                fused=True)
    x, y = torch.randn(16, 3, size, size), torch.randint(0, 10, (16,))
    steps = max(3, int(args.images * 0.9) // 16)
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return {"images_per_second": 16 * steps / (time.perf_counter() - start), "rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--no-repeatable", action="store_true", help="let auto pick bf16 where measured faster")
    parser.add_argument("--child", choices=["plain", "imgtrain", "ceiling"])
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.child == "ceiling":
        print(json.dumps(ceiling(args)))
        return
    if args.child:
        data = Path(args.data)
        run = plain_loop if args.child == "plain" else imgtrain_loop
        print(json.dumps(run(data / ("folders-train" if args.child == "plain" else "train"),
                             data / ("folders-valid" if args.child == "plain" else "valid"), args)))
        return

    import imgtrain

    with tempfile.TemporaryDirectory(prefix="imgtrain-bench-") as tmp:
        data = Path(tmp)
        make_class_folder(data / "folders-train", int(args.images * 0.9), args.size)
        make_class_folder(data / "folders-valid", args.images - int(args.images * 0.9), args.size, seed=1)
        imgtrain.convert(data / "folders-train", data / "train", progress=False)
        imgtrain.convert(data / "folders-valid", data / "valid", progress=False)
        common = ["--data", str(data), "--size", str(args.size), "--model", args.model, "--epochs",
                  str(args.epochs), "--precision", args.precision] + (["--no-repeatable"] if args.no_repeatable else [])
        results = alternate(__file__, common, args.rounds, ("plain", "imgtrain", "ceiling"))
        peak = matmul_peak_gflops()
    flops = train_step_flops(args.model, 224 if args.size > 64 else args.size, 16) / 16
    print(f"train {args.model} {args.size}px, {args.images} images, {args.epochs} epoch(s), batch 16, "
          f"{args.rounds} rounds; float32 matmul peak {peak:.0f} GFLOP/s")
    report(results, flops, peak)


if __name__ == "__main__":
    main()
