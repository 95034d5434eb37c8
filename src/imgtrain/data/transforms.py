"""Init / Apply Image Transformation: a versioned transformation file <-> torchvision transforms.

The file holds the designer's switches and sizes; the order in which they apply is
fixed (the designer's order). In inference mode every random transform is dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from ..config import RANDOM_STEPS, TransformSpec, check_seed
from ..errors import InvalidDatasetError, ParameterError
from ..files import building_dir
from ..models.tracing import module_calls
from ..parallel import process_map
from .decoding import (
    DecodedCache,
    decode_full,
    decode_resized,
    interpolation,
    load_for_model,
    resize_exact,
    resized_size,
)
from .image_directory import IMAGES_DIR, ImageDirectory, list_problems, write_image_directory
from .imaging import MAX_IMAGE_PIXELS, BadImage, ImageTooLarge, ImageTooSmall, load_rgb, rgb_tensor
from .transform_file import FILE_NAME, init_transform, load_transform  # noqa: F401 (their old home)

log = logging.getLogger(__name__)

Mode = Literal["training", "inference"]
MODES = ("training", "inference")

# Fixed settings of the switch-only transforms (documented in docs/formats.md).
COLOR_JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4}
RANDOM_GRAYSCALE_P = 0.1
RANDOM_PERSPECTIVE = {"distortion_scale": 0.5, "p": 0.5}
RANDOM_ERASING_P = 0.5
#: The most pixels a transformation may make of one image: resizing the short side of a 1 x 100,000 image to
#: 256 asks for 25.6 million x 256 (20 GB); a 12-megapixel photo resized to 256 makes 87,000.
MAX_TRANSFORM_PIXELS = 40_000_000


def _steps(spec: TransformSpec, mode: Mode, after_resize: bool = False) -> list[Callable]:
    """The torchvision transforms `spec` turns on, in the designer's order; with `after_resize`, those after the
    resize (the first step, which ModelInput does itself while decoding)."""
    s = spec
    candidates = [
        ("resize", lambda: v2.Resize(s.size, interpolation(s.size), antialias=True)),
        ("center_crop", lambda: v2.CenterCrop(s.crop_size)),
        ("pad", lambda: v2.Pad(s.padding)),
        ("color_jitter", lambda: v2.ColorJitter(**COLOR_JITTER)),
        ("grayscale", lambda: v2.Grayscale(num_output_channels=3)),
        (
            "random_resized_crop",
            lambda: v2.RandomResizedCrop(
                s.random_resized_crop_size, interpolation=interpolation(s.random_resized_crop_size), antialias=True
            ),
        ),
        ("random_crop", lambda: v2.RandomCrop(s.random_crop_size, pad_if_needed=True)),
        ("random_horizontal_flip", lambda: v2.RandomHorizontalFlip()),
        ("random_vertical_flip", lambda: v2.RandomVerticalFlip()),
        ("random_rotation", lambda: v2.RandomRotation(s.random_rotation_degrees)),
        ("random_affine", lambda: v2.RandomAffine(s.random_affine_degrees)),
        ("random_grayscale", lambda: v2.RandomGrayscale(p=RANDOM_GRAYSCALE_P)),
        ("random_perspective", lambda: v2.RandomPerspective(**RANDOM_PERSPECTIVE)),
        ("random_erasing", lambda: v2.RandomErasing(p=RANDOM_ERASING_P)),
    ]
    return [
        make() for name, make in candidates if _active(spec, name, mode) and not (after_resize and name == "resize")
    ]


def _active(spec: TransformSpec, name: str, mode: Mode) -> bool:
    """Whether step `name` runs: switched on, and not a random step in inference mode."""
    return getattr(spec, name) and (mode == "training" or name not in RANDOM_STEPS)


def largest_step_size(spec: TransformSpec, width: int, height: int) -> tuple[int, int]:
    """The largest (width, height) an image of this size takes inside the transformation: after the resize
    (short side to `size`, as torchvision computes it) and the padding; no other step enlarges it."""
    if spec.resize:
        width, height = resized_size(spec.size, width, height)
    if spec.pad:
        width, height = width + 2 * spec.padding, height + 2 * spec.padding
    return width, height


def check_transform_size(spec: TransformSpec, width: int, height: int) -> None:
    """ImageTooLarge when the transformation would make more than MAX_TRANSFORM_PIXELS of this image, or when
    the image is over the decoder's limit (an index may declare any size: nothing that large is ever allocated)."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(f"a {width}x{height} image has more than the {MAX_IMAGE_PIXELS:,} pixels imgtrain decodes")
    w, h = largest_step_size(spec, width, height)
    if w * h > MAX_TRANSFORM_PIXELS:
        raise ImageTooLarge(
            f"a {width}x{height} image would become {w}x{h} ({w * h:,} pixels) inside the "
            f"transformation; at most {MAX_TRANSFORM_PIXELS:,} are allowed (its aspect ratio is "
            "too extreme for the resize)"
        )


def build_transform(
    spec: TransformSpec, mode: Mode = "training", after_resize: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable taking and returning uint8 CHW image tensors; random draws use torch's RNG."""
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}.")
    steps = _steps(spec, mode, after_resize)
    return v2.Compose(steps) if steps else v2.Identity()


@functools.lru_cache(maxsize=4)
def _cached_transform(spec: TransformSpec, mode: Mode) -> Callable:
    return build_transform(spec, mode)


def _apply_one(task: tuple[TransformSpec, Mode, int, str, str]) -> tuple[int, int, str | None]:
    spec, mode, seed, src, dest = task
    try:
        img = load_rgb(Path(src))
    except BadImage as exc:
        return 0, 0, str(exc)
    try:
        check_transform_size(spec, img.width, img.height)
    except ImageTooLarge as exc:
        return 0, 0, str(exc)
    torch.manual_seed(seed)
    tensor = rgb_tensor(img)
    out = _cached_transform(spec, mode)(tensor).permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(out)).save(dest, compress_level=1)
    return out.shape[1], out.shape[0], None


def apply_transform(
    spec: TransformSpec | str | Path,
    src: str | Path,
    out: str | Path,
    *,
    mode: Mode = "training",
    seed: int = 1,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> ImageDirectory:
    """Write a transformed copy of an image directory (Apply Image Transformation), images as PNG.

    Each image's random draws come from (seed, image id), so the output does not depend
    on the number of workers.
    """
    if not isinstance(spec, TransformSpec):
        spec = load_transform(spec)
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}.")
    check_seed(seed)
    directory = ImageDirectory.open(src)
    with building_dir(Path(out), overwrite, [Path(src)], ImageDirectory.open) as tmp:
        (tmp / IMAGES_DIR).mkdir()
        names = [f"{IMAGES_DIR}/{r.id:06d}.png" for r in directory]
        tasks = [
            (spec, mode, (seed * 1_000_003 + r.id) % 2**63, str(directory.root / r.path), str(tmp / name))
            for r, name in zip(directory, names, strict=True)
        ]
        results = list(process_map(_apply_one, tasks, workers, desc=f"transform ({mode})", progress=progress))
        bad = [f"{r.path}: {err}" for r, (_, _, err) in zip(directory, results, strict=True) if err]
        if bad:
            raise InvalidDatasetError(
                f"{len(bad)} images of {directory.root} cannot be read:\n{list_problems(bad)}",
                hint="recreate the image directory with `imgtrain convert`.",
            )
        records = [
            dataclasses.replace(r, path=name, width=w, height=h)
            for r, name, (w, h, _) in zip(directory, names, results, strict=True)
        ]
        write_image_directory(tmp, directory.classes, records)
    log.info("transformed %d images (%s mode) into %s", len(records), mode, out)
    return ImageDirectory.open(out)


class ModelInput:
    """The full input pipeline of a model: decoding, the transformation (uint8), then float scaling and Normalize.

    A transformation that starts with a resize has it done while decoding (see `data.decoding`): a JPEG is read
    at reduced scale, and with a `cache` the resized image is kept for the next epoch. A plain picklable object,
    so data-loader worker processes can run it.
    """

    def __init__(
        self,
        spec: TransformSpec,
        mode: Mode,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        input_problem: Callable[[int, int], str | None] | None = None,
        cache: DecodedCache | None = None,
        augment: str = "none",
    ):
        self.spec = spec
        self.input_problem = input_problem  # what the network says of an input size (models.catalog.InputCheck)
        self.resize = spec.size if spec.resize else None
        self.cache = cache
        self.transform = build_transform(spec, mode, after_resize=True)
        if mode == "training" and augment != "none":
            self.transform = v2.Compose([self.transform, AUTO_AUGMENTS[augment]()])
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def with_cache(self, cache: DecodedCache | None) -> ModelInput:
        """The same pipeline reading image files through `cache`."""
        other = copy.copy(self)
        other.cache = cache
        return other

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """The model input of a decoded uint8 CHW image at its full size."""
        height, width = image.shape[-2:]
        check_transform_size(self.spec, width, height)
        if self.resize is not None:
            image = resize_exact(image, self.resize, (width, height))
        return self._finish(image)

    def from_file(self, path: Path, width: int, height: int) -> torch.Tensor:
        """The model input of an image file of an image directory, indexed as width x height."""
        check_transform_size(self.spec, width, height)
        return self._finish(load_for_model(path, width, height, self.resize, self.cache))

    def from_bytes(self, data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> torch.Tensor:
        """The model input of an image file's bytes (an upload, a file given by path)."""
        if self.resize is None:
            image = decode_full(data, max_pixels=max_pixels)
            check_transform_size(self.spec, image.shape[-1], image.shape[-2])
            return self._finish(image)
        return self._finish(
            decode_resized(
                data, self.resize, max_pixels=max_pixels, check=functools.partial(check_transform_size, self.spec)
            )
        )

    def _finish(self, image: torch.Tensor) -> torch.Tensor:
        with module_calls():  # the transforms are modules: never while another thread traces (models.tracing)
            x = self.transform(image)
        problem = self.input_problem and self.input_problem(x.shape[-1], x.shape[-2])
        if problem:
            raise ImageTooSmall(problem)
        x = x.to(torch.float32).div_(255)
        return x.sub_(self.mean).div_(self.std)


#: Automatic augmentation after the transformation (TrainConfig.augment), on the uint8 image: size kept.
AUTO_AUGMENTS: dict[str, Callable[[], v2.Transform]] = {
    "trivialaugment": v2.TrivialAugmentWide,
    "randaugment": lambda: v2.RandAugment(num_ops=2, magnitude=9),
}


def output_size(spec: TransformSpec, mode: Mode, width: int, height: int) -> tuple[int, int]:
    """The (width, height) an image of this size leaves the transformation with, by arithmetic.

    Only resize, the crops and padding change a size, and each to a size known in advance; the other
    steps (flips, rotation and affine without expansion, perspective, erasing, colour) keep it.
    """
    use = functools.partial(_active, spec, mode=mode)
    if use("resize"):
        width, height = resized_size(spec.size, width, height)
    if use("center_crop"):
        width = height = spec.crop_size
    if use("pad"):
        width, height = width + 2 * spec.padding, height + 2 * spec.padding
    if use("random_resized_crop"):
        width = height = spec.random_resized_crop_size
    if use("random_crop"):
        width = height = spec.random_crop_size
    return width, height


def output_sizes(spec: TransformSpec, sizes: set[tuple[int, int]], mode: Mode) -> set[tuple[int, int]]:
    """The (width, height) images of the given sizes come out as: one size means they can be batched.

    Every distinct size is worked out (by arithmetic, nothing is allocated); sizes the transformation would
    blow up (check_transform_size) are left out.
    """
    out = set()
    for width, height in sizes:
        try:
            check_transform_size(spec, width, height)
        except ImageTooLarge:
            continue
        out.add(output_size(spec, mode, width, height))
    return out
