"""What the studio checks before any work (studio.prechecks): the images convert would refuse, found by a quick scan
that agrees with convert; the weights; the batch size; the classes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgtrain
from conftest import make_class_folder, noise
from imgtrain.data.convert import REPORT_NAME
from imgtrain.errors import InvalidDatasetError, PretrainedWeightsError
from imgtrain.studio.prechecks import (
    batch_problem,
    classes_problem,
    scan_source,
    unreadable_problem,
    weights_problem,
)

_EXIF_ORIENTATION = 0x0112


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like image: smooth colour blobs and a little grain (JPEG-compressible as photos are)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    grain = rng.integers(-8, 9, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(small, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def jpeg_bytes(img: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def awkward_source(folder: Path) -> dict[str, str]:
    """Class folders holding every kind of file convert must tell apart; returns which ones it should refuse."""
    (folder / "forest").mkdir(parents=True)
    (folder / "lake").mkdir()
    photo(640, 480, 1).save(folder / "forest" / "good-large.jpg", quality=90)  # decoded at reduced scale
    noise(seed=2).save(folder / "forest" / "good-small.jpg")
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = 6
    (folder / "forest" / "rotated.jpg").write_bytes(jpeg_bytes(photo(600, 520, 3), exif=exif.tobytes()))
    whole = jpeg_bytes(photo(800, 600, 4))
    (folder / "forest" / "truncated-large.jpg").write_bytes(whole[: len(whole) // 2])
    small = jpeg_bytes(noise(40, 30, seed=5))
    (folder / "lake" / "truncated-small.jpg").write_bytes(small[: len(small) * 2 // 3])
    (folder / "lake" / "notes.jpg").write_text("these are my holiday notes, not a picture\n")
    Image.new("RGBA", (20, 16), (10, 200, 30, 90)).save(folder / "lake" / "transparent.png")
    noise(seed=6).save(folder / "lake" / "good.JPEG")
    (folder / "lake" / "empty.png").write_bytes(b"")
    (folder / "lake" / "clip.MOV").write_bytes(b"\x00\x00\x00\x18ftypqt  " + b"\x00" * 64)
    (folder / "lake" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 64)
    return {
        "forest/truncated-large.jpg": "truncated",
        "lake/truncated-small.jpg": "truncated",
        "lake/notes.jpg": "not a readable image",
        "lake/empty.png": "empty file",
    }


def test_the_scan_reports_exactly_the_images_convert_refuses(tmp_path):
    src = tmp_path / "src"
    refused = awkward_source(src)
    facts = scan_source(src)
    assert sorted(facts.unreadable) == sorted(refused) and facts.unreadable_count == len(refused)
    for name, words in refused.items():
        assert words in facts.reasons[name], (name, facts.reasons[name])
    assert facts.labeled and facts.classes == {"forest": 3, "lake": 2} and facts.images == 5
    assert facts.ignored == 2  # the .MOV and Thumbs.db, passed over as convert passes them

    with pytest.raises(InvalidDatasetError) as caught:
        imgtrain.convert(src, tmp_path / "refused", progress=False, workers=1)
    assert all(name in str(caught.value) for name in refused)
    out = imgtrain.convert(src, tmp_path / "out", skip_invalid=True, progress=False, workers=1)
    report = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert sorted(s["source"] for s in report["skipped"]) == sorted(facts.unreadable)
    # the same reasons (Pillow's own words name an object's address, which differs)
    assert {s["source"]: s["reason"].split(" (")[0] for s in report["skipped"]} == {
        name: reason.split(" (")[0] for name, reason in facts.reasons.items()
    }
    assert len(report["ignored_non_images"]) == facts.ignored
    assert (len(out), out.class_counts()) == (facts.images, facts.classes)

    problem = unreadable_problem(facts, skip_invalid=False, source="src")
    assert (
        problem.startswith("4 of 9 images in src cannot be used:")
        and 'tick "Skip unreadable images" (skip_invalid)' in problem
    )
    assert all(name in problem for name in refused)
    assert unreadable_problem(facts, skip_invalid=True, source="src") is None


def test_heic_images_are_scanned_with_pillow_heif_as_convert_reads_them(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    make_class_folder(tmp_path / "src", {"cat": 1, "dog": 1}, ext=".jpg")
    photo(64, 48).save(tmp_path / "src" / "cat" / "IMG_0001.HEIC")
    (tmp_path / "src" / "dog" / "IMG_0002.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40)
    facts = scan_source(tmp_path / "src")
    assert (facts.classes, facts.unreadable) == ({"cat": 2, "dog": 1}, ["dog/IMG_0002.heic"])
    out = imgtrain.convert(tmp_path / "src", tmp_path / "out", skip_invalid=True, progress=False, workers=1)
    assert out.class_counts() == facts.classes


def test_unlabeled_images_an_archive_and_a_manifest_are_named_inside_the_source(tmp_path):
    (tmp_path / "flat").mkdir()
    noise().save(tmp_path / "flat" / "a.png")
    (tmp_path / "flat" / "b.png").write_bytes(b"PNG? no")
    facts = scan_source(tmp_path / "flat")
    assert (facts.labeled, facts.classes, facts.images, facts.unreadable) == (False, {}, 1, ["b.png"])

    buffer = io.BytesIO()
    noise().save(buffer, "PNG")
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as z:
        z.writestr("pets/cat/a.png", buffer.getvalue())
        z.writestr("pets/dog/b.png", buffer.getvalue())
        z.writestr("pets/dog/c.png", b"not an image")
    facts = scan_source(tmp_path / "pets.zip")
    assert (facts.classes, facts.unreadable) == ({"cat": 1, "dog": 1}, ["pets/dog/c.png"])
    imgtrain.convert(tmp_path / "pets.zip", tmp_path / "out", skip_invalid=True, progress=False, workers=1)
    report = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert [s["source"] for s in report["skipped"]] == [str(tmp_path / "pets.zip" / "pets/dog/c.png")]

    (tmp_path / "labels.csv").write_text("path,label\nflat/a.png,cat\nflat/b.png,dog\nflat/gone.png,dog\n")
    facts = scan_source(tmp_path / "labels.csv")
    assert facts.classes == {"cat": 1} and sorted(facts.unreadable) == ["flat/b.png", "flat/gone.png"]
    assert "cannot read file" in facts.reasons["flat/gone.png"]


def test_a_source_convert_cannot_read_is_refused_with_converts_error(tmp_path):
    make_class_folder(tmp_path / "mixed", {"cat": 1, "dog": 1})
    noise().save(tmp_path / "mixed" / "stray.png")
    with pytest.raises(InvalidDatasetError, match="mixes images at its top level"):
        scan_source(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidDatasetError, match="No images found"):
        scan_source(tmp_path / "empty")
    with pytest.raises(InvalidDatasetError, match="does not exist"):
        scan_source(tmp_path / "nothing")


def test_an_image_directory_is_read_from_its_index(tmp_path):
    make_class_folder(tmp_path / "src", {"cat": 3, "dog": 2})
    out = imgtrain.convert(tmp_path / "src", tmp_path / "images", progress=False, workers=1)
    (out.root / out.records[0].path).write_bytes(b"damaged since")  # not decoded: the index is trusted
    facts = scan_source(tmp_path / "images")
    assert (facts.images, facts.classes, facts.unreadable, facts.labeled) == (5, {"cat": 3, "dog": 2}, [], True)


def test_a_repeated_scan_is_remembered_until_a_file_changes(tmp_path):
    make_class_folder(tmp_path / "src", {"cat": 30, "dog": 30}, ext=".jpg", size=(200, 150))
    first = scan_source(tmp_path / "src")
    started = time.perf_counter()
    assert scan_source(tmp_path / "src") is first
    assert time.perf_counter() - started < 0.5
    image = tmp_path / "src" / "dog" / "img3.jpg"
    image.write_bytes(image.read_bytes()[:500])
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a new modification time, even if coarse
    assert scan_source(tmp_path / "src").unreadable == ["dog/img3.jpg"]
    image.unlink()
    noise().save(tmp_path / "src" / "cat" / "new.png")
    assert scan_source(tmp_path / "src").classes == {"cat": 31, "dog": 29}


def test_the_batch_size_must_fit_the_training_images():
    assert batch_problem(16, 240) is None and batch_problem(240, 240) is None
    problem = batch_problem(300, 240)
    assert "batch_size 300 is larger than the 240 training images" in problem
    assert "use a batch size of at most 240" in problem
    assert "no training images" in batch_problem(4, 0)


def test_validation_classes_must_be_training_classes():
    assert classes_problem({"cat": 5, "dog": 3}, {"cat": 1, "dog": 1}) is None
    assert classes_problem({"cat": 5, "dog": 3}, {"cat": 1}) is None  # a class without validation images is fine
    problem = classes_problem({"cat": 5, "dog": 3, "owl": 0}, {"cat": 1, "owl": 2, "emu": 1, "yak": 0})
    assert "have no images of: ['emu', 'owl']" in problem and "remove those images from validation" in problem
    assert "needs at least 2" in classes_problem(["cat"], ["cat"])
    assert "no labels" in classes_problem({}, {})
    assert classes_problem(["cat", "dog"], ["dog"]) is None


def test_missing_pretrained_weights_name_the_file_and_folder_while_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("IMGTRAIN_OFFLINE", "1")
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    problem = weights_problem("resnet", "resnet18")
    assert f"resnet18-f37072fd.pth in {folder}" in problem and "or untick pretrained" in problem
    # the library refuses the same, for the same file
    with pytest.raises(PretrainedWeightsError, match="resnet18-f37072fd.pth"):
        imgtrain.create_model_directory(tmp_path / "m", imgtrain.Architecture("resnet", "resnet18"), progress=False)
    # a damaged file in its place is named too (the library would refuse it by its hash)
    folder.mkdir(parents=True)
    (folder / "resnet18-f37072fd.pth").write_bytes(b"half a download")
    problem = weights_problem("resnet", "resnet18")
    assert "not f37072fd" in problem and "delete the file" in problem and "or untick pretrained" in problem
    # online, the run downloads what is missing, as the library does
    monkeypatch.delenv("IMGTRAIN_OFFLINE")
    assert weights_problem("densenet", "densenet121") is None
    assert "is not a resnet model" in weights_problem("resnet", "densenet121")


def test_cached_pretrained_weights_are_no_problem(monkeypatch):
    from imgtrain.models.weights import imagenet_weights

    monkeypatch.setenv("IMGTRAIN_OFFLINE", "1")
    if not imagenet_weights("resnet18").path.is_file():
        pytest.skip("resnet18's ImageNet weights are not in torch's cache here")
    assert weights_problem("resnet", "resnet18") is None


def test_scanning_a_source_does_not_load_torch(tmp_path):
    # the studio's server does not load torch: only weights_problem does, when a check asks for pretrained weights
    make_class_folder(tmp_path / "src", {"cat": 2, "dog": 2}, ext=".jpg")
    code = (
        "import sys\nfrom pathlib import Path\nfrom imgtrain.studio import browse, prechecks\n"
        f"facts = prechecks.scan_source(Path({str(tmp_path / 'src')!r}))\n"
        f"browse.list_sources(Path({str(tmp_path)!r}), '.')\n"
        "assert prechecks.batch_problem(2, facts.images) is None\n"
        "assert prechecks.classes_problem(facts.classes, facts.classes) is None\n"
        "print(facts.images, sorted(m for m in ('torch', 'torchvision', 'fastapi') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4 []"
