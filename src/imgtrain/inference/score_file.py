"""The scores file `imgtrain score` writes: CSV or JSON lines, streamed, appearing only once complete.

A multi-label model's lists (the true classes in `labels`, the answer in 'Scored Labels') are JSON lists in JSON
lines and one cell joined by config.LABEL_SEPARATOR in CSV, as a CSV manifest's `labels` column is.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from ..config import LABEL_SEPARATOR, SCORE_BATCH_SIZE
from ..data.remote import is_remote
from ..errors import ParameterError
from ..files import atomic_file, check_output
from .model import Model, load_model
from .scoring import score_columns, source_rows

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl")


def _check_scores_output(out: Path, overwrite: bool, inputs: list[Path]) -> None:
    """Before any work: the scores file is not an existing folder, nor is it, or does it lie in, an input."""
    if out.is_dir():
        raise ParameterError(f"{out} is a folder; the scores go to a file.", hint="give a path such as scores.csv.")
    check_output(out, overwrite, inputs)


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as its CSV cells: each list joined by LABEL_SEPARATOR."""
    return {k: LABEL_SEPARATOR.join(v) if isinstance(v, list) else v for k, v in row.items()}


def score_to_file(
    model: str | Path | Model,
    images: str | Path,
    out: str | Path,
    *,
    fmt: str | None = None,
    batch_size: int = SCORE_BATCH_SIZE,
    workers: int | None = None,
    skip_invalid: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    cache: bool = True,
    min_confidence: float | None = None,
) -> tuple[Path, int]:
    """Stream the scores to `out` (CSV or JSON lines), which appears only once complete; return (path, rows)."""
    out = Path(out)
    fmt = fmt or ("jsonl" if out.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv")
    if fmt not in FORMATS:
        raise ParameterError(f"format must be one of {FORMATS}, got {fmt!r}.")
    inputs = [model.trained.path if isinstance(model, Model) else Path(model)] + (
        [] if is_remote(images) else [Path(images)]
    )
    _check_scores_output(out, overwrite, inputs)
    model = model if isinstance(model, Model) else load_model(model)
    min_confidence = model.check_min_confidence(min_confidence)
    labeled, source, rows = source_rows(
        model, images, batch_size, workers, skip_invalid, progress, cache, min_confidence
    )
    columns = score_columns(model, labeled, min_confidence, skip_invalid)
    kept = f"{out} is as it was before." if out.exists() else ""
    count = 0
    with atomic_file(out, kept) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, extrasaction="raise") if fmt == "csv" else None
        if writer:
            writer.writeheader()
        for row in rows:
            if writer:
                writer.writerow(csv_row(row))
            else:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    log.info("scored %d images of %s with %s into %s", count, source, model.trained.path, out)
    return out, count
