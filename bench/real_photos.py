"""A few-shot task on real photographs, offline: crops of eight photos that ship with scikit-learn and scikit-image.

    .venv/bin/python bench/real_photos.py OUT --shots 5 10 20   # OUT/train-5, OUT/train-10, OUT/train-20, OUT/valid

Each class is one photograph's material or scene, and its images are crops of that photo:

    brick     skimage.data.brick()              a brick wall (a CC0Textures texture)
    grass     skimage.data.grass()              grass, from above
    gravel    skimage.data.gravel()             gravel
    coins     skimage.data.coins()              Greek coins from Pompeii on a dark ground (Brooklyn Museum)
    galaxies  skimage.data.hubble_deep_field()  the Hubble eXtreme Deep Field
    cat       skimage.data.chelsea()            Chelsea the cat: fur, eyes, whiskers
    coffee    skimage.data.coffee()             an espresso cup on a saucer on a weathered wooden table
    temple    sklearn load_sample_image("china.jpg")  the Summer Palace's Tower of Buddhist Incense, trees, lake

Why these: each photo shows its material or scene from top to bottom, so both parts cut from it below hold the
class. Three are textures that resemble one another (brick, grass, gravel), coins and galaxies are bright blobs on a
dark ground, cat and coffee are close-ups with fine texture and blur, temple is a landscape (the tower, trees, lake,
sky). Left out: flower.jpg (one flower, the rest dark blurred leaves), rocket (mostly plain night sky), text and page
(too small for crops of this size), astronaut and camera (a person: much of the photo is no material), moon (its
docstring states no licence). Every crop is converted to grayscale (an 8-bit PNG), because three of the photos are
grayscale and the others would otherwise be told apart from them by colour alone.

Training and validation crops come from disjoint parts of each photo: its top 60% for training, its bottom 40% for
validation, so no validation pixel is ever seen in training (the parts differ: the cat's eyes above, its nose and
whiskers below; the cup above, the saucer and spoon below). A crop is a random square wholly inside its part, its side
a random 25-40% of the photo's shorter side (so it always fits in either part, and both parts' crops have the same
scale in pixels), resized to `size`. Crops are seeded per class and part: the first k training crops are the same
whatever the number of shots, so training sets for more shots contain those for fewer, and validation is the same for
every number of shots.

How hard (seed 0, 30 validation crops per class, 160 pixels): a logistic regression on grey-level histograms gets
58% at 5 and 10 shots, 53% at 20 (chance 12.5%); on bench/imagenet_backbone.py's ImageNet efficientnet_lite0
features, 98.3%, 99.2%, 99.6%.
"""

from __future__ import annotations

import argparse
import functools
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

#: class -> (loader, the photo's name in describe())
PHOTOS: dict[str, tuple[str, str]] = {
    "brick": ("skimage:brick", "scikit-image brick.png (CC0Textures Bricks25, CC0)"),
    "grass": ("skimage:grass", "scikit-image grass.png (DeviantArt linolafett 'Grass 01', CC0)"),
    "gravel": ("skimage:gravel", "scikit-image gravel.png (CC0Textures Gravel04, CC0)"),
    "coins": ("skimage:coins", "scikit-image coins.png (Brooklyn Museum collection, no known copyright restrictions)"),
    "galaxies": ("skimage:hubble_deep_field", "scikit-image hubble_deep_field.jpg (NASA, public domain)"),
    "cat": ("skimage:chelsea", "scikit-image chelsea.png (Stefan van der Walt, CC0)"),
    "coffee": ("skimage:coffee", "scikit-image coffee.png (Rachel Michetti, courtesy of Pikolo Espresso Bar, CC0)"),
    "temple": ("sklearn:china.jpg", "scikit-learn china.jpg (danielbuechele on Flickr, CC BY 2.0)"),
}
TRAIN_FRACTION = 0.6  # of the photo's height, from the top: training crops; the rest: validation crops
SCALE = (0.25, 0.4)  # a crop's side, as a fraction of the photo's shorter side

Box = tuple[int, int, int, int]  # left, top, right, bottom (PIL's crop box)


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """The class's photo as 8-bit grayscale (height, width), from the files shipped in the packages (no download)."""
    package, photo = PHOTOS[name][0].split(":")
    if package == "sklearn":
        from sklearn.datasets import load_sample_image

        pixels = load_sample_image(photo)
    else:
        from skimage import data

        pixels = getattr(data, photo)()
    return np.asarray(Image.fromarray(pixels).convert("L"))


def regions(shape: tuple[int, ...]) -> tuple[Box, Box]:
    """The training and validation parts of a photo of this (height, width): its top 60% and its bottom 40%."""
    height, width = shape[:2]
    cut = round(height * TRAIN_FRACTION)
    return (0, 0, width, cut), (0, cut, width, height)


def crop_boxes(shape: tuple[int, ...], part: str, count: int, seed: int, index: int) -> list[Box]:
    """`count` random square crops inside the photo's `part` ("train" or "valid"); a longer list extends a shorter."""
    left, top, right, bottom = regions(shape)[("train", "valid").index(part)]
    rng = np.random.default_rng([seed, index, ("train", "valid").index(part)])
    shorter = min(shape[:2])
    boxes = []
    for _ in range(count):
        side = min(round(rng.uniform(*SCALE) * shorter), right - left, bottom - top)
        x, y = int(rng.integers(left, right - side + 1)), int(rng.integers(top, bottom - side + 1))
        boxes.append((x, y, x + side, y + side))
    return boxes


def plan(shots: int, valid_per_class: int = 30, seed: int = 0) -> dict[str, dict[str, list[Box]]]:
    """Every class's crop boxes: {class: {"train": [...], "valid": [...]}}."""
    return {
        name: {
            "train": crop_boxes(load_photo(name).shape, "train", shots, seed, index),
            "valid": crop_boxes(load_photo(name).shape, "valid", valid_per_class, seed, index),
        }
        for index, name in enumerate(PHOTOS)
    }


def make_texture_photos(
    root: Path, shots: int, valid_per_class: int = 30, seed: int = 0, size: int = 160
) -> tuple[Path, Path]:
    """Write root/train-{shots}/<class>/*.png and root/valid/<class>/*.png (both replaced if there); return them."""
    root = Path(root)
    train, valid = root / f"train-{shots}", root / "valid"
    boxes = plan(shots, valid_per_class, seed)
    for folder, part in ((train, "train"), (valid, "valid")):
        if folder.exists():
            shutil.rmtree(folder)
        for name in PHOTOS:
            (folder / name).mkdir(parents=True)
            photo = Image.fromarray(load_photo(name))
            for i, box in enumerate(boxes[name][part]):
                crop = photo.crop(box).resize((size, size), Image.Resampling.LANCZOS)
                crop.save(folder / name / f"{name}-{part}-{i:03d}.png")
    return train, valid


def describe() -> str:
    """What the data is: the photos, their licences, and how the crops are cut."""
    from importlib.metadata import version

    sources = "\n".join(f"  {name:9s} {source}" for name, (_, source) in PHOTOS.items())
    return (
        f"{len(PHOTOS)} classes, each the grayscale crops of one real photograph shipped with scikit-image "
        f"{version('scikit-image')} "
        "(skimage.data, its bundled files; the licences are those its docstrings state) or scikit-learn "
        "(sklearn.datasets.load_sample_image; CC BY 2.0, attribution in its images/README.txt):\n"
        f"{sources}\n"
        f"Training crops from the top {TRAIN_FRACTION:.0%} of each photo, validation crops from the bottom "
        f"{1 - TRAIN_FRACTION:.0%}; squares of {SCALE[0]:.0%}-{SCALE[1]:.0%} of the photo's shorter side at random "
        "positions, resized."
    )


def main(argv: list[str] | None = None) -> None:
    """Write the crops for each number of shots and say what they are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="folder to write train-N/ and valid/ in")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20], help="training images per class")
    parser.add_argument("--valid", type=int, default=30, help="validation images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=160, help="side of the written images, in pixels")
    args = parser.parse_args(argv)
    for shots in args.shots:
        train, valid = make_texture_photos(args.out, shots, args.valid, args.seed, args.size)
        print(f"{train}  {valid}")
    print(describe())


if __name__ == "__main__":
    main()
