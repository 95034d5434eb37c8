"""The studio's file browser (studio.browse.list_sources): one level at a time, each entry what convert would read it
as (the CLI's rule), never a path outside the root."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest

import imgtrain
from conftest import make_class_folder, noise
from imgtrain.data.readers import folder_images
from imgtrain.errors import InvalidDatasetError
from imgtrain.studio import browse
from imgtrain.studio.browse import list_sources
from imgtrain.studio.registry import RUNS_DIR, STATE_DIR
from imgtrain.studio.runner import BadRequest


def kinds(listing: dict) -> dict[str, str]:
    return {e["name"]: e["kind"] for e in listing["entries"]}


def entry(listing: dict, name: str) -> dict:
    (found,) = [e for e in listing["entries"] if e["name"] == name]
    return found


def phone_export(folder: Path, counts: dict[str, dict[str, int]]) -> Path:
    """folder/<class>/<year>/<month>/<n>.jpg, as a phone's photo export lays them out."""
    seed = 0
    for label, months in counts.items():
        for month, n in months.items():
            (folder / label / month).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise(seed=seed).save(folder / label / month / f"IMG_{i:04d}.jpg")
                seed += 1
    return folder


def test_a_phone_export_nested_by_year_and_month_is_offered_as_class_folders(tmp_path):
    root = tmp_path / "root"
    phone_export(root / "PhoneExport", {"forest": {"2022/01": 3, "2022/02": 2}, "lake": {"2021/12": 4}})
    listing = list_sources(root, ".")
    assert listing == {
        "path": ".",
        "entries": [{"name": "PhoneExport", "path": "PhoneExport", "kind": "class folders", "images": 9, "classes": 2}],
        "hint": None,
    }
    # one level at a time: inside, each class folder is a source too (its years as classes), as convert would read it
    inside = list_sources(root, "PhoneExport")
    assert [(e["path"], e["kind"], e["classes"]) for e in inside["entries"]] == [
        ("PhoneExport/forest", "class folders", 1),
        ("PhoneExport/lake", "class folders", 1),
    ]
    assert list_sources(root, "PhoneExport/forest/2022")["entries"][0]["kind"] == "images, unlabeled"
    # what convert reads from it: the same classes and counts
    candidates, _ = folder_images(root / "PhoneExport")
    assert Counter(c.label for c in candidates) == {"forest": 5, "lake": 4}


def test_every_kind_of_source_is_named_and_other_files_are_not_offered(tmp_path):
    root = tmp_path / "root"
    make_class_folder(root / "photos", {"cat": 3, "dog": 2})
    imgtrain.convert(root / "photos", root / "converted", progress=False, workers=1)
    (root / "designer").mkdir()
    (root / "designer" / "_meta.yaml").write_text("type: ImageDirectory\n")
    (root / "flat").mkdir()
    noise().save(root / "flat" / "a.png")
    noise(seed=1).save(root / "flat" / "b.JPG")
    (root / "empty").mkdir()
    # a folder of sources is a folder to open, though convert would read it as class folders (one per source)
    imgtrain.convert(root / "photos", root / "projects" / "converted", progress=False, workers=1)
    make_class_folder(root / "projects" / "pets", {"cat": 1, "dog": 1})
    buffer = io.BytesIO()
    noise().save(buffer, "PNG")
    with zipfile.ZipFile(root / "pets.zip", "w") as z:
        z.writestr("cat/a.png", buffer.getvalue())
    for name in ("pets.tar", "pets.tar.gz", "pets.tgz", "pets.tar.bz2"):
        with tarfile.open(root / name, "w"):
            pass
    for name in ("labels.csv", "labels.jsonl", "labels.json", "labels.ndjson"):
        (root / name).write_text("")
    (root / "notes.txt").write_text("not a source")
    noise().save(root / "loose.png")

    listing = list_sources(root, "")
    assert kinds(listing) == {
        "converted": "image directory",
        "designer": "designer directory",
        "empty": "folder",
        "flat": "images, unlabeled",
        "labels.csv": "manifest",
        "labels.json": "manifest",
        "labels.jsonl": "manifest",
        "labels.ndjson": "manifest",
        "pets.tar": "archive",
        "pets.tar.bz2": "archive",
        "pets.tar.gz": "archive",
        "pets.tgz": "archive",
        "pets.zip": "archive",
        "photos": "class folders",
        "projects": "folder",
    }
    assert [e["name"] for e in listing["entries"]] == sorted(kinds(listing))
    assert listing["hint"] is None
    assert {k: entry(listing, "converted")[k] for k in ("images", "classes")} == {"images": 5, "classes": 2}
    assert {k: entry(listing, "photos")[k] for k in ("images", "classes")} == {"images": 5, "classes": 2}
    assert entry(listing, "flat")["images"] == 2 and "classes" not in entry(listing, "flat")
    assert kinds(list_sources(root, "projects")) == {"converted": "image directory", "pets": "class folders"}
    # an image directory's own files are not sources to choose inside it
    inside = list_sources(root, "converted")
    assert inside["entries"] == [] and "choose it in the folder above" in inside["hint"]


def test_a_folder_mixing_top_level_images_and_class_folders_is_a_folder_with_the_problem_convert_names(tmp_path):
    root = tmp_path / "root"
    make_class_folder(root / "mixed", {"cat": 2, "dog": 2})
    noise().save(root / "mixed" / "stray.png")
    found = entry(list_sources(root, "."), "mixed")
    assert found["kind"] == "folder" and "mixes images at its top level with class sub-folders" in found["problem"]
    with pytest.raises(InvalidDatasetError, match="mixes images at its top level"):
        folder_images(root / "mixed")
    # images beside empty sub-folders are unlabeled images, as convert reads them
    (root / "flat" / "later").mkdir(parents=True)
    noise().save(root / "flat" / "a.png")
    assert entry(list_sources(root, "."), "flat")["kind"] == "images, unlabeled"
    assert [c.label for c in folder_images(root / "flat")[0]] == [None]


def test_hidden_entries_the_studios_folders_and_links_out_of_the_root_are_not_offered(tmp_path):
    root = tmp_path / "root"
    make_class_folder(root / "photos", {"cat": 1, "dog": 1})
    make_class_folder(root / ".hidden", {"cat": 1, "dog": 1})
    make_class_folder(root / STATE_DIR, {"cat": 1, "dog": 1})
    make_class_folder(root / RUNS_DIR / "run-1" / "convert", {"cat": 1, "dog": 1})
    make_class_folder(tmp_path / "outside", {"cat": 1, "dog": 1})
    (tmp_path / "outside.zip").write_bytes(b"")
    (root / "out").symlink_to(tmp_path / "outside")
    (root / "out.zip").symlink_to(tmp_path / "outside.zip")
    (root / "again").symlink_to(root / "photos")  # a link inside the root is offered, as a run may use it
    (root / "broken.zip").symlink_to(root / "nothing.zip")
    # inside a class folder, links and hidden files are passed over, as convert passes them
    (root / "photos" / "cat" / "link.png").symlink_to(root / "photos" / "dog" / "img0.png")
    (root / "photos" / "cat" / ".thumb.png").write_bytes(b"")
    listing = list_sources(root, ".")
    assert kinds(listing) == {"again": "class folders", "photos": "class folders"}
    assert entry(listing, "photos")["images"] == len(folder_images(root / "photos")[0]) == 2
    # a user's own folder named like the studio's, deeper down, is theirs
    make_class_folder(root / "mine" / RUNS_DIR, {"cat": 1, "dog": 1})
    assert kinds(list_sources(root, "mine")) == {RUNS_DIR: "class folders"}


def test_paths_outside_missing_or_not_folders_are_refused_as_before(tmp_path):
    root = tmp_path / "root"
    make_class_folder(root / "photos", {"cat": 1})
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    cases = {"../outside": 403, "link": 403, str(root / "photos"): 400, "nothing": 404, "photos/cat/img0.png": 400}
    for relative, status in cases.items():
        with pytest.raises(BadRequest) as refused:
            list_sources(root, relative)
        assert refused.value.status == status, relative


def test_the_hint_explains_an_empty_listing_and_one_of_folders_only(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("")
    listing = list_sources(root, ".")
    assert listing["entries"] == []
    assert listing["hint"] == (
        f"nothing here yet: put a folder of class sub-folders (one per label) under {root.resolve()}, or a .zip of one"
    )
    (root / "projects" / "2024").mkdir(parents=True)
    (root / "projects" / "2024" / "pets.zip").write_bytes(b"")
    listing = list_sources(root, ".")
    assert kinds(listing) == {"projects": "folder"} and "open a folder to look inside" in listing["hint"]
    assert kinds(list_sources(root, "projects/2024")) == {"pets.zip": "archive"}
    # by the CLI's rule, a folder with images anywhere under a sub-folder is class folders, however deep
    make_class_folder(root / "projects" / "2025" / "pets", {"cat": 1, "dog": 1})
    assert kinds(list_sources(root, ".")) == {"projects": "class folders"}
    assert Counter(c.label for c in folder_images(root / "projects")[0]) == {"2025": 2}
    (root / "projects" / "empty").mkdir()
    assert "nothing to train on" in list_sources(root, "projects/empty")["hint"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_folder_does_not_break_the_listing(tmp_path):
    root = tmp_path / "root"
    make_class_folder(root / "photos", {"cat": 1, "dog": 1})
    (root / "locked").mkdir()
    (root / "photos" / "dog").chmod(0)
    (root / "locked").chmod(0)
    try:
        listing = list_sources(root, ".")
        assert kinds(listing) == {"locked": "folder", "photos": "class folders"}
        assert entry(listing, "photos")["classes"] == 1
        assert "cannot be read" in list_sources(root, "locked")["hint"]
    finally:
        (root / "photos" / "dog").chmod(0o755)
        (root / "locked").chmod(0o755)


def test_a_huge_folder_is_looked_at_in_bounds_and_its_counts_are_lower_bounds(tmp_path):
    root = tmp_path / "root"
    for label, n in (("a-big", 3 * browse.LOOK_AT), ("b", 2), ("c", 1)):
        (root / "big" / label / "deep").mkdir(parents=True)
        for i in range(n):
            (root / "big" / label / "deep" / f"{i}.jpg").write_bytes(b"")
    (root / "flat").mkdir()
    for i in range(3 * browse.LOOK_AT):
        (root / "flat" / f"{i}.png").write_bytes(b"")
    started = time.perf_counter()
    listing = list_sources(root, ".")
    seconds = time.perf_counter() - started
    big, flat = entry(listing, "big"), entry(listing, "flat")
    # every class is still found: each sub-folder gets its share of the look
    assert (big["kind"], big["classes"], big["lower_bound"]) == ("class folders", 3, True)
    assert 3 <= big["images"] <= browse.LOOK_AT
    assert (flat["kind"], flat["lower_bound"]) == ("images, unlabeled", True) and flat["images"] <= browse.LOOK_AT
    assert seconds < 2, seconds


def test_an_image_directory_shows_the_counts_its_index_gives(tmp_path):
    root = tmp_path / "root"
    make_class_folder(tmp_path / "src", {"cat": 2, "dog": 1, "owl": 1})
    imgtrain.convert(tmp_path / "src", root / "labeled", progress=False, workers=1)
    (tmp_path / "flat").mkdir()
    noise().save(tmp_path / "flat" / "a.png")
    imgtrain.convert(tmp_path / "flat", root / "unlabeled", progress=False, workers=1)
    (root / "damaged").mkdir()
    (root / "damaged" / "imgtrain-images.json").write_text(json.dumps({"format": "x"}))
    listing = list_sources(root, ".")
    assert entry(listing, "labeled") == {
        "name": "labeled",
        "path": "labeled",
        "kind": "image directory",
        "images": 4,
        "classes": 3,
    }
    assert entry(listing, "unlabeled")["images"] == 1 and "classes" not in entry(listing, "unlabeled")
    assert entry(listing, "damaged") == {"name": "damaged", "path": "damaged", "kind": "image directory"}
