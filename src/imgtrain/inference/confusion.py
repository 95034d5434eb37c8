"""Confusion (and multi-label co-occurrence) matrices in a form whose size follows the images, not the classes
squared: the whole matrix up to DENSE_MAX_CLASSES classes, past it only the cells that are not zero; always the
most frequent confusions by name; and a plot only of what can be read."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Up to this many classes the matrix is written whole (10,000 numbers); past it, as its non-zero cells.
DENSE_MAX_CLASSES = 100
#: Up to this many classes the plot shows every class; past it, the classes of the most frequent confusions.
PLOT_MAX_CLASSES = 60
#: How many of the most frequent confusions (off-diagonal cells) are named in the JSON.
TOP_CONFUSIONS = 20


def count_pairs(rows: np.ndarray, columns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (row, column) class pairs of (n,) index arrays over k classes, as an (m, 2) array, and their
    counts: at most n cells, whatever k."""
    codes, counts = np.unique(rows.astype(np.int64) * k + columns.astype(np.int64), return_counts=True)
    return np.stack([codes // k, codes % k], axis=1), counts


def matrix_json(
    cells: np.ndarray,
    counts: np.ndarray,
    classes: list[str],
    columns_are: str,
    column: str,
    confused: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """`classes`, what rows and columns are, `matrix` (k <= DENSE_MAX_CLASSES) or `cells` ([row, column, count],
    non-zero only), and `top_confusions`: the TOP_CONFUSIONS largest off-diagonal cells (of `confused` when given),
    each {"true", `column`, "count"}."""
    k = len(classes)
    found: dict[str, Any] = {"classes": list(classes), "rows_are": "true class", "columns_are": columns_are}
    if k <= DENSE_MAX_CLASSES:
        dense = np.zeros((k, k), dtype=np.int64)
        dense[cells[:, 0], cells[:, 1]] = counts
        found["matrix"] = dense.tolist()
    else:
        found["cells"] = [[int(i), int(j), int(c)] for (i, j), c in zip(cells, counts, strict=True)]
    wrong, wrong_counts = confused if confused is not None else (cells, counts)
    off = wrong[:, 0] != wrong[:, 1]
    ranked = np.argsort(-wrong_counts[off], kind="stable")[:TOP_CONFUSIONS]
    found["top_confusions"] = [
        {"true": classes[i], column: classes[j], "count": int(c)}
        for (i, j), c in zip(wrong[off][ranked], wrong_counts[off][ranked], strict=True)
    ]
    return found


def for_plot(confusion: dict[str, Any]) -> tuple[np.ndarray, list[str], str]:
    """The matrix to draw, its classes, and what it shows: every class up to PLOT_MAX_CLASSES; past it, only the
    classes of the most frequent confusions (or of the fullest cells when nothing is confused)."""
    classes, k = confusion["classes"], len(confusion["classes"])
    if "matrix" in confusion:
        dense = np.array(confusion["matrix"], dtype=np.int64).reshape(k, k)
        cells = np.argwhere(dense > 0)
        counts = dense[cells[:, 0], cells[:, 1]] if len(cells) else np.zeros(0, np.int64)
    else:
        table = np.array(confusion["cells"], dtype=np.int64).reshape(-1, 3)
        cells, counts = table[:, :2], table[:, 2]
    if k <= PLOT_MAX_CLASSES:
        dense = np.zeros((k, k), dtype=np.int64)
        dense[cells[:, 0], cells[:, 1]] = counts
        return dense, list(classes), ""
    order = np.lexsort((-counts, cells[:, 0] == cells[:, 1]))  # confusions first, the largest first
    chosen: list[int] = []
    for i, j in cells[order]:
        chosen += [c for c in dict.fromkeys((int(i), int(j))) if c not in chosen]
        if len(chosen) >= PLOT_MAX_CLASSES:
            break
    chosen = sorted(chosen[:PLOT_MAX_CLASSES])
    place = {c: n for n, c in enumerate(chosen)}
    shown = np.zeros((len(chosen), len(chosen)), dtype=np.int64)
    for (i, j), c in zip(cells, counts, strict=True):
        if int(i) in place and int(j) in place:
            shown[place[int(i)], place[int(j)]] = c
    return shown, [classes[c] for c in chosen], f" ({len(chosen)} of {k} classes: those most confused)"
