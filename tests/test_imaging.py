"""Awkward but valid images end up upright 8-bit RGB, the same way everywhere."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgtrain.data.imaging import BadImage, decode_rgb, open_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_grayscale_becomes_three_equal_channels():
    img = Image.fromarray(np.full((4, 5), 77, np.uint8), "L")
    rgb = decode_rgb(encode(img, "PNG"))
    assert rgb.mode == "RGB" and rgb.size == (5, 4)
    assert np.asarray(rgb)[0, 0].tolist() == [77, 77, 77]


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (3, 3), (255, 0, 0, 0))
    img.putpixel((1, 1), (0, 0, 255, 255))
    arr = np.asarray(decode_rgb(encode(img, "PNG")))
    assert arr[0, 0].tolist() == [255, 255, 255]
    assert arr[1, 1].tolist() == [0, 0, 255]


def test_palette_with_transparency_is_composited_on_white():
    img = Image.new("P", (2, 2), 0)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * (256 * 3 - 6))
    img.putpixel((1, 1), 1)
    arr = np.asarray(decode_rgb(encode(img, "PNG", transparency=0)))
    assert arr[0, 0].tolist() == [255, 255, 255]
    assert arr[1, 1].tolist() == [10, 200, 30]


def test_cmyk_jpeg_becomes_rgb():
    img = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = np.asarray(decode_rgb(encode(img, "JPEG", quality=95)))[2, 2].tolist()
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped():
    arr16 = np.array([[0, 32896, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(arr16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    row = np.asarray(decode_rgb(data))[0, :, 0].tolist()
    assert row == [0, 128, 255]


def test_exif_rotated_jpeg_is_turned_upright():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    rgb = decode_rgb(encode(img, "JPEG", exif=exif, quality=95))
    assert rgb.size == (20, 40)
    arr = np.asarray(rgb).mean(axis=2)
    assert arr[:20].mean() > 200 and arr[20:].mean() < 50  # white half now on top


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "empty"), (b"not an image at all", "not a readable image")],
)
def test_garbage_is_a_bad_image(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_rgb(data)


def test_truncated_image_is_a_bad_image():
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "PNG")
    with pytest.raises(BadImage, match="corrupt or truncated"):
        decode_rgb(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    data = encode(Image.new("L", (5000, 5000)), "PNG")  # tiny file, 25 Mpixels
    with pytest.raises(BadImage, match="over the limit"):
        open_image(data, max_pixels=1_000_000)
