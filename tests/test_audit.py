"""imgtrain audit: planted duplicates, leakage, conflicting labels and flipped labels are found; the report files;
--strict; bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imgtrain
from conftest import make_class_folder


@pytest.fixture(scope="module")
def planted(bench, tmp_path_factory):
    """The bench's planted dataset (300 scenes, 30 flipped; copies, conflicts, near copies and leaks) audited."""
    root = tmp_path_factory.mktemp("audit")
    return root, bench.audit_figures(root, per_class=100)


def test_every_planted_fault_is_found(planted):
    """Measured: every exact copy, every near copy across the splits (resized, re-encoded, cropped up to 5% per
    side) and every conflict; 77% of the flipped labels in the top-10% list; no false near-duplicate."""
    _, found = planted
    assert found["exact"] == 1.0 and found["conflicting"] == 1.0
    assert found["near_across_splits"] >= 0.9
    assert found["flipped_in_top_10_percent"] >= 0.6
    assert found["false_near_pairs"] <= 2


def test_the_report_files(planted):
    root, found = planted
    report = json.loads((root / "audit" / "audit.json").read_text())
    assert report["format"] == "imgtrain.audit" and report["format_version"] == 1
    assert report["summary"] == found["report"]["summary"]
    assert report["summary"]["leakage_groups"] == 35 and report["summary"]["exact_duplicate_groups"] == 20
    assert [d["images"] for d in report["directories"]] == [315, 65]
    page = (root / "audit" / "audit.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 100  # thumbnails inline
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained, offline
    for section in ("Leakage across directories (35)", "Conflicting labels", "Likely label errors"):
        assert section in page


def test_cli_summary_and_strict(planted, run_cli, tmp_path):
    root, _ = planted
    code, out, err = run_cli(
        "audit", root / "train", "--against", root / "valid", "--out", tmp_path / "a", "--strict", "--no-labels"
    )
    assert code == 1 and "--strict" in err
    assert "leakage:                 35 groups" in out and "likely label errors:     not checked" in out
    clean = tmp_path / "clean"
    imgtrain.convert(make_class_folder(tmp_path / "src", {"cat": 4, "dog": 4}, size=(40, 40)), clean, progress=False)
    code, out, _ = run_cli("audit", clean, "--out", tmp_path / "b", "--strict")
    assert code == 0 and "leakage:                 0 groups" in out
    code, _, err = run_cli("audit", clean, "--out", tmp_path / "b", "--strict")
    assert code == 1 and "--overwrite" in err  # an existing report is never replaced silently


def test_odd_sizes_unreadable_images_and_unlabeled_directories(tmp_path):
    src = make_class_folder(tmp_path / "src", {"a": 6, "b": 6}, size=(48, 40))
    make_class_folder(tmp_path / "odd", {"a": 1}, size=(20, 20))
    shutil.copy(tmp_path / "odd" / "a" / "img0.png", src / "a" / "tiny.png")
    make_class_folder(tmp_path / "wide", {"a": 1}, size=(300, 40))
    shutil.copy(tmp_path / "wide" / "a" / "img0.png", src / "b" / "wide.png")
    directory = imgtrain.convert(src, tmp_path / "images", progress=False)
    broken = directory.root / next(r.path for r in directory if r.label == "a")
    broken.write_bytes(broken.read_bytes()[:60])  # truncated after convert
    report = imgtrain.audit(tmp_path / "images", out=tmp_path / "report", progress=False)
    why = {Path(o["source"]).name: " ".join(o["why"]) for o in report["odd_images"]}
    assert "tiny: 20x20" in why["tiny.png"] and "aspect ratio 7.5:1" in why["wide.png"]
    assert len(report["unreadable"]) == 1 and report["summary"]["unreadable"] == 1
    unlabeled = imgtrain.convert(tmp_path / "odd" / "a", tmp_path / "flat", progress=False)
    plain = imgtrain.audit(unlabeled.root, progress=False)
    assert plain["label_issues"] == {"checked": False, "reason": "the directory has no labels", "issues": []}
    with pytest.raises(imgtrain.ParameterError, match="twice"):
        imgtrain.audit(tmp_path / "images", against=[tmp_path / "images"])
    with pytest.raises(imgtrain.InvalidDatasetError):
        imgtrain.audit(src)  # a plain folder, not an image directory
