"""The page's "try it": one uploaded image under a run's trained model, each model loaded once and kept (the two
most recently tried), whatever the number of requests at once."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.imaging import BadImage
from .runner import BadRequest

if TYPE_CHECKING:
    from ..inference.model import Model

#: How many loaded models "try it" keeps (each holds its network in memory).
KEPT_MODELS = 2
_kept: OrderedDict[tuple[str, int, int], Model] = OrderedDict()
_loading = threading.Lock()


def top_classes(model_dir: Path, data: bytes) -> dict[str, Any]:
    """The answer for one uploaded image under a run's trained model and its top classes, best first (at most five);
    a multi-label model's answer is the list of classes over their thresholds."""
    model = loaded(model_dir)
    try:
        probabilities = model.probabilities(model.model_input.from_bytes(data)[None])[0].tolist()
    except BadImage as exc:
        raise BadRequest(400, f"the image cannot be used: {exc}") from None
    ranked = sorted(zip(model.classes, probabilities, strict=True), key=lambda pair: -pair[1])
    return {"label": model.answer(probabilities)[0], "top": [{"class": c, "probability": p} for c, p in ranked[:5]]}


def loaded(model_dir: Path) -> Model:
    """The model directory loaded for prediction: once per version of its files (a model trained again is loaded
    again), one load at a time."""
    # imported here: loading a model loads torch, which the server does not load to serve the page
    from ..inference.model import load_model
    from ..models.architectures import MODEL_META

    try:
        meta = os.stat(model_dir / MODEL_META)
    except OSError:
        raise BadRequest(409, f"the model {model_dir.name} is not there any more.") from None
    key = (str(model_dir.resolve()), meta.st_ino, meta.st_mtime_ns)
    with _loading:
        if key not in _kept:  # on the CPU: one image at a time, and a GPU is left to the runs
            _kept[key] = load_model(model_dir, device="cpu")
            while len(_kept) > KEPT_MODELS:
                _kept.popitem(last=False)
        _kept.move_to_end(key)
        return _kept[key]
