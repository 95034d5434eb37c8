"""imgtrain studio's server: the API (runs, their outputs and live events, files under the root) and the page, behind
a token. Each route calls the module that owns its concern: supervisor (the worker running one run at a time),
results, downloads, events, browse, predict, parameters.

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations, such as Request.)
"""

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, ParameterError
from .browse import list_sources
from .downloads import download_file, output_file
from .events import follow
from .page import PAGE
from .parameters import default_parameters
from .predict import top_classes
from .registry import Registry
from .results import best_accuracy, confident_errors, output_summary, run_details, run_summary
from .runner import BadRequest, check_request
from .supervisor import ACTIVE, RESUMABLE, Manager

try:  # the [serve] extra: without it, create_app() and studio() say what to install
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
except ImportError:
    HAS_SERVE_EXTRA = False
else:
    HAS_SERVE_EXTRA = True

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1 << 20
MAX_UPLOAD_BYTES = 20 << 20
#: How often the server records a worker's end and starts the next queued run.
TICK_SECONDS = 0.3


def create_app(root: str | Path, token: str | None = None) -> "FastAPI":
    """The studio as an ASGI app over `root` (every path it reads or writes lies under it)."""
    _require_serve_extra()
    root = Path(root).resolve()
    token = token or secrets.token_urlsafe(16)
    manager = Manager(root, Registry.open(root))

    async def supervise() -> None:
        while True:
            await asyncio.to_thread(manager.tick)
            await asyncio.sleep(TICK_SECONDS)

    async def lifespan(app):
        task = asyncio.create_task(supervise())
        yield
        task.cancel()
        await asyncio.to_thread(manager.shutdown)

    app = FastAPI(title="imgtrain studio", lifespan=lifespan)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse(
                {"error": "a token is needed: open the URL the studio printed, or send 'Authorization: Bearer TOKEN'"},
                status_code=401,
            )
        return await call_next(request)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    _run_routes(app, manager)
    _run_output_routes(app, manager)
    _studio_routes(app, manager)
    return app


def _run_routes(app: "FastAPI", manager: Manager) -> None:
    """Runs: check a request, submit, list, read, stop, resume, follow a run's events."""
    root = manager.root

    @app.post("/api/check")
    async def check(request: Request) -> dict[str, Any]:
        return {"ok": True, "request": await _checked_request(request, root)}

    @app.post("/api/runs")
    async def submit(request: Request) -> dict[str, int]:
        return {"id": manager.registry.add(await _checked_request(request, root))}

    @app.get("/api/runs")
    async def runs() -> list[dict[str, Any]]:
        return [
            {**run_summary(run), "best_accuracy": best_accuracy(manager.run_folder(run["id"]))}
            for run in manager.registry.all()
        ]

    @app.get("/api/runs/{run_id}")
    async def run(run_id: int) -> dict[str, Any]:
        found = _existing_run(manager, run_id)
        return {**run_summary(found), **run_details(root, manager.run_folder(run_id))}

    @app.post("/api/runs/{run_id}/stop")
    async def stop(run_id: int) -> dict[str, Any]:
        _existing_run(manager, run_id)
        if not manager.stop(run_id):
            raise BadRequest(409, f"run {run_id} is neither running nor queued.")
        return {"id": run_id, "stopping": True}

    @app.post("/api/runs/{run_id}/resume")
    async def resume(run_id: int) -> dict[str, Any]:
        found = _existing_run(manager, run_id)
        if found["status"] not in RESUMABLE:
            raise BadRequest(
                409, f"run {run_id} is {found['status']}; only a stopped, interrupted or failed run resumes."
            )
        manager.registry.set_status(run_id, "queued")
        return {"id": run_id, "status": "queued"}

    @app.get("/api/runs/{run_id}/events")
    async def events(run_id: int, request: Request) -> StreamingResponse:
        _existing_run(manager, run_id)
        stream = follow(manager.run_folder(run_id), request, lambda: _summary_once_ended(manager, run_id))
        return StreamingResponse(stream, media_type="text/event-stream")


def _run_output_routes(app: "FastAPI", manager: Manager) -> None:
    """A run's outputs: its files, downloads, each module's summary, its confident errors, trying an image."""

    @app.get("/api/runs/{run_id}/files/{name:path}")
    async def run_file(run_id: int, name: str) -> FileResponse:
        _existing_run(manager, run_id)
        return FileResponse(output_file(manager.run_folder(run_id), name))

    @app.get("/api/runs/{run_id}/download/{what}")
    async def download(run_id: int, what: str) -> FileResponse:
        _existing_run(manager, run_id)
        path = await asyncio.to_thread(download_file, manager.run_folder(run_id), what)
        return FileResponse(path, filename=f"run-{run_id}-{path.name}")

    @app.get("/api/runs/{run_id}/outputs/{name}")
    async def output(run_id: int, name: str) -> dict[str, Any]:
        _existing_run(manager, run_id)
        return await asyncio.to_thread(output_summary, manager.run_folder(run_id), name)

    @app.get("/api/runs/{run_id}/errors")
    async def errors(run_id: int) -> list[dict[str, Any]]:
        _existing_run(manager, run_id)
        return await asyncio.to_thread(confident_errors, manager.run_folder(run_id))

    @app.post("/api/runs/{run_id}/predict")
    async def predict(run_id: int, request: Request) -> dict[str, Any]:
        _existing_run(manager, run_id)
        model_dir = manager.run_folder(run_id) / "model"
        if not (model_dir / "imgtrain-model.json").is_file():
            raise BadRequest(409, f"run {run_id} has no trained model yet.")
        data = await _bounded_body(request, MAX_UPLOAD_BYTES)
        return await asyncio.to_thread(top_classes, model_dir, data)


def _studio_routes(app: "FastAPI", manager: Manager) -> None:
    """The studio itself: health, the parameters' defaults, the file browser, the page."""

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        runs = manager.registry.all()
        return {
            "status": "ok",
            "root": str(manager.root),
            "running": manager.running_id,
            "queued": sum(r["status"] == "queued" for r in runs),
        }

    @app.get("/api/parameters")
    async def parameters() -> dict[str, Any]:
        return default_parameters()

    @app.get("/api/files")
    async def files(path: str = ".") -> dict[str, Any]:
        return list_sources(manager.root, path)

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)


async def _bounded_body(request: "Request", limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The request's body, or BadRequest 413 as soon as it is over `limit` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, f"the request is over {limit:,} bytes.")
    return body


async def _checked_request(request: "Request", root: Path) -> dict[str, Any]:
    """A run request's JSON body, checked (check_request); BadRequest when it is not JSON or not valid."""
    try:
        body = json.loads(await _bounded_body(request))
    except ValueError:
        raise BadRequest(400, "the request body is not JSON.") from None
    return check_request(root, body)


def _existing_run(manager: Manager, run_id: int) -> dict[str, Any]:
    """The registry's run `run_id`, or BadRequest 404."""
    found = manager.registry.get(run_id)
    if found is None:
        raise BadRequest(404, f"there is no run {run_id}.")
    return found


def _summary_once_ended(manager: Manager, run_id: int) -> dict[str, Any] | None:
    """The run's summary once it has ended (its events' last message); None while it is queued or running."""
    run = manager.registry.get(run_id)
    assert run is not None  # the route found it, and the registry deletes no run
    return None if run["status"] in ACTIVE else run_summary(run)


def _require_serve_extra() -> None:
    if not HAS_SERVE_EXTRA:
        raise MissingDependencyError("The studio needs FastAPI and uvicorn.", hint="pip install 'imgtrain[serve]'.")


def studio(root: str | Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Serve the studio until Ctrl-C; prints the URL to open (with its token), as Jupyter does."""
    _require_serve_extra()
    root = Path(root)
    if not root.is_dir():
        raise ParameterError(f"--root {root} is not a folder.", hint="give the folder that holds your images.")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "the studio listens on %s: anyone who can reach this machine and has the token can run "
            "jobs and read every file under %s",
            host,
            root,
        )
    token = token or secrets.token_urlsafe(16)
    app = create_app(root, token)
    print(f"imgtrain studio: http://{host}:{port}/?token={token}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
