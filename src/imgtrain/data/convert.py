"""Convert to Image Directory: folders, archives, manifests and Azure designer directories."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import archives, remote
from ..errors import InvalidDatasetError
from ..files import atomic_write_json, building_dir
from .image_directory import (
    IMAGES_DIR,
    META_NAME,
    ImageDirectory,
    ImageRecord,
    list_problems,
    safe_relative_path,
    write_image_directory,
)
from ..config import TransformSpec
from .decoding import DecodedCache, default_cache_dir, report_usage, resize_exact, rgb_image
from .imaging import (HEIF_INSTALL, IMAGE_EXTENSIONS, BadImage, MissingDecoder, header_size, is_image_name,
                      open_reduced, read_image_file, rgb_tensor)
from ..parallel import process_map

log = logging.getLogger(__name__)

REPORT_NAME = "convert-report.json"
NO_DECODER = "no-decoder"  # _import_one's status for a HEIF image without pillow-heif: left out, not bad
_FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "PPM": ".ppm",
                      "TIFF": ".tif", "WEBP": ".webp", "MPO": ".jpg", "HEIF": ".heic"}


@dataclass(frozen=True)
class Candidate:
    """A file to import: where it is, the name users know it by, its label and optional id."""

    file: Path
    source: str
    label: str | None
    id: int | None = None


def convert(
    src: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    skip_invalid: bool = False,
    allow_outside: bool = False,
    workers: int | None = None,
    progress: bool = True,
    cache: bool = True,
) -> ImageDirectory:
    """Turn a folder, archive, manifest or designer image directory into an imgtrain image directory.

    `src` may be a URL (s3://, az://, gs://, any fsspec URL: data.remote), copied in first. Every image is
    decoded once here; with `cache`, photos are kept resized in the decoded-image cache too. Bad images
    raise InvalidDatasetError naming them and nothing is written, unless `skip_invalid`, which leaves them
    out and lists them in OUT/convert-report.json.
    """
    started = time.perf_counter()
    url = str(src) if remote.is_remote(src) else None
    src, out = Path(src), Path(out)
    if url is None and not src.exists():
        raise InvalidDatasetError(f"The source {src} does not exist.", hint="check the path.")
    with building_dir(out, overwrite, inputs=[] if url else [src], validate=ImageDirectory.open) as tmp:
        if url is not None:  # copied inside the output being built: an interrupted convert leaves nothing
            src = remote.stage(url, tmp / ".download", progress)
        candidates, ignored = _gather(src, tmp / ".extract")
        if url is not None:
            candidates = _named_by_url(candidates, src, url)
        if src.is_file() and src.suffix.lower() in MANIFEST_SUFFIXES and not allow_outside:
            _check_inside(src, candidates)
        candidates, misnamed = _utf8_names(candidates)
        ignored = [printable(name) for name in ignored]
        records, bad, undecodable = _import_images(candidates, tmp, workers, progress,
                                                   str(default_cache_dir()) if cache else None)
        bad = misnamed + bad
        shutil.rmtree(tmp / ".extract", ignore_errors=True)
        shutil.rmtree(tmp / ".download", ignore_errors=True)
        if bad and not skip_invalid:
            raise InvalidDatasetError(
                f"{len(bad)} of {len(candidates) + len(misnamed)} images in {src} cannot be used; nothing was "
                "written:\n"
                + list_problems([f"{name}: {reason}" for name, reason in bad]),
                hint="fix or remove these files, or pass skip_invalid=True to leave them out.",
                cli_hint="fix or remove these files, or pass --skip-invalid to leave them out.",
            )
        if not records:
            raise InvalidDatasetError(f"None of the images in {src} can be used.",
                                      hint=HEIF_INSTALL if undecodable else "check the files.")
        classes = sorted({r.label for r in records if r.label is not None})
        write_image_directory(tmp, classes, records)
        _write_report(tmp / REPORT_NAME, remote.display(url) if url else str(src), len(records),
                      bad + undecodable, ignored)
    _log_outcome(out, len(records), classes, len(bad), ignored, len(undecodable), time.perf_counter() - started)
    report_usage(DecodedCache(default_cache_dir()) if cache else None)
    return ImageDirectory.open(out)


def _log_outcome(out: Path, images: int, classes: list[str], bad: int, ignored: list[str], undecodable: int,
                 seconds: float) -> None:
    """What convert wrote, and what it left out and where that is listed."""
    if bad:
        log.warning("skipped %d invalid images; see %s", bad, out / REPORT_NAME)
    if ignored:
        log.warning("ignored %d files (no image extension, or symbolic links), e.g. %s", len(ignored), ignored[:3])
    if undecodable:
        log.warning("left out %d HEIF (HEIC) images: their decoder pillow-heif is not installed (%s); see %s",
                    undecodable, HEIF_INSTALL, out / REPORT_NAME)
    log.info("converted %d images (%s) in %.1fs into %s", images,
             f"{len(classes)} classes" if classes else "unlabeled", seconds, out)


def _named_by_url(candidates: list[Candidate], staged: Path, url: str) -> list[Candidate]:
    """Candidates of a staged remote source, named by their URL rather than by where they were staged."""
    prefix, shown = str(staged), remote.display(url)
    return [dataclasses.replace(c, source=shown + c.source[len(prefix):]) if c.source.startswith(prefix) else c
            for c in candidates]


def _write_report(path: Path, source: str, images: int, bad: list[tuple[str, str]], ignored: list[str]) -> None:
    atomic_write_json(path, {"format": "imgtrain.convert_report", "format_version": 1, "source": source,
                             "images": images, "skipped": [{"source": n, "reason": r} for n, r in bad],
                             "ignored_non_images": ignored})


def _gather(src: Path, extract_dir: Path) -> tuple[list[Candidate], list[str]]:
    """Candidates from any supported source, plus names of non-image files ignored."""
    if src.is_dir():
        if (src / "_meta.yaml").is_file():
            return _from_azure_directory(src), []
        if (src / META_NAME).is_file():
            return _from_image_directory(src), []
        return _from_folder(src, src)
    name = src.name.lower()
    if archives.archive_kind(src):
        ignored = archives.extract(src, extract_dir)
        found, more = _from_folder(_unwrap(extract_dir), src, display_root=extract_dir)
        return found, ignored + more
    if name.endswith(".csv"):
        return _from_csv(src), []
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return _from_jsonl(src), []
    raise InvalidDatasetError(
        f"{src} is not a source imgtrain can convert.",
        hint="give a folder, a .zip/.tar/.tar.gz/.tgz/.tar.bz2 archive, a .csv or .jsonl manifest, "
        "or a designer image directory (with _meta.yaml).",
    )


def _unwrap(root: Path) -> Path:
    """Step into an archive's single top folder when that folder holds the class folders."""
    if not root.is_dir():
        return root
    entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and any(
        p.is_dir() and not p.name.startswith(".") for p in entries[0].iterdir()
    ):
        return entries[0]
    return root


def _from_folder(root: Path, src: Path, display_root: Path | None = None) -> tuple[list[Candidate], list[str]]:
    """ImageFolder layout (top-level sub-folder = class) or a flat folder (unlabeled)."""
    top_level: list[Candidate] = []
    nested: list[Candidate] = []
    ignored: list[str] = []
    shown = display_root or root
    for dirpath, dirnames, filenames in os.walk(root):  # one rule: symbolic links, to files or folders, are
        here = Path(dirpath)                             # listed and never followed (they may lead outside SRC)
        rel_dir = here.relative_to(root)
        links = sorted(d for d in dirnames if (here / d).is_symlink()) + sorted(
            f for f in filenames if (here / f).is_symlink())
        ignored.extend(f"{rel_dir / name} (symbolic link: not followed)" for name in links)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX" and d not in links)
        for fname in sorted(filenames):
            path = here / fname
            if fname.startswith(".") or fname in links or not path.is_file():
                continue
            display = str(src / path.relative_to(shown)) if display_root else str(path.relative_to(root))
            if not is_image_name(fname):
                ignored.append(display)
            elif rel_dir.parts:
                nested.append(Candidate(path, display, rel_dir.parts[0]))
            else:
                top_level.append(Candidate(path, display, None))
    if top_level and nested:
        raise InvalidDatasetError(
            f"{src} mixes images at its top level ({', '.join(c.source for c in top_level[:3])}"
            f"{', ...' if len(top_level) > 3 else ''}) with class sub-folders.",
            hint="move every image into a class folder (SRC/<class>/<image>) for labeled data, or keep "
            "all images at the top level for unlabeled data.",
        )
    found = nested or top_level
    if not found:
        raise InvalidDatasetError(
            f"No images found in {src}.",
            hint="images need one of the extensions " + ", ".join(sorted(IMAGE_EXTENSIONS)) + ".",
        )
    return found, ignored


def _from_csv(manifest: Path) -> list[Candidate]:
    rows: list[tuple[int, dict]] = []
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
            if "path" not in fields:
                raise InvalidDatasetError(
                    f"The manifest {manifest} has no 'path' column (columns: {reader.fieldnames}).",
                    hint="start the CSV with a header line 'path,label' (label is optional).",
                )
            for lineno, row in enumerate(reader, 2):
                label = row.get(fields["label"]) if "label" in fields else None
                rows.append((lineno, {"path": row.get(fields["path"]), "label": label}))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidDatasetError(f"The manifest {manifest} cannot be read: {exc}.") from None
    return _manifest_candidates(manifest, rows)


def _from_jsonl(manifest: Path) -> list[Candidate]:
    rows: list[tuple[int, dict]] = []
    problems = []
    try:
        with manifest.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(f"line {lineno}: not JSON ({exc.msg})")
                    continue
                if not isinstance(row, dict):
                    problems.append(f"line {lineno}: not a JSON object")
                    continue
                rows.append((lineno, row))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDatasetError(f"The manifest {manifest} cannot be read: {exc}.") from None
    if problems:
        raise InvalidDatasetError(f"The manifest {manifest} is invalid:\n{list_problems(problems)}",
                                  hint='write one object per line: {"path": "a/b.png", "label": "cat"}.')
    return _manifest_candidates(manifest, rows)


def _manifest_candidates(manifest: Path, rows: list[tuple[int, dict]]) -> list[Candidate]:
    base = manifest.parent
    problems: list[str] = []
    found: list[Candidate] = []
    for lineno, row in rows:
        path, label = row.get("path"), row.get("label")
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)
        if isinstance(label, str):
            label = label.strip() or None
        if not isinstance(path, str) or not path.strip():
            problems.append(f"line {lineno}: no path")
        elif label is not None and not isinstance(label, str):
            problems.append(f"line {lineno}: label {label!r} is not a string")
        else:
            found.append(Candidate(base / path.strip(), path.strip(), label))
    _check_all_or_none_labeled(found, problems)
    if problems:
        raise InvalidDatasetError(f"The manifest {manifest} is invalid:\n{list_problems(problems)}",
                                  hint="give every row a path, and either every row a label or none.")
    if not found:
        raise InvalidDatasetError(f"The manifest {manifest} lists no images.", hint="add rows 'path,label'.")
    return found


def _check_all_or_none_labeled(found: list[Candidate], problems: list[str]) -> None:
    unlabeled = [c.source for c in found if c.label is None]
    if unlabeled and len(unlabeled) != len(found):
        problems.extend(f"{name}: no label while other images have one" for name in unlabeled)


#: The designer's _meta.yaml is a few lines; anything near this is not one.
MAX_META_BYTES = 64 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases (`*name`): a few hundred bytes of nested aliases expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed here",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _from_azure_directory(src: Path) -> list[Candidate]:
    """An image directory written by the Azure ML designer (_meta.yaml + images.lst + image/)."""
    path = src / "_meta.yaml"
    try:
        if path.stat().st_size > MAX_META_BYTES:
            raise InvalidDatasetError(f"{path} is {path.stat().st_size:,} bytes; a designer _meta.yaml is a few "
                                      f"lines (at most {MAX_META_BYTES:,} bytes are read).")
        meta = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidDatasetError(f"{path} cannot be read: {str(exc)[:300]}.") from None
    if not isinstance(meta, dict) or meta.get("type") != "ImageDirectory":
        raise InvalidDatasetError(f"{src / '_meta.yaml'} does not describe a designer ImageDirectory "
                                  "('type: ImageDirectory').")
    image_list = meta.get("image_list", "images.lst")
    if not isinstance(image_list, str) or not safe_relative_path(image_list):
        raise InvalidDatasetError(f"{src / '_meta.yaml'}: image_list {image_list!r} is not a relative path.")
    rows = []
    try:
        with (src / image_list).open(encoding="utf-8") as f:
            rows = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDatasetError(f"{src / image_list} cannot be read: {exc}.") from None
    found: list[Candidate] = []
    problems: list[str] = []
    for lineno, line in rows:
        try:
            row = json.loads(line)
            name = row["image_info"]["file_name"]
        except (json.JSONDecodeError, KeyError, TypeError):
            problems.append(f"{image_list} line {lineno}: no image_info.file_name")
            continue
        label, ident = row.get("category"), row.get("id")
        if not isinstance(name, str) or not safe_relative_path(name):
            problems.append(f"{image_list} line {lineno}: file_name {name!r} is not a relative path inside {src}")
        elif label is not None and not isinstance(label, str | int):
            problems.append(f"{image_list} line {lineno}: category {label!r} is not a string")
        elif isinstance(label, str) and not label.strip():
            problems.append(f"{image_list} line {lineno}: the category is empty")
        else:
            ident = ident if isinstance(ident, int) and not isinstance(ident, bool) and ident >= 0 else None
            found.append(Candidate(src / name, name, None if label is None else str(label), ident))
    _check_all_or_none_labeled(found, problems)
    if problems:
        raise InvalidDatasetError(f"The designer image directory {src} is invalid:\n{list_problems(problems)}")
    if not found:
        raise InvalidDatasetError(f"The designer image directory {src} lists no images.")
    return found


def _from_image_directory(src: Path) -> list[Candidate]:
    directory = ImageDirectory.open(src)
    return [Candidate(src / r.path, r.source or r.path, r.label, r.id) for r in directory]


#: The resize of the default transformation: what convert keeps photos at in the decoded-image cache.
DEFAULT_RESIZE = TransformSpec().size


def _import_one(task: tuple[str, str, bool, str | None]) -> tuple[str, int, int, str]:
    """Decode one file and copy (or, for our own extracted files, move) it to `dest_stem` + extension.

    The image is decoded for the default transformation's resize (a JPEG at reduced scale: every byte is still
    read and checked); with a cache folder, a photo that resize shrinks is kept there resized, so training and
    scoring start from it. Returns ('ok', width, height, extension), or ('bad' or NO_DECODER, 0, 0, reason).
    """
    file, dest_stem, move, cache_root = task
    size = DEFAULT_RESIZE
    try:
        data = read_image_file(file)
        img, (width, height) = open_reduced(data, size)
        fmt = img.format
        rgb = rgb_image(img)
    except MissingDecoder as exc:
        return (NO_DECODER, 0, 0, str(exc))
    except BadImage as exc:
        return ("bad", 0, 0, str(exc))
    except Exception as exc:  # a format quirk Pillow cannot handle: still a bad image, not a crash
        return ("bad", 0, 0, f"cannot decode ({type(exc).__name__}: {exc})")
    suffix = Path(file).suffix.lower()
    ext = suffix if is_image_name(file) else _FORMAT_EXTENSIONS.get(fmt or "", ".img")
    if move:
        os.replace(file, dest_stem + ext)
    else:
        with open(dest_stem + ext, "wb") as f:
            f.write(data)
    cache = DecodedCache(Path(cache_root)) if cache_root else None
    if cache and cache.worth_keeping(size, width, height):
        cache.keep(Path(dest_stem + ext), size, resize_exact(rgb_tensor(rgb), size, (width, height)))
    return ("ok", width, height, ext)


def _import_torch_for_photos(candidates: list[Candidate], cache: DecodedCache, peek: int = 8) -> None:
    """Import torch here, before the workers start, when the first images are photos to cache (each is resized with
    torch): the workers then share it instead of each importing it (seconds and 200 MB apiece). Small images need
    no torch at all."""
    for c in candidates[:peek]:
        try:
            width, height = header_size(read_image_file(c.file))
        except BadImage:  # named by the worker that decodes it
            continue
        if cache.worth_keeping(DEFAULT_RESIZE, width, height):
            log.info("loading torch to keep the photos resized in the decoded-image cache")
            import torchvision.transforms.v2  # noqa: F401
            return


MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json", ".ndjson")


def _check_inside(manifest: Path, candidates: list[Candidate]) -> None:
    """Manifest paths stay in the manifest's folder (after resolving `..` and links) unless allowed."""
    base = manifest.parent.resolve()
    outside = [c.source for c in candidates if not c.file.resolve().is_relative_to(base)]
    if outside:
        raise InvalidDatasetError(
            f"{len(outside)} paths in the manifest {manifest} lead outside its folder {base}:\n"
            f"{list_problems([printable(p) for p in outside])}",
            hint="give paths relative to the manifest's folder, or pass allow_outside=True to read files anywhere.",
            cli_hint="give paths relative to the manifest's folder, or pass --allow-outside-paths to read files "
                     "anywhere.")


def printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by Python as surrogates) shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _utf8_names(candidates: list[Candidate]) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Candidates with their names as text, and those whose class folder name is not UTF-8 (a class name
    must be text; shown as \\xNN two such folders could become one class)."""
    kept, bad = [], []
    for c in candidates:
        source = printable(c.source)
        if c.label is not None and printable(c.label) != c.label:
            bad.append((source, f"the class folder name '{printable(c.label)}' is not UTF-8; rename it"))
        else:
            kept.append(dataclasses.replace(c, source=source))
    return kept, bad


def _import_images(
    candidates: list[Candidate], tmp: Path, workers: int | None, progress: bool, cache_root: str | None
) -> tuple[list[ImageRecord], list[tuple[str, str]], list[tuple[str, str]]]:
    """(records, bad images, HEIF images left out for want of their decoder), each as (source, reason)."""
    (tmp / IMAGES_DIR).mkdir()
    ids = [c.id for c in candidates]
    if None in ids or len(set(ids)) != len(ids):
        ids = list(range(len(candidates)))
    width = max(6, len(str(len(candidates))))
    staged = tmp / ".extract"  # files extracted from an archive are ours to move
    tasks = [(str(c.file), str(tmp / IMAGES_DIR / f"{k:0{width}d}"), c.file.is_relative_to(staged), cache_root)
             for k, c in enumerate(candidates)]
    records: list[ImageRecord] = []
    bad: list[tuple[str, str]] = []
    undecodable: list[tuple[str, str]] = []
    if cache_root:
        _import_torch_for_photos(candidates, DecodedCache(Path(cache_root)))
    results = process_map(_import_one, tasks, workers, desc="convert", progress=progress)
    for k, (c, ident, (status, w, h, extra)) in enumerate(zip(candidates, ids, results)):
        if status == "ok":
            path = f"{IMAGES_DIR}/{k:0{width}d}{extra}"
            records.append(ImageRecord(ident, path, c.label, w, h, c.source))
        else:
            (undecodable if status == NO_DECODER else bad).append((c.source, extra))
    return records, bad, undecodable


def folder_images(src: Path) -> tuple[list[Candidate], list[str]]:
    """The images of a plain folder as convert reads them (class folders or flat; links listed, never followed), their
    names as text, and the files left aside; InvalidDatasetError as convert raises it, and for a class folder whose
    name is not UTF-8."""
    found, ignored = _from_folder(src, src)
    found, misnamed = _utf8_names(found)
    if misnamed:
        raise InvalidDatasetError(f"{len(misnamed)} images of {src} cannot be labeled:\n"
                                  f"{list_problems([f'{name}: {reason}' for name, reason in misnamed])}")
    return found, [printable(name) for name in ignored]
