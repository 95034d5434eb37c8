"""The page's "try it": one uploaded image under a run's trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.imaging import BadImage
from .runner import BadRequest


def top_classes(model_dir: Path, data: bytes) -> dict[str, Any]:
    """The answer for one uploaded image under a run's trained model and its top classes, best first (at most five);
    a multi-label model's answer is the list of classes over their thresholds."""
    # imported here: loading a model loads torch, which the server does not load to serve the page
    from ..inference.model import load_model

    model = load_model(model_dir)
    try:
        probabilities = model.probabilities(model.model_input.from_bytes(data)[None])[0].tolist()
    except BadImage as exc:
        raise BadRequest(400, f"the image cannot be used: {exc}") from None
    ranked = sorted(zip(model.classes, probabilities, strict=True), key=lambda pair: -pair[1])
    return {"label": model.answer(probabilities)[0], "top": [{"class": c, "probability": p} for c, p in ranked[:5]]}
