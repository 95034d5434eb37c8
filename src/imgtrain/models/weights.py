"""Pretrained ImageNet weights: where they are cached, and fetching them once, hash-checked.

The files are torchvision's own, in torch's hub cache ($TORCH_HOME/hub/checkpoints, shared with
every torch tool). Each official file name carries the first hex digits of the file's SHA-256
(`resnet18-f37072fd.pth`); a file is used only when its hash starts with them. Downloads use
torch's own code (a `.partial` file beside the target, moved into place only once complete and
verified). IMGTRAIN_OFFLINE=1 never touches the network; IMGTRAIN_WEIGHTS_URL replaces the base
of the official URLs (a mirror) and the hashes are still checked.

timm's weights come from the Hugging Face Hub (HF_ENDPOINT replaces its address, a mirror). Their names carry no
hash: the Hub states each file's SHA-256 (the `X-Linked-Etag` of a large file), which is asked before the
download, checked against the file, and kept beside it (`.sha256`) to check the cached file against later.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from ..errors import PretrainedWeightsError

log = logging.getLogger(__name__)

OFFLINE_ENV = "IMGTRAIN_OFFLINE"
MIRROR_ENV = "IMGTRAIN_WEIGHTS_URL"
HUB_ENV = "HF_ENDPOINT"
HUB_URL = "https://huggingface.co"
_HASHED_NAME = re.compile(r"-([0-9a-f]{8,64})\.[a-z]+$")  # torch.hub's convention: name-<sha256 prefix>.ext


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained weights file: where it comes from, where it is cached, the hash it must start with."""

    url: str
    path: Path
    sha256_prefix: str
    hash_from_server: bool = False  # the name carries no hash: the server states it (the Hugging Face Hub)

    @property
    def hash_file(self) -> Path:
        """Where the SHA-256 the server stated is kept beside the file."""
        return self.path.with_name(self.path.name + ".sha256")


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


def hub_weights(repo: str, filename: str) -> WeightsFile:
    """A file of a Hugging Face Hub repository (timm's weights), cached under torch's hub folder."""
    url = f"{os.environ.get(HUB_ENV, HUB_URL).rstrip('/')}/{repo}/resolve/main/{filename}"
    path = Path(torch.hub.get_dir()) / "checkpoints" / "hf" / repo.replace("/", "--") / filename
    kept = path.with_name(path.name + ".sha256")  # WeightsFile.hash_file
    return WeightsFile(url, path, kept.read_text().strip() if kept.is_file() else "", hash_from_server=True)


def fetch(weights: WeightsFile, offline: bool = False, progress: bool = True) -> Path:
    """The verified cached file, downloading it first when missing (never when offline)."""
    missing = not weights.path.is_file()
    if missing or (weights.hash_from_server and not weights.sha256_prefix):
        if offline_requested(offline):
            where = "are not in" if missing else "have no recorded SHA-256 in"
            raise PretrainedWeightsError(
                f"The pretrained weights {weights.path.name} {where} {weights.path.parent} and imgtrain is offline.",
                hint=f"copy the file there (from {weights.url}), pass --weights FILE, or go online "
                f"(unset {OFFLINE_ENV}).",
            )
        if weights.hash_from_server:
            weights = WeightsFile(weights.url, weights.path, _stated_sha256(weights.url), hash_from_server=True)
        if missing:
            _download(weights, progress)
    digest = _sha256(weights.path)
    if not digest.startswith(weights.sha256_prefix):
        raise PretrainedWeightsError(
            f"The cached weights {weights.path} have SHA-256 {digest}, not {weights.sha256_prefix}... as "
            f"{weights.url} names it.",
            hint="delete the file and run again to download it afresh.",
        )
    if weights.hash_from_server and not weights.hash_file.is_file():
        weights.hash_file.write_text(digest + "\n")
    return weights.path


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the Hub states the hash on its own answer, before sending the download elsewhere


def _stated_sha256(url: str) -> str:
    """The SHA-256 the server states for the file at `url` (a HEAD request, redirects not followed)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, method="HEAD"), timeout=30) as answer:
            headers = answer.headers
    except urllib.error.HTTPError as exc:
        if exc.code not in (301, 302, 303, 307, 308):
            raise PretrainedWeightsError(
                f"Asking {url} for its weights failed (HTTP {exc.code}); nothing was downloaded.",
                hint=f"check the network name and the Hub address ({HUB_ENV}), or pass --weights FILE.",
            ) from None
        headers = exc.headers
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise PretrainedWeightsError(
            f"Asking {url} for its weights failed ({type(exc).__name__}: {str(exc)[:200]}); nothing was downloaded.",
            hint=f"check the connection and the Hub address ({HUB_ENV}), or pass --weights FILE.",
        ) from None
    stated = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").removeprefix("W/").strip('"').lower()
    if not re.fullmatch(r"[0-9a-f]{64}", stated):
        raise PretrainedWeightsError(
            f"{url} does not state the file's SHA-256 (no X-Linked-Etag), so it cannot be checked; nothing was "
            "downloaded.",
            hint=f"use the Hugging Face Hub or a mirror of it ({HUB_ENV}), or pass --weights FILE.",
        )
    return stated


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
