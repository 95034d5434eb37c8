"""Convert to Image Directory: every source kind, awkward and bad input, safe outputs."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgtrain
from conftest import make_class_folder, noise, tree
from imgtrain import ImageDirectory, InvalidDatasetError, OutputExistsError


def png_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    noise(seed=seed).save(buf, "PNG")
    return buf.getvalue()


def test_class_folders_become_labeled_directory(labeled_folder, tmp_path):
    d = imgtrain.convert(labeled_folder, tmp_path / "out")
    assert len(d) == 10 and d.labeled
    assert d.classes == ("cat", "dog")
    assert d.class_counts() == {"cat": 6, "dog": 4}
    assert {r.width for r in d} == {12} and {r.height for r in d} == {10}
    assert ImageDirectory.open(tmp_path / "out").records == d.records


def test_deeper_sub_folders_belong_to_their_top_level_class(tmp_path):
    src = make_class_folder(tmp_path / "src", {"cat": 1})
    (src / "cat" / "kittens" / "small").mkdir(parents=True)
    noise(seed=9).save(src / "cat" / "kittens" / "small" / "k.png")
    d = imgtrain.convert(src, tmp_path / "out")
    assert d.classes == ("cat",) and len(d) == 2
    assert {r.source for r in d} == {"cat/img0.png", "cat/kittens/small/k.png"}


def test_flat_folder_becomes_unlabeled_directory(tmp_path):
    src = tmp_path / "flat"
    src.mkdir()
    for i in range(3):
        noise(seed=i).save(src / f"{i}.png")
    d = imgtrain.convert(src, tmp_path / "out")
    assert not d.labeled and d.classes == () and len(d) == 3
    assert all(r.label is None for r in d)
    with pytest.raises(imgtrain.NotLabeledDatasetError):
        d.require_labels()


def test_images_mixed_with_class_folders_are_refused(labeled_folder, tmp_path):
    noise().save(labeled_folder / "stray.png")
    with pytest.raises(InvalidDatasetError, match="mixes images at its top level"):
        imgtrain.convert(labeled_folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("ext", ["jpg", "JPEG", "png", "GIF", "bmp", "ppm", "pgm", "tif", "TIFF", "webp"])
def test_every_extension_in_any_case(tmp_path, ext):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    img = noise()
    if ext.lower() == "pgm":
        img = img.convert("L")
    fmt = {"jpg": "JPEG", "tif": "TIFF", "pgm": "PPM"}.get(ext.lower(), ext.upper())
    img.save(src / f"x.{ext}", fmt)
    d = imgtrain.convert(tmp_path / "src", tmp_path / "out")
    assert len(d) == 1 and d.load(0).mode == "RGB" and d.load(0).size == (12, 10)


def test_files_without_image_extension_are_ignored_and_reported(labeled_folder, tmp_path):
    (labeled_folder / "cat" / "notes.txt").write_text("hello")
    (labeled_folder / "cat" / ".DS_Store").write_text("junk")
    d = imgtrain.convert(labeled_folder, tmp_path / "out")
    assert len(d) == 10
    report = json.loads((tmp_path / "out" / "convert-report.json").read_text())
    assert report["ignored_non_images"] == ["cat/.DS_Store (hidden file: not read)", "cat/notes.txt"]


def _make_bad_files(folder: Path) -> None:
    (folder / "cat" / "empty.png").write_bytes(b"")
    (folder / "cat" / "text.jpg").write_text("I am not a JPEG")
    (folder / "dog" / "cut.png").write_bytes(png_bytes()[:60])


def test_bad_images_fail_naming_each_and_write_nothing(labeled_folder, tmp_path):
    _make_bad_files(labeled_folder)
    before = tree(tmp_path)
    with pytest.raises(InvalidDatasetError) as err:
        imgtrain.convert(labeled_folder, tmp_path / "out")
    message = str(err.value)
    for name in ("cat/empty.png", "cat/text.jpg", "dog/cut.png"):
        assert name in message
    assert "skip_invalid=True" in message
    assert tree(tmp_path) == before


def test_many_bad_images_are_listed_twenty_then_counted(tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    for i in range(25):
        (src / f"bad{i:02d}.png").write_bytes(b"x")
    with pytest.raises(InvalidDatasetError) as err:
        imgtrain.convert(tmp_path / "src", tmp_path / "out", workers=1)
    message = str(err.value)
    assert "bad19.png" in message and "bad20.png" not in message
    assert "and 5 more" in message


def test_skip_invalid_leaves_bad_images_out_and_reports_them(labeled_folder, tmp_path):
    _make_bad_files(labeled_folder)
    d = imgtrain.convert(labeled_folder, tmp_path / "out", skip_invalid=True)
    assert len(d) == 10
    report = json.loads((tmp_path / "out" / "convert-report.json").read_text())
    assert sorted(s["source"] for s in report["skipped"]) == ["cat/empty.png", "cat/text.jpg", "dog/cut.png"]
    assert all(s["reason"] for s in report["skipped"])


def test_decompression_bomb_is_a_bad_image_not_a_crash(tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    Image.new("L", (10_000, 10_000)).save(src / "bomb.png")
    with pytest.raises(InvalidDatasetError, match="bomb"):
        imgtrain.convert(tmp_path / "src", tmp_path / "out")


def test_awkward_images_convert_and_load_as_rgb(tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    Image.new("L", (5, 4), 10).save(src / "gray.png")
    Image.new("RGBA", (5, 4), (1, 2, 3, 0)).save(src / "rgba.png")
    Image.new("P", (5, 4)).save(src / "palette.gif")
    Image.new("CMYK", (5, 4)).save(src / "cmyk.jpg")
    Image.fromarray(np.full((4, 5), 40000, np.uint16)).save(src / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (4, 5)).save(src / "rotated.jpg", exif=exif)
    d = imgtrain.convert(tmp_path / "src", tmp_path / "out")
    assert len(d) == 6
    assert all((r.width, r.height) == (5, 4) for r in d)
    for i in range(len(d)):
        img = d.load(i)
        assert img.mode == "RGB" and img.size == (5, 4)
    x, _ = d.dataset()[0]
    assert x.dtype.is_floating_point is False and tuple(x.shape) == (3, 4, 5)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


LAYOUT = {"a/1.png": png_bytes(1), "a/2.png": png_bytes(2), "b/3.PNG": png_bytes(3)}


@pytest.mark.parametrize(
    "name, mode", [("d.tar", "w"), ("d.tar.gz", "w:gz"), ("d.tgz", "w:gz"), ("d.tar.bz2", "w:bz2")]
)
def test_tar_archives(tmp_path, name, mode):
    d = imgtrain.convert(_tar(tmp_path / name, LAYOUT, mode), tmp_path / "out")
    assert d.classes == ("a", "b") and len(d) == 3


def test_zip_archive_with_wrapping_folder_is_unwrapped(tmp_path):
    members = {f"digits/{k}": v for k, v in LAYOUT.items()} | {"__MACOSX/._x": b"junk"}
    d = imgtrain.convert(_zip(tmp_path / "d.zip", members), tmp_path / "out")
    assert d.classes == ("a", "b") and len(d) == 3


def test_zip_archive_of_flat_images_is_unlabeled(tmp_path):
    d = imgtrain.convert(
        _zip(tmp_path / "d.zip", {"1.jpg": LAYOUT["a/1.png"], "2.png": png_bytes(5)}), tmp_path / "out"
    )
    assert not d.labeled and len(d) == 2


@pytest.mark.parametrize("evil", ["../escape.png", "/tmp/imgtrain-abs.png", "a/../../escape.png"])
def test_zip_members_leaving_the_output_are_refused(tmp_path, evil):
    (tmp_path / "work").mkdir()
    archive = _zip(tmp_path / "evil.zip", LAYOUT | {evil: png_bytes(9)})
    before = tree(tmp_path)
    with pytest.raises(InvalidDatasetError, match="outside the output"):
        imgtrain.convert(archive, tmp_path / "work" / "out")
    assert tree(tmp_path) == before
    assert not Path("/tmp/imgtrain-abs.png").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in LAYOUT.items():
            zf.writestr(name, data)
        info = zipfile.ZipInfo("a/link.png")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InvalidDatasetError, match="symbolic link"):
        imgtrain.convert(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused(tmp_path, kind):
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in LAYOUT.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("a/link.png")
        link.type = kind
        link.linkname = "../../../../etc/passwd"
        tf.addfile(link)
    before = tree(tmp_path)
    with pytest.raises(InvalidDatasetError, match="link"):
        imgtrain.convert(archive, tmp_path / "out")
    assert tree(tmp_path) == before


def test_tar_traversal_is_refused(tmp_path):
    archive = _tar(tmp_path / "t.tar", LAYOUT | {"../../x.png": png_bytes()})
    with pytest.raises(InvalidDatasetError, match=r"\.\."):
        imgtrain.convert(archive, tmp_path / "out")
    assert not (tmp_path / "x.png").exists() and not (tmp_path.parent / "x.png").exists()


def test_corrupt_archive_is_an_invalid_dataset(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InvalidDatasetError, match="cannot be read"):
        imgtrain.convert(tmp_path / "broken.zip", tmp_path / "out")


def test_csv_manifest_paths_relative_to_manifest(tmp_path):
    make_class_folder(tmp_path / "pics", {"x": 2})
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\npics/x/img0.png,left\npics/x/img1.png,right\n")
    d = imgtrain.convert(manifest, tmp_path / "out")
    assert d.classes == ("left", "right")
    assert [r.label for r in d] == ["left", "right"]


def test_jsonl_manifest_without_labels_is_unlabeled(tmp_path):
    make_class_folder(tmp_path / "pics", {"x": 2})
    manifest = tmp_path / "list.jsonl"
    manifest.write_text('{"path": "pics/x/img0.png"}\n{"path": "pics/x/img1.png"}\n')
    d = imgtrain.convert(manifest, tmp_path / "out")
    assert not d.labeled and len(d) == 2


def test_manifest_with_missing_file_names_it(tmp_path):
    make_class_folder(tmp_path / "pics", {"x": 1})
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\npics/x/img0.png,a\npics/x/gone.png,b\n")
    with pytest.raises(InvalidDatasetError, match="gone.png: cannot read file"):
        imgtrain.convert(manifest, tmp_path / "out")


def test_manifest_mixing_labeled_and_unlabeled_rows_is_refused(tmp_path):
    make_class_folder(tmp_path / "pics", {"x": 2})
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\npics/x/img0.png,a\npics/x/img1.png,\n")
    with pytest.raises(InvalidDatasetError, match="no label while other images have one"):
        imgtrain.convert(manifest, tmp_path / "out")


def test_csv_without_path_column_says_what_header_to_write(tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("file,category\na.png,x\n")
    with pytest.raises(InvalidDatasetError, match="path,label"):
        imgtrain.convert(manifest, tmp_path / "out")


def test_azure_designer_directory_keeps_ids_and_categories(tmp_path):
    src = tmp_path / "azure"
    (src / "image").mkdir(parents=True)
    (src / "_meta.yaml").write_text("type: ImageDirectory\nimage_list: images.lst\nschema: _schema.json\n")
    lines = []
    for n, (label, cls) in enumerate([("cat", 0), ("cat", 0), ("dog", 1)]):
        noise(seed=n).save(src / "image" / f"{cls}_{n}.png")
        lines.append(
            json.dumps({"image_info": {"file_name": f"image/{cls}_{n}.png"}, "category": label, "id": 100 + n})
        )
    (src / "images.lst").write_text("\n".join(lines) + "\n")
    d = imgtrain.convert(src, tmp_path / "out")
    assert d.classes == ("cat", "dog")
    assert [(r.id, r.label) for r in d] == [(100, "cat"), (101, "cat"), (102, "dog")]


def test_existing_output_is_refused_unless_overwrite(labeled_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        imgtrain.convert(labeled_folder, out)
    assert (out / "precious.txt").read_text() == "keep me"
    with pytest.raises(OutputExistsError, match="replaces only what imgtrain wrote"):  # not someone's own folder
        imgtrain.convert(labeled_folder, out, overwrite=True)
    assert (out / "precious.txt").read_text() == "keep me"
    (out / "precious.txt").unlink()
    imgtrain.convert(labeled_folder, out)
    imgtrain.convert(labeled_folder, out, overwrite=True)  # an image directory is replaced
    assert len(ImageDirectory.open(out)) == 10


def test_failed_overwrite_leaves_previous_output_intact(labeled_folder, tmp_path):
    out = tmp_path / "out"
    imgtrain.convert(labeled_folder, out)
    (labeled_folder / "cat" / "bad.png").write_bytes(b"junk")
    with pytest.raises(InvalidDatasetError):
        imgtrain.convert(labeled_folder, out, overwrite=True)
    assert len(ImageDirectory.open(out)) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temporary left behind


def test_output_inside_source_is_refused_even_with_overwrite(labeled_folder):
    with pytest.raises(imgtrain.ParameterError, match="destroy the input"):
        imgtrain.convert(labeled_folder, labeled_folder, overwrite=True)
    assert len(list(labeled_folder.rglob("*.png"))) == 10


def test_missing_source_says_so(tmp_path):
    with pytest.raises(InvalidDatasetError, match="does not exist"):
        imgtrain.convert(tmp_path / "nope", tmp_path / "out")


def test_parallel_and_single_process_give_the_same_directory(tmp_path):
    src = make_class_folder(tmp_path / "src", {"a": 40, "b": 40})
    one = imgtrain.convert(src, tmp_path / "one", workers=1)
    two = imgtrain.convert(src, tmp_path / "two", workers=2)
    assert one.records == two.records
    assert all((one.image_path(i).read_bytes() == two.image_path(i).read_bytes()) for i in range(len(one)))


def _save_heic(path: Path, seed: int = 3, size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """A real HEIC file (HEVC, as an iPhone writes it), encoded by pillow-heif; returns its pixels."""
    import pillow_heif

    pixels = np.repeat(np.linspace(20, 230, size[0], dtype=np.uint8)[None, :, None], size[1], 0).repeat(3, 2)
    pixels[..., seed % 3] = 128
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(path, quality=95)
    return pixels


def test_heic_photos_convert_like_any_other_image(tmp_path):
    """Issue 25: .heic (the iPhone's format) was ignored as 'no image extension'."""
    src = make_class_folder(tmp_path / "src", {"cat": 2, "dog": 2})
    pixels = _save_heic(src / "cat" / "IMG_0001.HEIC")
    _save_heic(src / "dog" / "IMG_0002.heif", seed=4)
    d = imgtrain.convert(src, tmp_path / "out", workers=0, progress=False)
    assert len(d) == 6 and d.class_counts() == {"cat": 3, "dog": 3}
    heic = next(r for r in d if r.source == "cat/IMG_0001.HEIC")
    assert (heic.width, heic.height) == (40, 30) and heic.path.endswith(".heic")
    decoded = np.asarray(d.load(heic.id)).astype(int)
    assert np.abs(decoded - pixels).mean() < 6  # lossy, but the picture (measured 1.16, AVX-512 and AVX2 emulated)
    report = json.loads((tmp_path / "out" / "convert-report.json").read_text())
    assert report["skipped"] == [] and report["ignored_non_images"] == []


def test_heic_without_its_decoder_is_left_out_naming_the_extra(tmp_path):
    """A real `imgtrain convert` in a Python where pillow_heif cannot be imported."""
    import subprocess
    import sys

    src = make_class_folder(tmp_path / "src", {"cat": 2})
    _save_heic(src / "cat" / "a.heic")
    _save_heic(src / "cat" / "b.HEIF")
    run = (
        "import sys; sys.modules['pillow_heif'] = None; from imgtrain.cli import main; "
        f"sys.exit(main(['convert', {str(src)!r}, {str(tmp_path / 'out')!r}, '--workers', '0']))"
    )
    done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "left out 2 HEIF (HEIC) images" in warnings[0]
    assert "pip install 'imgtrain[heic]'" in warnings[0]
    report = json.loads((tmp_path / "out" / "convert-report.json").read_text())
    assert report["images"] == 2 and [s["source"] for s in report["skipped"]] == ["cat/a.heic", "cat/b.HEIF"]
    assert all("pip install 'imgtrain[heic]'" in s["reason"] for s in report["skipped"])
