"""Does a sweep find a better model than the designer's defaults in the same time, and what does pruning save?

Data it generates: the first --limit of scikit-learn's 1,797 digits at 32 px, split 80/20 into a pool and a
held-out test part that no run sees; the pool split 80/20 into training and validation.
Network: resnet18 from scratch (the demo's).

- budget: `imgtrain sweep` (default space, the given pruner) with --budget-minutes M, against the designer's
  defaults (SGD, lr 0.001, batch 16, patience 3) trained for about the same wall time (the epochs that fit M,
  measured from a 1-epoch run). Each model's accuracy on the held-out part.
- pruners: 8 trials, no pruning / median / Hyperband, the same sweep seed, each within --pruner-minutes: wall
  time, trials per hour, epochs run, and the best trial's held-out accuracy.

    .venv/bin/python bench/sweep.py --out sweep-results.json      # ~40 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def prepare(root: Path, limit: int | None) -> dict[str, Path]:
    """Digits -> image directory -> pool / test -> train / valid; the untrained resnet18 and the transform."""
    import imgtrain
    from imgtrain.demo import DIGITS_TRANSFORM, write_digits_folder

    write_digits_folder(root / "digits-src", limit=limit)
    images = imgtrain.convert(root / "digits-src", root / "digits", progress=False)
    imgtrain.split(images.root, root / "pool", root / "test", fraction=0.8, seed=7)
    imgtrain.split(root / "pool", root / "train", root / "valid", fraction=0.8, seed=1)
    imgtrain.init_transform(root / "transform.json", DIGITS_TRANSFORM)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    return {name: root / name for name in ("train", "valid", "test", "untrained", "transform.json")}


def held_out_accuracy(model: Path, test: Path) -> float:
    import imgtrain

    rows = imgtrain.score(model, test, progress=False)
    return sum(r["Scored Labels"] == r["label"] for r in rows) / len(rows)


def run_sweep(data: dict[str, Path], out: Path, trials: int, minutes: float | None, pruner: str) -> dict:
    """One sweep; its wall time, trial states and the best trial's held-out accuracy."""
    import imgtrain
    from imgtrain.sweeps.run import sweep
    from imgtrain.sweeps.settings import SweepConfig

    config = SweepConfig(trials=trials, budget_minutes=minutes, pruner=pruner)
    started = time.perf_counter()
    result = sweep(data["untrained"], data["train"], data["valid"], out, config,
                   imgtrain.TrainConfig(progress=False), transform=data["transform.json"])  # fmt: skip
    seconds = time.perf_counter() - started
    states = [row["state"] for row in result.trials]
    return {
        "pruner": pruner,
        "seconds": round(seconds, 1),
        "trials": len(states),
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "trials_per_hour": round(len(states) * 3600 / seconds, 1),
        "epochs_run": sum(row["epochs_run"] or 0 for row in result.trials),
        "best_params": result.best and result.best["params"],
        "best_val_loss": result.best and round(result.best["val_loss"], 4),
        "held_out_accuracy": result.best and round(held_out_accuracy(out / "best", data["test"]), 4),
    }


def run_defaults(data: dict[str, Path], out: Path, minutes: float) -> dict:
    """The designer's defaults trained for about `minutes`: the epochs that fit, from a 1-epoch run's time."""
    import imgtrain

    started = time.perf_counter()
    config = imgtrain.TrainConfig(epochs=1, progress=False)
    imgtrain.train(data["untrained"], data["train"], data["valid"], out / "one", config, data["transform.json"])
    epoch_seconds = time.perf_counter() - started
    epochs = max(5, int(minutes * 60 / epoch_seconds))
    started = time.perf_counter()
    config = imgtrain.TrainConfig(epochs=epochs, progress=False)
    result = imgtrain.train(data["untrained"], data["train"], data["valid"], out / "defaults", config,
                            data["transform.json"])  # fmt: skip
    return {
        "epochs": epochs,
        "epochs_run": len(result.history),
        "seconds": round(time.perf_counter() - started, 1),
        "best_val_loss": round(result.best["val_loss"], 4),
        "held_out_accuracy": round(held_out_accuracy(out / "defaults", data["test"]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, default=5.0, help="the budget part's sweep and defaults")
    parser.add_argument("--pruner-minutes", type=float, default=10.0, help="each pruner sweep's budget (8 trials)")
    parser.add_argument("--limit", type=int, default=900, help="the first N digits (all: 1797)")
    parser.add_argument("--pruner", default="median", help="the budget sweep's pruner")
    parser.add_argument("--parts", nargs="+", default=["budget", "pruners"], choices=["budget", "pruners"])
    parser.add_argument("--pruners", nargs="+", default=["none", "median", "hyperband"])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    import imgtrain

    results: dict = {"budget_minutes": args.budget_minutes, "pruner_minutes": args.pruner_minutes}
    with tempfile.TemporaryDirectory(prefix="imgtrain-bench-sweep-") as folder:
        root = Path(folder)
        data = prepare(root, args.limit)
        results["images"] = {k: len(imgtrain.ImageDirectory.open(data[k])) for k in ("train", "valid", "test")}
        if "budget" in args.parts:
            swept = run_sweep(data, root / "budget", 1000, args.budget_minutes, args.pruner)
            defaults = run_defaults(data, root / "defaults", args.budget_minutes)
            results["budget"] = {"sweep": swept, "defaults": defaults}
            print(json.dumps(results["budget"], indent=1), flush=True)
        if "pruners" in args.parts:
            results["pruners"] = []
            for pruner in args.pruners:
                row = run_sweep(data, root / f"pruner-{pruner}", 8, args.pruner_minutes, pruner)
                results["pruners"].append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
