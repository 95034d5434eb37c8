"""Peak memory of `train` and `score` against the number of images: it must not grow with the data.

    .venv/bin/python bench/memory.py --small 2000 --large 20000 --size 16
    .venv/bin/python bench/memory.py --small 100 --large 600 --photos 1024x768   # photos, through the cache

Each measurement is a fresh process; prints peak RSS for both sizes and the growth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import make_class_folder, make_photos, peak_rss_mb, run_child  # noqa: E402


def child(kind: str, data: Path, photos: bool = False) -> dict:
    import imgtrain

    spec = imgtrain.TransformSpec() if photos else imgtrain.TransformSpec(resize=False, center_crop=False,
                                                                           random_horizontal_flip=False)
    if kind == "train":
        imgtrain.train(data.parent / "untrained", data, data.parent / "valid", Path(tempfile.mkdtemp()) / "m",
                       imgtrain.TrainConfig(epochs=1, batch_size=16, progress=False), spec)
    else:
        from imgtrain.inference.scoring import score_to_file

        score_to_file(data.parent / "model", data, Path(tempfile.mkdtemp()) / "s.csv", progress=False)
    return {"rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--photos", metavar="WxH", help="camera-like JPEGs of this size and the default "
                        "transformation (resize 256, crop 224), read through the decoded-image cache")
    parser.add_argument("--child", choices=["train", "score"])
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.data), bool(args.photos))))
        return

    import imgtrain

    with tempfile.TemporaryDirectory(prefix="imgtrain-bench-") as tmp:
        root = Path(tmp)
        os.environ["IMGTRAIN_CACHE_DIR"] = str(root / "cache")  # the children inherit it
        width, height = map(int, args.photos.split("x")) if args.photos else (0, 0)

        def make(folder: Path, count: int, seed: int = 0) -> None:
            if args.photos:
                make_photos(folder, count, width, height, seed=seed)
            else:
                make_class_folder(folder, count, args.size, seed=seed)

        for n in (args.small, args.large):
            make(root / f"src{n}", n)
            imgtrain.convert(root / f"src{n}", root / f"images{n}", progress=False)
        make(root / "valid-src", 100, seed=1)
        imgtrain.convert(root / "valid-src", root / "valid", progress=False)
        imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"),
                                        pretrained=False)
        spec = imgtrain.TransformSpec() if args.photos else imgtrain.TransformSpec(
            resize=False, center_crop=False, random_horizontal_flip=False)
        imgtrain.train(root / "untrained", root / "valid", root / "valid", root / "model",
                       imgtrain.TrainConfig(epochs=1, progress=False), spec)
        for kind in ("score", "train"):
            extra = ["--photos", args.photos] if args.photos else []
            rss = {n: run_child(__file__, ["--child", kind, "--data", str(root / f"images{n}"), *extra])["rss_mb"]
                   for n in (args.small, args.large)}
            print(f"{kind}: peak RSS {rss[args.small]:.0f} MB with {args.small} images, {rss[args.large]:.0f} MB "
                  f"with {args.large}: growth {rss[args.large] - rss[args.small]:+.0f} MB", flush=True)


if __name__ == "__main__":
    main()
