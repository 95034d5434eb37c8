"""Sources in object storage (s3://, az://, gs://, any fsspec URL), staged to a local folder for convert.

A remote source is copied into a folder inside the output being built (so an interrupted convert leaves
nothing behind), then converted like a local one: the same validation, limits and refusals. Credentials
and endpoints come the way each ecosystem expects, never from the command line: the AWS variables and
profiles (AWS_ENDPOINT_URL for S3-compatible stores such as MinIO), AZURE_STORAGE_CONNECTION_STRING (its
BlobEndpoint for the Azurite emulator), Google's application default credentials.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from ..errors import InvalidDatasetError, MissingDependencyError
from ..jsonfiles import parse_json
from ..progress import progress_bar
from .archives import archive_kind
from .image_directory import META_NAME, safe_relative_path
from .imaging import MAX_FILE_BYTES
from .readers.manifest import MANIFEST_SUFFIXES, PATH_KEYS

log = logging.getLogger(__name__)

#: fsspec protocol -> the imgtrain extra that installs its implementation.
EXTRAS = {"s3": "s3", "s3a": "s3", "az": "azure", "abfs": "azure", "abfss": "azure", "gs": "gcs", "gcs": "gcs"}
MAX_OBJECTS = 1_000_000
MAX_TOTAL_BYTES = 64 * 2**30  # a remote source larger than this is refused before anything is copied
RETRIES = 4
BACKOFF_SECONDS = 0.25
T = TypeVar("T")


def is_remote(src: str | Path) -> bool:
    """True for a URL with a protocol other than file:// (s3://bucket/prefix, az://container/prefix, ...)."""
    return (
        isinstance(src, str)
        and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", src) is not None
        and not src.startswith("file://")
    )


def open_url(url: str) -> tuple[Any, str]:
    """(filesystem, path) of a URL; MissingDependencyError naming the extra when its implementation is missing."""
    try:
        import fsspec
    except ImportError:
        raise MissingDependencyError(
            "Remote sources need fsspec.", hint="pip install 'imgtrain[s3]', 'imgtrain[azure]' or 'imgtrain[gcs]'."
        ) from None
    protocol = url.split("://", 1)[0].lower()
    try:
        # a fresh instance: a cached one would keep the credentials of an earlier call
        return fsspec.core.url_to_fs(url, skip_instance_cache=True)
    except ImportError:
        extra = EXTRAS.get(protocol)
        raise MissingDependencyError(
            f"Reading {protocol}:// needs a library that is not installed.",
            hint=f"pip install 'imgtrain[{extra}]'."
            if extra
            else "install the fsspec implementation of this protocol.",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any protocol's constructor (reference:// raised TypeError): named
        raise InvalidDatasetError(
            f"{_safe(url)} is not a URL imgtrain can read ({type(exc).__name__}: {_first_line(exc)}).",
            hint="use s3://bucket/prefix, az://container/prefix or gs://bucket/prefix.",
        ) from None


def retrying(action: Callable[[], T], what: str, retries: int = RETRIES) -> T:
    """action(), retried with exponential backoff on errors that may pass (timeouts, throttling, 5xx)."""
    for attempt in range(retries + 1):
        try:
            return action()
        except InvalidDatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - SDK errors: transient ones are retried, the rest classified
            if attempt == retries or not _transient(exc):
                raise
            delay = BACKOFF_SECONDS * 2**attempt
            log.warning("%s failed (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError | PermissionError | ConnectionRefusedError):
        return False  # a refused connection is a wrong endpoint far more often than a passing fault
    if _status(exc) in (408, 429, 500, 502, 503, 504):
        return True
    text = str(exc).lower()
    return isinstance(exc, TimeoutError | ConnectionError) or any(
        word in text
        for word in (
            "timeout",
            "timed out",
            "throttl",
            "slowdown",
            "slow down",
            "serverbusy",
            "temporarily",
            "connection reset",
            "connection aborted",
        )
    )


def _call(action: Callable[[], T], what: str, url: str, key: str | None = None) -> T:
    """action() with retries (retrying); an SDK error that remains becomes the named error (remote_error)."""
    try:
        return retrying(action, what)
    except InvalidDatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - each SDK has its own errors: classified, never shown raw
        raise remote_error(url, exc, key) from None


def _stat(url: str) -> tuple[Any, str, dict[str, Any]]:
    """(filesystem, path, info) of a URL: what it is (an object or a prefix) and how large."""
    fs, root = open_url(url)
    return fs, root, _call(lambda: fs.info(root), f"reading {_safe(url)}", url)


def stage(url: str, dest: Path, progress: bool = True) -> Path:
    """Copy the remote source at `url` into `dest`; return the local path that stands for it (a folder, an
    archive or a manifest), to be converted as a local source."""
    fs, root, info = _stat(url)
    dest.mkdir(parents=True, exist_ok=True)
    if info.get("type") == "directory":
        objects = _listing(fs, root, url)
        _download(fs, {f"{root.rstrip('/')}/{rel}": dest / rel for rel in objects}, objects, url, progress)
        return dest
    name = PurePosixPath(root).name
    if not (archive_kind(Path(name)) or name.lower().endswith(MANIFEST_SUFFIXES)):
        raise InvalidDatasetError(
            f"{_safe(url)} is one object that is neither an archive nor a manifest.",
            hint="give a prefix (a folder of images), a .zip/.tar archive, or a CSV / JSON-lines manifest.",
        )
    local = dest / name
    _download(fs, {root: local}, {name: int(info.get("size") or 0)}, url, progress)
    if name.lower().endswith(MANIFEST_SUFFIXES):
        parent = str(PurePosixPath(root).parent)
        keys = _manifest_keys(local, url)
        sizes = {k: 0 for k in keys}
        _download(fs, {f"{parent}/{k}": dest / k for k in keys}, sizes, url, progress)
    return local


@dataclass(frozen=True)
class RemoteImages:
    """The images under a remote prefix, listed but not downloaded: each read when it is needed (streaming)."""

    url: str
    fs: Any
    root: str
    keys: list[str]  # relative to root
    labels: list[str | None]  # the first folder of a class-folder layout; None for a flat prefix

    def read(self, index: int) -> bytes:
        """The bytes of image `index` (capped at MAX_FILE_BYTES, retried like every remote read)."""
        key = f"{self.root.rstrip('/')}/{self.keys[index]}"
        return _call(lambda: _read_capped(self.fs, key), f"downloading {_safe(key)}", self.url, key)

    def address(self, index: int) -> str:
        return f"{_safe(self.url).rstrip('/')}/{self.keys[index]}"


def list_images(url: str) -> RemoteImages:
    """The images (by extension) under a remote prefix, in key order; labels from class folders if every image is
    in one, else none."""
    from .imaging import is_image_name

    fs, root, info = _stat(url)
    if info.get("type") != "directory":
        raise InvalidDatasetError(
            f"{_safe(url)} is not a prefix of images.", hint="score a prefix; convert an archive or a manifest first."
        )
    listed = _listing(fs, root, url)
    if META_NAME in listed or "_meta.yaml" in listed:
        raise InvalidDatasetError(
            f"{_safe(url)} is an image directory; score reads a prefix of images.",
            hint=f"convert it first: imgtrain convert {_safe(url)} DIR, then score DIR.",
        )
    keys = sorted(k for k in listed if is_image_name(k))
    if not keys:
        raise InvalidDatasetError(f"There is no image under {_safe(url)}.", hint="check the prefix.")
    nested = all("/" in k for k in keys)
    return RemoteImages(url, fs, root, keys, [k.split("/", 1)[0] if nested else None for k in keys])


def _listing(fs: Any, root: str, url: str) -> dict[str, int]:
    """Relative key -> size of every object under the prefix; refused when too many, too large or unsafe."""
    found = _call(lambda: fs.find(root, detail=True), f"listing {_safe(url)}", url)
    objects: dict[str, int] = {}
    prefix = root.rstrip("/") + "/"
    for key, meta in found.items():
        if meta.get("type") == "directory" or not key.startswith(prefix):
            continue
        rel = key[len(prefix) :]
        if not safe_relative_path(rel):
            raise InvalidDatasetError(
                f"The object {rel!r} under {_safe(url)} has a name that cannot be a local path.", hint="rename it."
            )
        objects[rel] = int(meta.get("size") or 0)
        if len(objects) > MAX_OBJECTS:
            raise InvalidDatasetError(
                f"{_safe(url)} holds more than {MAX_OBJECTS:,} objects.", hint="convert it in parts (one prefix each)."
            )
    if not objects:
        raise InvalidDatasetError(f"There is nothing under {_safe(url)}.", hint="check the prefix.")
    total = sum(objects.values())
    if total > MAX_TOTAL_BYTES:
        raise InvalidDatasetError(
            f"{_safe(url)} holds {total:,} bytes, over the limit of {MAX_TOTAL_BYTES:,}.",
            hint="convert it in parts (one prefix each).",
        )
    return objects


def _manifest_keys(manifest: Path, url: str) -> list[str]:
    """The relative keys a staged manifest names (refusing any that would leave its prefix)."""
    text = manifest.read_text(encoding="utf-8-sig", errors="replace")
    if manifest.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        column = next((n for n in reader.fieldnames or [] if (n or "").strip().lower() == "path"), None)
        paths = [row.get(column) for row in reader] if column else []
    else:
        paths = []
        for line in text.splitlines():
            try:
                row = parse_json(line) if line.strip() else None
            except json.JSONDecodeError:
                continue  # the local convert names the bad line
            paths.append(next((row[k] for k in PATH_KEYS if k in row), None) if isinstance(row, dict) else None)
    keys = sorted({p.strip() for p in paths if isinstance(p, str) and p.strip()})
    unsafe = [k for k in keys if not safe_relative_path(k)]
    if unsafe:
        raise InvalidDatasetError(
            f"{len(unsafe)} paths in the manifest {_safe(url)} are not keys relative to it, e.g. {unsafe[0][:200]!r}.",
            hint="give paths relative to the manifest's prefix.",
        )
    return keys


def read_object(url: str) -> bytes:
    """One object's bytes by its URL (retried, capped at MAX_FILE_BYTES; errors named as every remote read's)."""
    fs, key = open_url(url)
    return _call(functools.partial(_read_capped, fs, key), f"downloading {_safe(url)}", url, key)


def _download(fs: Any, pairs: dict[str, Path], sizes: dict[str, int], url: str, progress: bool) -> None:
    """Copy each remote key to its local path, with retries, a byte-and-object progress bar and size caps."""
    bar = progress_bar(sum(sizes.values()) or None, "download", "B", progress, unit_scale=True)
    with bar:
        for n, (key, local) in enumerate(pairs.items(), 1):
            local.parent.mkdir(parents=True, exist_ok=True)
            data = _call(functools.partial(_read_capped, fs, key), f"downloading {_safe(key)}", url, key)
            local.write_bytes(data)
            bar.update(len(data))
            bar.set_postfix(objects=f"{n}/{len(pairs)}")


def _read_capped(fs: Any, key: str) -> bytes:
    """An object's bytes; refused (InvalidDatasetError) over MAX_FILE_BYTES without reading the rest."""
    with fs.open(key, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InvalidDatasetError(
            f"The object {_safe(key)} is larger than {MAX_FILE_BYTES:,} bytes.",
            hint="no image or archive imgtrain reads is that large.",
        )
    return data


def _status(exc: BaseException) -> int | None:
    """The HTTP status an SDK error carries, if any (botocore, azure-core, gcsfs)."""
    for attribute in ("status_code", "status", "code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


DENIED_CODES = (
    "accessdenied",
    "authorizationfailure",
    "authenticationfailed",
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "forbidden",
    "unauthorized",
    "expiredtoken",
)


def remote_error(url: str, exc: BaseException, key: str | None = None) -> InvalidDatasetError:
    """The named error for a failed remote call: missing, refused, or failed after retries. The SDK's own text
    is never shown whole: it can carry request headers with signatures."""
    text = str(exc).lower()
    if isinstance(exc, FileNotFoundError) or _status(exc) == 404 or "notfound" in text.replace(" ", ""):
        where = f"The object {_safe(key)} named by {_safe(url)}" if key else f"The source {_safe(url)}"
        return InvalidDatasetError(
            f"{where} does not exist.",
            hint="check the bucket or container and the key or prefix (and the manifest's paths).",
        )
    if isinstance(exc, PermissionError) or _status(exc) in (401, 403) or any(c in text for c in DENIED_CODES):
        return InvalidDatasetError(
            f"Access to {_safe(url)} was refused ({type(exc).__name__}, status {_status(exc) or 403}).",
            hint="check the credentials in the environment "
            "(AWS_ACCESS_KEY_ID / AWS_PROFILE, AZURE_STORAGE_CONNECTION_STRING, "
            "GOOGLE_APPLICATION_CREDENTIALS).",
        )
    return InvalidDatasetError(
        f"Reading {_safe(url)} failed ({type(exc).__name__}: {_redact(_first_line(exc))[:200]}).",
        hint="check the endpoint (AWS_ENDPOINT_URL, the connection string's BlobEndpoint) "
        "and the network, then run again.",
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


_SECRET = re.compile(
    r"(AccountKey|SharedAccessSignature|sig|AWSAccessKeyId|Signature|X-Amz-Credential|"
    r"X-Amz-Signature|aws_secret_access_key|password)=([^;&\s]+)",
    re.IGNORECASE,
)


def _redact(text: str) -> str:
    """The text with anything that looks like a key, signature or password replaced."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=***", text)


def display(url: str) -> str:
    """How a remote source is named in messages and reports (no credentials, no query)."""
    return _safe(url)


def _safe(url: str) -> str:
    """A URL fit for a message: no user info, no query (which may carry a SAS token)."""
    url = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1", url)
    return url.split("?", 1)[0][:300]
