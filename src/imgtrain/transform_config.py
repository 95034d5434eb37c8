"""The Init Image Transformation parameters (`TransformSpec`) and their checks, importable without torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from .errors import ParameterError, list_problems
from .params import declared, param, problems

# --- transformations

TRANSFORM_FORMAT = "imgtrain.transformation"
TRANSFORM_FORMAT_VERSION = 1
MAX_SIZE = 16384


def _pixels(default: int, help: str, low: int = 1) -> Any:
    return param(default, help, low=low, high=MAX_SIZE, metavar="PIXELS")


def _degrees(help: str) -> Any:
    return param(0, help, low=0, high=180, metavar="DEGREES")


@dataclass(frozen=True)
class TransformSpec:
    """The designer's Init Image Transformation parameters, with its defaults."""

    resize: bool = param(True, "resize the shorter side to --size")
    size: int = _pixels(256, "target length of the shorter side for --resize")
    center_crop: bool = param(True, "crop the center square of --crop-size")
    crop_size: int = _pixels(224, "side of the center crop")
    pad: bool = param(False, "pad every border with --padding black pixels")
    padding: int = _pixels(0, "pixels added on each border for --pad", low=0)
    color_jitter: bool = param(False, "randomly change brightness, contrast and saturation (each by up to 40%)")
    grayscale: bool = param(False, "convert to grayscale (kept as 3 channels)")
    random_resized_crop: bool = param(
        False, "crop a random area (8-100%) and aspect ratio (3/4-4/3), resized to --random-resized-crop-size"
    )
    random_resized_crop_size: int = _pixels(256, "output side of the random resized crop")
    random_crop: bool = param(False, "crop a random square of --random-crop-size (padding when smaller)")
    random_crop_size: int = _pixels(224, "side of the random crop")
    random_horizontal_flip: bool = param(True, "flip left-right with probability 0.5")
    random_vertical_flip: bool = param(False, "flip upside down with probability 0.5")
    random_rotation: bool = param(False, "rotate by a random angle within +-degrees")
    random_rotation_degrees: float = _degrees("largest rotation angle, 0-180")
    random_affine: bool = param(False, "random affine transform rotating within +-degrees")
    random_affine_degrees: float = _degrees("largest affine rotation angle, 0-180")
    random_grayscale: bool = param(False, "convert to grayscale with probability 0.1")
    random_perspective: bool = param(False, "random perspective distortion (scale 0.5) with probability 0.5")
    random_erasing: bool = param(False, "erase a random rectangle with probability 0.5")

    def __post_init__(self) -> None:
        found = spec_problems(dataclasses.asdict(self))
        if found:
            raise ParameterError("Invalid transformation parameters:\n" + list_problems(found))

    def values(self) -> dict[str, Any]:
        """The parameters as a plain dict (the transformation file's "transforms")."""
        return dataclasses.asdict(self)

    def to_json(self) -> dict:
        """The transformation file's content."""
        return {"format": TRANSFORM_FORMAT, "format_version": TRANSFORM_FORMAT_VERSION, "transforms": self.values()}


SWITCHES = {d.name for d in declared(TransformSpec) if d.kind is bool}
RANDOM_STEPS = {"color_jitter"} | {name for name in SWITCHES if name.startswith("random_")}


def spec_problems(values: dict) -> list[str]:
    """What is wrong with a dict of transformation parameters (empty when valid)."""
    found = problems(TransformSpec, values, unknown="{name!r} is not one of the designer's transformation parameters")
    return found or _frame_problems({f.name: f.default for f in fields(TransformSpec)} | values)


def _frame_problems(s: dict) -> list[str]:
    """Crops larger than the image they are given: torchvision pads the difference with black, so the picture
    ends up small in a black frame. Only the sizes the spec fixes are checked (without a resize, the image's)."""
    problems = []
    side, made_by = (s["size"], "the resize (size)") if s["resize"] else (None, "")
    if s["center_crop"]:
        if side is not None and s["crop_size"] > side:
            problems.append(
                f"crop_size must be at most size when both resize and center_crop are on, got crop_size "
                f"{s['crop_size']} with size {side}: a {s['crop_size']} px center crop of an image "
                f"resized to {side} px is that image in a black frame; lower crop_size to {side} or "
                f"less, or raise size to {s['crop_size']} or more"
            )
        side, made_by = s["crop_size"], "the center crop (crop_size)"
    if s["pad"] and side is not None:
        side, made_by = side + 2 * s["padding"], f"{made_by} and the padding"
    if s["random_resized_crop"]:
        side, made_by = s["random_resized_crop_size"], "the random resized crop (random_resized_crop_size)"
    if s["random_crop"] and side is not None and s["random_crop_size"] > side:
        problems.append(
            f"random_crop_size must be at most {side}, the side {made_by} leaves, got "
            f"{s['random_crop_size']}: the random crop would pad the image with black to "
            f"{s['random_crop_size']} px; lower random_crop_size to {side} or less (or turn on pad "
            "with a padding, if a black border is what you want)"
        )
    return problems
