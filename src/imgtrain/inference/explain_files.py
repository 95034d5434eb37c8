"""The files of an explanation folder: JSON, heatmaps (safetensors), overlays and a grid (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..files import atomic_write_json, building_dir
from ..plots import pyplot

EXPLAIN_JSON = "explanations.json"
HEATMAPS = "heatmaps.safetensors"
GRID_PNG = "explanations.png"
ALPHA = 0.45  # the heatmap's share of an overlay pixel


def overlay(image: np.ndarray, heat: np.ndarray) -> Image.Image:
    """The image (HWC uint8) with the heatmap (HW, 0-1) over it in matplotlib's jet colours."""
    from matplotlib import colormaps

    colours = colormaps["jet"](heat)[..., :3] * 255
    return Image.fromarray(np.round(image * (1 - ALPHA) + colours * ALPHA).astype(np.uint8))


def _grid(document: dict[str, Any], overlays: list[Image.Image], path: Path) -> None:
    plt = pyplot()

    columns = min(4, max(1, len(overlays)))
    rows = max(1, -(-len(overlays) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, entry, picture in zip(axes.ravel(), document["images"], overlays, strict=False):
        ax.imshow(picture)
        colour = "#b00" if entry["error"] else "#060"
        truth = ", ".join(entry["label"]) or "none" if isinstance(entry["label"], list) else entry["label"]
        ax.set_title(f"{truth} → {entry['predicted']} ({entry['probability']:.2f})", fontsize=9, color=colour)
    fig.suptitle(f"Grad-CAM of {document['architecture']} at {document['target_layer']}: errors in red")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_explanations(
    out: Path, document: dict[str, Any], maps: list[np.ndarray], images: list[np.ndarray], overwrite: bool
) -> None:
    """Write the explanation folder as a whole (built aside, then swapped in)."""
    from safetensors.torch import save_file

    with building_dir(out, overwrite=overwrite) as tmp:
        overlays = []
        for n, (entry, heat, image) in enumerate(zip(document["images"], maps, images, strict=True)):
            entry["overlay"] = f"{n:02d}-{entry['id']}.png"
            picture = overlay(image, heat)
            picture.save(tmp / entry["overlay"])
            overlays.append(picture)
        save_file(
            {
                e.get("heatmap", str(e["id"])): torch.from_numpy(np.ascontiguousarray(h, dtype=np.float32))
                for e, h in zip(document["images"], maps, strict=True)
            },
            str(tmp / HEATMAPS),
        )
        _grid(document, overlays, tmp / GRID_PNG)
        atomic_write_json(tmp / EXPLAIN_JSON, document)
