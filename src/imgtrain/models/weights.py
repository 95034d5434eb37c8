"""Pretrained ImageNet weights: where they are cached, and fetching them once, hash-checked.

The files are torchvision's own, in torch's hub cache ($TORCH_HOME/hub/checkpoints, shared with
every torch tool). Each official file name carries the first hex digits of the file's SHA-256
(`resnet18-f37072fd.pth`); a file is used only when its hash starts with them. Downloads use
torch's own code (a `.partial` file beside the target, moved into place only once complete and
verified). IMGTRAIN_OFFLINE=1 never touches the network; IMGTRAIN_WEIGHTS_URL replaces the base
of the official URLs (a mirror) and the hashes are still checked.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from ..errors import PretrainedWeightsError

log = logging.getLogger(__name__)

OFFLINE_ENV = "IMGTRAIN_OFFLINE"
MIRROR_ENV = "IMGTRAIN_WEIGHTS_URL"
_HASHED_NAME = re.compile(r"-([0-9a-f]{8,64})\.[a-z]+$")  # torch.hub's convention: name-<sha256 prefix>.ext


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained weights file: where it comes from, where it is cached, the hash it must start with."""

    url: str
    path: Path
    sha256_prefix: str


def offline_requested(offline: bool = False) -> bool:
    """True when asked (the argument) or when IMGTRAIN_OFFLINE is set to 1/true/yes."""
    return offline or os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def imagenet_weights(model_name: str) -> WeightsFile:
    """The official ImageNet weights file of `model_name` (torchvision's default weights), mirror applied."""
    url = torchvision.models.get_model_weights(model_name).DEFAULT.url
    name = url.rsplit("/", 1)[-1]
    match = _HASHED_NAME.search(name)
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        url = mirror.rstrip("/") + "/" + name
    return WeightsFile(url, Path(torch.hub.get_dir()) / "checkpoints" / name, match.group(1) if match else "")


def fetch(weights: WeightsFile, offline: bool = False, progress: bool = True) -> Path:
    """The verified cached file, downloading it first when missing (never when offline)."""
    if not weights.path.is_file():
        if offline_requested(offline):
            raise PretrainedWeightsError(
                f"The pretrained weights {weights.path.name} are not in {weights.path.parent} and imgtrain is offline.",
                hint=f"copy the file there (from {weights.url}), pass --weights FILE, or go online "
                f"(unset {OFFLINE_ENV}).",
            )
        _download(weights, progress)
    digest = _sha256(weights.path)
    if not digest.startswith(weights.sha256_prefix):
        raise PretrainedWeightsError(
            f"The cached weights {weights.path} have SHA-256 {digest}, not {weights.sha256_prefix}... as "
            f"{weights.url} names it.",
            hint="delete the file and run again to download it afresh.",
        )
    return weights.path


def _download(weights: WeightsFile, progress: bool) -> None:
    log.info("downloading %s to %s", weights.url, weights.path)
    weights.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(
            weights.url, str(weights.path), hash_prefix=weights.sha256_prefix or None, progress=progress
        )
    except RuntimeError as exc:
        got = re.search(r'got "([0-9a-f]+)"', str(exc))
        if got is None:
            raise
        raise PretrainedWeightsError(
            f"The file downloaded from {weights.url} has SHA-256 {got.group(1)}, not {weights.sha256_prefix}... as "
            "its name says; it was not kept.",
            hint=f"check the server or mirror ({MIRROR_ENV}) and try again.",
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, 404, reset, cut short, bad URL
        raise PretrainedWeightsError(
            f"Downloading {weights.url} failed ({type(exc).__name__}: {str(exc)[:200]}); nothing was kept.",
            hint=f"check the connection and run again, or copy the file to {weights.path} yourself, or pass "
            "--weights FILE.",
        ) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
