"""Exact and near-duplicate groups among the audited images.

Exact: the same bytes (SHA-256). Near: perceptual hashes within NEAR_BITS of 64 bits, comparing the
whole image of one with the whole image or any crop of the other (facts.py), and confirmed by colour:
their 16x16 thumbnails differ by at most NEAR_COLOUR levels (of 255) on average, which rules out flat,
low-detail images whose DCT hashes happen to agree. Measured on generated scenes (bench/trust.py):
resized and re-encoded copies within 4 bits and 2 levels, copies cropped by up to 5% per side within
8 bits and 7 levels; distinct images that came within 12 bits differed by 18 levels or more.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

NEAR_BITS = 10
NEAR_COLOUR = 12.0
_CHUNK = 64  # rows compared at once: _CHUNK x images x crops bytes of popcounts in memory


def exact_groups(digests: Sequence[str]) -> list[list[int]]:
    """Positions of images with the same content hash, in groups of two or more ('' = unreadable, left out)."""
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, digest in enumerate(digests):
        if digest:
            by_digest[digest].append(i)
    return [members for members in by_digest.values() if len(members) > 1]


def near_pairs(hashes: np.ndarray, max_bits: int = NEAR_BITS) -> list[tuple[int, int, int]]:
    """(i, j, bits) for i < j whose hashes are within `max_bits`: image i whole against image j whole or cropped,
    or the other way round. `hashes` is (images, crops) uint64, the whole image in column 0."""
    n = len(hashes)
    whole = hashes[:, 0]
    best: dict[tuple[int, int], int] = {}
    for start in range(0, n, _CHUNK):
        rows = whole[start : start + _CHUNK]
        bits = np.bitwise_count(rows[:, None, None] ^ hashes[None, :, :]).min(axis=2)  # (rows, images)
        for r, j in zip(*np.nonzero(bits <= max_bits), strict=True):
            i = start + int(r)
            if i != j:
                key = (min(i, int(j)), max(i, int(j)))
                best[key] = min(best.get(key, 64), int(bits[r, j]))
    return [(i, j, d) for (i, j), d in sorted(best.items())]


def same_colours(
    pairs: Sequence[tuple[int, int, int]], thumbnails: np.ndarray, max_levels: float = NEAR_COLOUR
) -> list[tuple[int, int, int]]:
    """The pairs whose thumbnails differ by at most `max_levels` on average (the colour confirmation)."""
    return [
        (i, j, d)
        for i, j, d in pairs
        if np.abs(thumbnails[i].astype(np.int16) - thumbnails[j].astype(np.int16)).mean() <= max_levels
    ]


def components(n: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected groups (two or more members) of the graph with `n` nodes and edges `pairs` (union-find)."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for x in range(n):
        groups[root(x)].append(x)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
