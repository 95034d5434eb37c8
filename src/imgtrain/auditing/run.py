"""imgtrain audit: read every image once, then find duplicates, leakage, conflicting labels, imbalance, odd
sizes and likely label errors; write audit.json and audit.html."""

from __future__ import annotations

import importlib.util
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import LABEL_SEPARATOR
from ..data.image_directory import ImageDirectory, ImageRecord, label_list, single_label
from ..errors import MissingDependencyError, ParameterError
from ..files import atomic_write_json, building_dir
from ..parallel import process_map
from .duplicates import NEAR_BITS, NEAR_COLOUR, components, exact_groups, near_pairs, same_colours
from .facts import CROPS, Facts, read_facts

log = logging.getLogger(__name__)

AUDIT_FORMAT = "imgtrain.audit"
AUDIT_FORMAT_VERSION = 1
AUDIT_JSON = "audit.json"
AUDIT_HTML = "audit.html"
TINY_SIDE = 32  # images with a side shorter than this are listed as tiny
MAX_ASPECT = 4.0  # ... longer than this many times their short side as odd aspect ratios
SIZE_OUTLIER = 16.0  # ... with this many times fewer or more pixels than the median as size outliers


@dataclass(frozen=True)
class Entry:
    """One audited image: which directory (0 = the audited one, then each --against) and its record."""

    directory: int
    record: ImageRecord

    def ref(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "id": self.record.id,
            "path": self.record.path,
            "source": self.record.source,
            "label": self.record.label,
        }


def audit(
    images: str | Path,
    against: Sequence[str | Path] = (),
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    check_labels: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Audit an image directory (and its overlap with `against`); return the report, written to `out` if given."""
    _require_libraries(check_labels)
    directories = [ImageDirectory.open(images)] + [ImageDirectory.open(a) for a in against]
    roots = [d.root.resolve() for d in directories]
    if len(set(roots)) < len(roots):
        raise ParameterError("The same image directory is given twice.", hint="give each directory once.")
    entries = [Entry(i, r) for i, d in enumerate(directories) for r in d]
    paths = [str(directories[e.directory].root / e.record.path) for e in entries]
    facts = list(process_map(read_facts, paths, workers, desc="audit", progress=progress))
    report = _findings(directories, entries, facts, check_labels, seed, progress)
    if out is not None:
        from .report import write_html

        with building_dir(Path(out), overwrite=overwrite, inputs=[d.root for d in directories]) as tmp:
            atomic_write_json(tmp / AUDIT_JSON, report)
            write_html(report, directories, tmp / AUDIT_HTML)
        log.info("wrote %s and %s in %s", AUDIT_JSON, AUDIT_HTML, out)
    return report


def _require_libraries(check_labels: bool) -> None:
    for name in ("imagehash", "cleanlab", "sklearn") if check_labels else ("imagehash",):
        if importlib.util.find_spec(name) is None:
            raise MissingDependencyError(
                f"imgtrain audit needs {name}.",
                hint="pip install 'imgtrain[audit]' (imagehash, cleanlab, scikit-learn).",
            )


def _findings(
    directories: list[ImageDirectory],
    entries: list[Entry],
    facts: list[Facts],
    check_labels: bool,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """The report: every finding, with the summary counts first."""
    readable = [i for i, f in enumerate(facts) if f.error is None]
    exact = exact_groups([f.sha256 for f in facts])
    hashes = _stacked([facts[i].hashes for i in readable], np.zeros((0, CROPS), np.uint64))
    thumbnails = _stacked([facts[i].thumbnail for i in readable], np.zeros((0, 1), np.uint8))
    pairs = [
        (readable[a], readable[b], bits)
        for a, b, bits in same_colours(near_pairs(hashes), thumbnails)
        if facts[readable[a]].sha256 != facts[readable[b]].sha256
    ]
    near = components(len(entries), [(a, b) for a, b, _ in pairs])
    group_of = {i: k for k, g in enumerate(near) for i in g}
    widest = [0] * len(near)
    for a, _, d in pairs:
        widest[group_of[a]] = max(widest[group_of[a]], d)
    groups = [_group(entries, g, "exact") for g in exact]
    groups += [_group(entries, g, "near", d) for g, d in zip(near, widest, strict=True)]
    labels = (
        _label_check(directories[0], entries, facts, seed, progress)
        if check_labels
        else {"checked": False, "reason": "turned off"}
    )
    report = {
        "format": AUDIT_FORMAT,
        "format_version": AUDIT_FORMAT_VERSION,
        "directories": [_describe(i, d) for i, d in enumerate(directories)],
        "thresholds": {
            "near_duplicate_bits": NEAR_BITS,
            "near_duplicate_colour_levels": NEAR_COLOUR,
            "tiny_side": TINY_SIDE,
            "max_aspect": MAX_ASPECT,
            "size_outlier": SIZE_OUTLIER,
        },
        "exact_duplicates": [g for g in groups if g["kind"] == "exact"],
        "near_duplicates": [g for g in groups if g["kind"] == "near"],
        "leakage": [g for g in groups if len(g["directories"]) > 1],
        "conflicting_labels": [g for g in groups if len(g["labels"]) > 1],
        "odd_images": _odd_images(entries),
        "unreadable": [{**entries[i].ref(), "error": f.error} for i, f in enumerate(facts) if f.error is not None],
        "label_issues": labels,
    }
    report = {"summary": _summary(report), **report}
    return report


def _group(entries: list[Entry], members: list[int], kind: str, bits: int = 0) -> dict[str, Any]:
    refs = [entries[i].ref() for i in members]
    return {
        "kind": kind,
        "bits": bits,
        "directories": sorted({r["directory"] for r in refs}),
        # a multi-label image's label set counts as one label: copies with different sets conflict
        "labels": sorted({_label_key(r["label"]) for r in refs if r["label"] is not None}),
        "images": refs,
    }


def _label_key(label: str | list[str]) -> str:
    """One label, or a multi-label image's classes sorted and joined by ';' ('' for none of them)."""
    return label if isinstance(label, str) else LABEL_SEPARATOR.join(sorted(label))


def _describe(index: int, directory: ImageDirectory) -> dict[str, Any]:
    """A directory's counts: images per class (multi-label: images having the class) and their imbalance."""
    counts = directory.class_counts() if directory.labeled else {}
    present = [c for c in counts.values() if c]
    described = {
        "index": index,
        "path": str(directory.root),
        "images": len(directory),
        "labeled": directory.labeled,
        "class_counts": counts,
        "imbalance_ratio": max(present) / min(present) if present else None,
    }
    if directory.multilabel:
        per_image = Counter(len(label_list(r.label)) for r in directory)
        described |= {"task": directory.task, "classes_per_image": dict(sorted(per_image.items()))}
    return described


def _odd_images(entries: list[Entry]) -> list[dict[str, Any]]:
    """Tiny images, odd aspect ratios, and images far smaller or larger than the median."""
    if not entries:
        return []
    median = float(np.median([e.record.width * e.record.height for e in entries]))
    odd = []
    for e in entries:
        w, h = e.record.width, e.record.height
        why = []
        if min(w, h) < TINY_SIDE:
            why.append(f"tiny: {w}x{h}, a side under {TINY_SIDE} px")
        if max(w, h) > MAX_ASPECT * min(w, h):
            why.append(f"aspect ratio {max(w, h) / min(w, h):.1f}:1")
        if not median / SIZE_OUTLIER <= w * h <= median * SIZE_OUTLIER:
            why.append(f"{w * h / median:.3g}x the median pixel count")
        if why:
            odd.append({**e.ref(), "width": w, "height": h, "why": why})
    return odd


def _stacked(arrays: list[np.ndarray | None], empty: np.ndarray) -> np.ndarray:
    """Readable images' arrays (only an unreadable image's are None) as one array; `empty` when there are none."""
    present = [a for a in arrays if a is not None]
    return np.stack(present) if present else empty


def _label_check(
    directory: ImageDirectory, entries: list[Entry], facts: list[Facts], seed: int, progress: bool = True
) -> dict[str, Any]:
    """Likely label errors of the audited directory (labels.py), with each image's reference."""
    from .labels import label_issues

    if not directory.labeled:
        return {"checked": False, "reason": "the directory has no labels", "issues": []}
    if directory.multilabel:
        return {
            "checked": False,
            "reason": "likely label errors are looked for in single-label data only",
            "issues": [],
        }
    mine = [i for i, e in enumerate(entries) if e.directory == 0 and facts[i].error is None]
    classes = [c for c, n in directory.class_counts().items() if n]
    index: dict[str | None, int] = {c: k for k, c in enumerate(classes)}  # labeled: every label is a class
    features = _stacked([facts[i].thumbnail for i in mine], np.zeros((0, 1)))
    labels = [index[single_label(entries[i].record.label)] for i in mine]  # multi-label returned above
    result = label_issues(features, np.array(labels), classes, seed, progress)
    for issue in result["issues"]:
        issue.update(entries[mine[issue.pop("position")]].ref())
    return result


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    audited = report["directories"][0]
    return {
        "images": sum(d["images"] for d in report["directories"]),
        "unreadable": len(report["unreadable"]),
        "exact_duplicate_groups": len(report["exact_duplicates"]),
        "exact_duplicate_copies": sum(len(g["images"]) - 1 for g in report["exact_duplicates"]),
        "near_duplicate_groups": len(report["near_duplicates"]),
        "leakage_groups": len(report["leakage"]),
        "conflicting_label_groups": len(report["conflicting_labels"]),
        "odd_images": len(report["odd_images"]),
        "likely_label_errors": len(report["label_issues"].get("issues", [])),
        "imbalance_ratio": audited["imbalance_ratio"],
    }


def summary_text(report: dict[str, Any]) -> str:
    """A few lines for people: what was found, worst first."""
    s = report["summary"]
    lines = [
        f"images audited:          {s['images']} in {len(report['directories'])} directories"
        + (f" ({s['unreadable']} unreadable)" if s["unreadable"] else ""),
        f"leakage:                 {s['leakage_groups']} groups of copies across directories",
        f"conflicting labels:      {s['conflicting_label_groups']} groups of copies with different labels",
        f"exact duplicates:        {s['exact_duplicate_groups']} groups ({s['exact_duplicate_copies']} extra copies)",
        f"near-duplicates:         {s['near_duplicate_groups']} groups (resized, re-encoded or cropped copies)",
    ]
    labels = report["label_issues"]
    lines.append(
        f"likely label errors:     {s['likely_label_errors']}"
        if labels.get("checked")
        else f"likely label errors:     not checked ({labels.get('reason')})"
    )
    if s["imbalance_ratio"] is not None:
        lines.append(f"class imbalance:         {s['imbalance_ratio']:.1f}:1 (largest class to smallest)")
    lines.append(f"odd sizes:               {s['odd_images']} images (tiny, odd aspect ratio or size outliers)")
    return "\n".join(lines)
