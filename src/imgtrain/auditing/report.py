"""audit.html: the audit report as one self-contained page (inline style, thumbnails as data URIs)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from ..data.image_directory import ImageDirectory
from ..data.imaging import BadImage, open_reduced, read_image_file, to_rgb
from ..files import atomic_write_text

SHOWN = 60  # groups or images shown per section; audit.json has them all
THUMB = 96

STYLE = (
    """body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:22px}h2{font-size:17px;
margin-top:28px;border-bottom:1px solid #ddd}table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;
border-bottom:1px solid #eee}.group{display:flex;gap:8px;flex-wrap:wrap;margin:8px 0;padding:6px;background:#f6f6f6}
figure{margin:0;width:"""
    + str(THUMB + 24)
    + """px;font-size:11px;word-break:break-all}img{display:block;
max-width:"""
    + str(THUMB)
    + "px;max-height:"
    + str(THUMB)
    + """px}.bad{color:#b00}.more{color:#666}"""
)


def _thumbnail(path: Path) -> str:
    """A data URI of a small JPEG of the image, or '' when it cannot be read."""
    try:
        img, _ = open_reduced(read_image_file(path), THUMB)
        img = to_rgb(img)
    except (BadImage, OSError, ValueError):
        return ""
    img.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(ref: dict[str, Any], directories: list[ImageDirectory], caption: str = "") -> str:
    directory = directories[ref["directory"]]
    uri = _thumbnail(directory.root / ref["path"])
    shown = "; ".join(ref["label"]) or "no class" if isinstance(ref["label"], list) else ref["label"]
    label = "" if shown is None else f"<b>{html.escape(shown)}</b><br>"
    where = html.escape(f"[{ref['directory']}] {ref['source'] or ref['path']}")
    image = f'<img src="{uri}" alt="">' if uri else '<span class="bad">unreadable</span>'
    return f"<figure>{image}<figcaption>{label}{where}{caption}</figcaption></figure>"


def _groups(title: str, groups: list[dict[str, Any]], directories: list[ImageDirectory], explain: str) -> str:
    parts = [f"<h2>{html.escape(title)} ({len(groups)})</h2><p>{html.escape(explain)}</p>"]
    for group in groups[:SHOWN]:
        note = f" ({group['bits']} bits apart)" if group["kind"] == "near" else " (identical bytes)"
        parts.append(
            f'<div class="group">{"".join(_figure(r, directories) for r in group["images"])}'
            f"<small>{html.escape(note)}</small></div>"
        )
    if len(groups) > SHOWN:
        parts.append(f'<p class="more">{len(groups) - SHOWN} more in audit.json</p>')
    return "".join(parts)


def _label_section(labels: dict[str, Any], directories: list[ImageDirectory]) -> str:
    if not labels.get("checked"):
        return f"<h2>Likely label errors</h2><p>Not checked: {html.escape(str(labels.get('reason')))}.</p>"
    issues = labels["issues"]
    figures = "".join(
        _figure(i, directories, html.escape(f" → {i['suggested']}? (p={i['given_probability']:.2f})"))
        for i in issues[:SHOWN]
    )
    more = f'<p class="more">{len(issues) - SHOWN} more in audit.json</p>' if len(issues) > SHOWN else ""
    return (
        f"<h2>Likely label errors ({len(issues)})</h2><p>{html.escape(labels['method'])}; out-of-sample "
        f"accuracy {labels['out_of_sample_accuracy']:.3f}. Most doubtful first: the given label, then the "
        f'label the images suggest.</p><div class="group">{figures}</div>{more}'
    )


def _directories_section(report: dict[str, Any]) -> str:
    rows = []
    for d in report["directories"]:
        counts = ", ".join(f"{html.escape(c)} {n}" for c, n in d["class_counts"].items()) or "unlabeled"
        ratio = "" if d["imbalance_ratio"] is None else f"{d['imbalance_ratio']:.1f}:1"
        rows.append(
            f"<tr><td>[{d['index']}]</td><td>{html.escape(d['path'])}</td><td>{d['images']}</td>"
            f"<td>{counts}</td><td>{ratio}</td></tr>"
        )
    return (
        "<h2>Directories and classes</h2><table><tr><th></th><th>directory</th><th>images</th>"
        f"<th>images per class</th><th>imbalance</th></tr>{''.join(rows)}</table>"
    )


def write_html(report: dict[str, Any], directories: list[ImageDirectory], path: Path) -> None:
    """Write the report page to `path` (atomically)."""
    summary = "".join(
        f"<tr><td>{html.escape(k.replace('_', ' '))}</td><td>{v if v is not None else '-'}</td></tr>"
        for k, v in report["summary"].items()
    )
    odd = report["odd_images"]
    odd_figures = "".join(_figure(o, directories, html.escape(" · " + "; ".join(o["why"]))) for o in odd[:SHOWN])
    unreadable = "".join(f"<li>{html.escape(u['path'])}: {html.escape(u['error'])}</li>" for u in report["unreadable"])
    body = [
        f"<h1>imgtrain audit</h1><table>{summary}</table>",
        _directories_section(report),
        _groups(
            "Leakage across directories",
            report["leakage"],
            directories,
            "The same image (or a near copy) in more than one directory: a model is tested on what it learnt.",
        ),
        _groups(
            "Conflicting labels",
            report["conflicting_labels"],
            directories,
            "Copies of one image with different labels: at most one of them is right.",
        ),
        _groups("Exact duplicates", report["exact_duplicates"], directories, "Files with identical bytes."),
        _groups(
            "Near-duplicates",
            report["near_duplicates"],
            directories,
            "Resized, re-encoded or slightly cropped copies (perceptual hashes a few bits apart).",
        ),
        _label_section(report["label_issues"], directories),
        f"<h2>Odd sizes ({len(odd)})</h2><div class='group'>{odd_figures}</div>",
        f"<h2>Unreadable ({len(report['unreadable'])})</h2><ul>{unreadable}</ul>",
    ]
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>imgtrain audit</title><style>{STYLE}</style>'
        f"</head><body>{''.join(body)}</body></html>"
    )
    atomic_write_text(path, page)
