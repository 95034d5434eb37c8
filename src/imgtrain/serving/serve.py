"""Real-time endpoint: a trained model behind HTTP (FastAPI), with a web page to try it.

    POST /predict   an uploaded image file (multipart field `file`, several allowed), or JSON:
                    {"images": ["<base64>", ...]} or the designer's
                    {"Inputs": {"WebServiceInput0": [{"image": "<base64 or data: URI>"}, ...]}}
    GET  /health    model name, classes, requests and batches served
    GET  /          the web page;  GET /docs, /openapi.json  the API description

Requests arriving together are scored as one batch (up to `max_batch`, waiting at most
`batch_wait_ms` for company). Bad input is a 4xx answer saying why, never a 500.
"""

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import (
    BEST_GUESS,
    MAX_IMAGES_PER_REQUEST,
    PROBABILITY_PREFIX,
    SCORED_LABELS,
    ServeConfig,
)
from ..data.imaging import BadImage, ImageTooLarge
from ..errors import MissingDependencyError, ParameterError
from ..inference.model import Model, load_model
from ..params import is_integer
from . import web
from .web import HostCheck, run_server
from .webpage import PAGE

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """Answered with `status` and the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Batcher:
    """Collects single images from concurrent requests into batches for the model."""

    model: Model
    config: ServeConfig
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    batches: int = 0
    images: int = 0
    largest_batch: int = 0

    async def probabilities(self, tensor: torch.Tensor) -> list[float]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((tensor, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.config.batch_wait_ms / 1000
            while len(batch) < self.config.max_batch:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            by_shape: dict[tuple[int, ...], list] = {}
            for tensor, future in batch:  # images of other sizes (no crop) cannot share a tensor
                by_shape.setdefault(tuple(tensor.shape), []).append((tensor, future))
            for group in by_shape.values():
                stacked = torch.stack([t for t, _ in group])
                try:
                    probs = await loop.run_in_executor(None, self.model.probabilities, stacked)
                except Exception as exc:  # a model failure answers every waiting request
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.images += len(group)
                self.largest_batch = max(self.largest_batch, len(group))
                for (_, future), row in zip(group, probs.tolist(), strict=True):
                    if not future.done():
                        future.set_result(row)


def _decode(data: bytes, name: str, config: ServeConfig, model: Model) -> torch.Tensor:
    try:
        return model.model_input.from_bytes(data, config.max_pixels)  # refuses images the transformation would blow up
    except BadImage as exc:
        raise BadRequest(413 if isinstance(exc, ImageTooLarge) else 400, f"{name}: {exc}") from None


def _from_base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise BadRequest(400, f"{name}: expected a base64 string")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(400, f"{name}: not valid base64") from None


def _json_images(body: bytes) -> tuple[list[tuple[str, bytes]], bool]:
    """(name, bytes) of each image in a JSON request, and whether it used the designer's format."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, a 100,000-digit number, deep nesting
        raise BadRequest(400, f"the body is not JSON imgtrain can read ({str(exc)[:120]})") from None
    if isinstance(doc, dict) and isinstance(doc.get("Inputs"), dict):
        rows = next(iter(doc["Inputs"].values()), None)
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "image" in r for r in rows):
            raise BadRequest(400, 'expected {"Inputs": {"WebServiceInput0": [{"image": "<base64>"}, ...]}}')
        images = [(f"Inputs[{i}].image", _from_base64(r["image"], f"Inputs[{i}].image")) for i, r in enumerate(rows)]
        return images, True
    if isinstance(doc, dict) and isinstance(doc.get("images"), list):
        return [(f"images[{i}]", _from_base64(t, f"images[{i}]")) for i, t in enumerate(doc["images"])], False
    raise BadRequest(400, 'expected {"images": ["<base64>", ...]} or the designer\'s {"Inputs": ...}')


def create_app(model: str | Path | Model, config: ServeConfig | None = None):
    """The ASGI application serving `model` (a trained model directory or a loaded Model)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError:
        raise MissingDependencyError("Serving needs FastAPI.", hint="pip install 'imgtrain[serve]'.") from None

    config = config or ServeConfig()
    model = model if isinstance(model, Model) else load_model(model, backend=config.backend)
    model.set_threshold(config.threshold)
    model.check_min_confidence(config.min_confidence)  # a class named "unknown" would be ambiguous
    batcher = Batcher(model, config)
    stats = {"requests": 0, "rejected": 0}
    decoders = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="imgtrain-decode")

    async def off_loop(function, *args):
        """Run CPU-heavy parsing or decoding in the decode pool, so /health and other requests stay answered."""
        return await asyncio.get_running_loop().run_in_executor(decoders, function, *args)

    app = FastAPI(
        title="imgtrain model endpoint",
        version="1",
        description=f"Image classifier {model.trained.architecture.model_name} with classes "
        f"{', '.join(model.classes)}.",
        lifespan=_lifespan(batcher, decoders),
    )

    @app.exception_handler(BadRequest)
    async def bad_request(request, exc: BadRequest):
        stats["rejected"] += 1
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.post(
        "/predict",
        summary="Classify images",
        description="Multipart upload (field `file`, repeatable) or JSON with base64 images. Answers the "
        "label and per-class probabilities of each image, best first in `top`.",
    )
    async def predict(request: Request) -> JSONResponse:
        stats["requests"] += 1
        body = await _read_body(request, config)
        images, designer = await _images_of(body, request.headers.get("content-type", ""), off_loop)
        tensors = await asyncio.gather(*(off_loop(_decode, data, name, config, model) for name, data in images))
        rows = await asyncio.gather(*(batcher.probabilities(t) for t in tensors))
        return JSONResponse(_answer(model, [name for name, _ in images], rows, designer, config.min_confidence))

    _add_page_and_health(app, model, config, batcher, stats)
    return app


def _lifespan(batcher: Batcher, decoders: ThreadPoolExecutor):
    """The app's lifespan: the batcher runs on the server's event loop; the decode pool stops with the app."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        batcher.queue = asyncio.Queue()  # bound to the server's event loop
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()
        decoders.shutdown(wait=False, cancel_futures=True)

    return lifespan


def _add_page_and_health(app: Any, model: Model, config: ServeConfig, batcher: Batcher, stats: dict[str, int]) -> None:
    """GET /health (liveness, the model's facts, the counters) and GET / (the drag-and-drop page)."""
    from fastapi.responses import HTMLResponse

    @app.get("/health", summary="Liveness and model facts")
    async def health() -> dict[str, Any]:
        return {
            **_facts(model, config),
            **stats,
            "batches": batcher.batches,
            "images": batcher.images,
            "largest_batch": batcher.largest_batch,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)


def _facts(model: Model, config: ServeConfig) -> dict[str, Any]:
    """What /health says about the model and how it answers."""
    return {
        "status": "ok",
        "model": model.trained.path.name,  # the folder's name: a path would tell any caller user and folder names
        "architecture": model.trained.architecture.model_name,
        "classes": list(model.classes),
        "device": str(model.device),
        "backend": model.backend_name,
        "temperature": model.trained.temperature,
        "min_confidence": config.min_confidence,
        **(
            {"task": "multilabel", "thresholds": list(model.thresholds), "temperatures": model.trained.temperatures}
            if model.thresholds is not None
            else {}
        ),
    }


async def _read_body(request, config: ServeConfig) -> bytes:
    """The request body, refused (413) as soon as it is over the limit, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_upload_bytes:
        raise BadRequest(413, f"the upload is {int(declared):,} bytes, over the limit of {config.max_upload_bytes:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > config.max_upload_bytes:
            raise BadRequest(413, f"the upload is over the limit of {config.max_upload_bytes:,} bytes")
    return bytes(body)


async def _images_of(body: bytes, content_type: str, off_loop) -> tuple[list[tuple[str, bytes]], bool]:
    """(name, bytes) of each image of a request, and whether it came in the designer's JSON format."""
    if content_type.startswith("multipart/form-data"):
        images, designer = await _multipart_images(body, content_type), False
    elif "json" in content_type or body[:1] in (b"{", b"["):
        images, designer = await off_loop(_json_images, body)
    else:
        raise BadRequest(415, "send multipart/form-data with a `file` field, or application/json")
    if not images:
        raise BadRequest(400, "no image in the request")
    if len(images) > MAX_IMAGES_PER_REQUEST:
        raise BadRequest(413, f"{len(images)} images in one request, over the limit of {MAX_IMAGES_PER_REQUEST}")
    return images, designer


def _answer(
    model: Model,
    names: list[str],
    rows: list[list[float]],
    designer: bool,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """The response: the designer's table, or each image's label, probabilities and top five. Below
    `min_confidence` the label is UNKNOWN_LABEL (and `best_guess` / BEST_GUESS the top class); a multi-label
    model's label is the list of classes over their thresholds."""
    classes = model.classes
    decided = [model.answer(row, min_confidence) for row in rows]
    if designer:
        table = [
            {
                SCORED_LABELS: label,
                **({BEST_GUESS: guess} if min_confidence is not None else {}),
                **{PROBABILITY_PREFIX + c: p for c, p in zip(classes, r, strict=True)},
            }
            for r, (label, guess) in zip(rows, decided, strict=True)
        ]
        return {"Results": {"WebServiceOutput0": table}}
    predictions = []
    for name, row, (label, guess) in zip(names, rows, decided, strict=True):
        ranked = sorted(zip(classes, row, strict=True), key=lambda cp: -cp[1])
        predictions.append(
            {"name": name, "label": label}
            | ({} if model.multilabel else {"best_guess": guess, "unknown": label != guess})
            | {
                "probabilities": dict(zip(classes, row, strict=True)),
                "top": [{"label": c, "probability": p} for c, p in ranked[:5]],
            }
        )
    return {"predictions": predictions}


async def _multipart_images(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """Files of a multipart body (already size-checked), parsed with python-multipart."""
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body

    parser = MultiPartParser(Headers({"content-type": content_type}), stream(), max_files=MAX_IMAGES_PER_REQUEST + 1)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise BadRequest(400, f"malformed multipart body ({exc})") from None
    images = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            images.append((value.filename or key, await value.read()))
    return images


def serve(
    model: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServeConfig | None = None,
    allowed_hosts: Iterable[str] = (),
) -> None:
    """Run the endpoint until interrupted, answering only requests addressed to this machine or `allowed_hosts`."""
    if not is_integer(port, 1, 65535):
        raise ParameterError(f"port must be from 1 to 65535, got {port!r}.")
    try:
        import uvicorn  # noqa: F401 - only whether it is installed
    except ImportError:
        raise MissingDependencyError("Serving needs uvicorn.", hint="pip install 'imgtrain[serve]'.") from None
    app = create_app(model, config)
    log.info("serving %s on http://%s:%d (web page at /, API at /docs)", model, host, port)
    run_server(HostCheck(app, web.allowed_hosts(host, allowed_hosts)), host, port)
