"""The parameters the studio's form offers: each module's, from the library's declarations, as the CLI's are."""

from __future__ import annotations

from typing import Any

from ..config import CATALOG_FAMILY, FAMILIES, STUDIO_MODEL, STUDIO_TRAIN_DEFAULTS, TrainConfig, TransformSpec
from ..params import describe


def default_parameters() -> dict[str, Any]:
    """Each module's parameters and defaults, from the library's declarations (params.param), as the CLI's are:
    `parameters` has each one's type, range, choices and help; `ranges` and `choices` are the page's shortcuts."""
    # imported here: the catalog lists the networks torchvision has, and so loads torch
    from ..models.catalog import catalog_names

    declared = {"train_params": describe(TrainConfig, studio_only=True), "transform": describe(TransformSpec)}
    for name, value in STUDIO_TRAIN_DEFAULTS.items():
        declared["train_params"][name]["default"] = value
    everything = {name: d for module in declared.values() for name, d in module.items()}
    return {
        **{module: {name: d["default"] for name, d in fields.items()} for module, fields in declared.items()},
        "model": dict(STUDIO_MODEL),
        "parameters": declared,
        "ranges": {
            name: [d["low"], d["high"]]
            for name, d in everything.items()
            if d["type"] == "int" or (d["type"] == "float" and d["high"] is not None and not d["above"])
        },
        "choices": {name: d["choices"] for name, d in everything.items() if d["choices"]},
        "models": {**{family: list(names) for family, names in FAMILIES.items()}, CATALOG_FAMILY: catalog_names()},
    }
