"""imgtrain studio's server: the page (static files) and the API (docs/studio-api.md), behind a token. Each router
calls the module that owns its concern: supervisor (the worker running one run at a time), graph and runner (the
run's checks), results, downloads, events, browse, predict.

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations.)
"""

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, ParameterError
from ..serving import web
from ..serving.web import HostCheck, run_server
from .access import COOKIE, NO_TOKEN_PAGE, TOKEN_FILE, BodyLimit, is_valid, studio_token, token_of
from .browse import list_sources
from .downloads import download_file, output_file
from .events import StreamCount, follow
from .graph import TRAINING_MODULES, modules, run_graph
from .parameters import default_parameters
from .pipeline import MODEL_META
from .predict import top_classes
from .registry import STATE_DIR, Registry
from .results import node_output, run_details, run_layout, run_summary
from .runner import BadRequest, Refused, check_request, inside_root, keep_under_root
from .supervisor import ACTIVE, RESUMABLE, Manager

try:  # the [serve] extra: without it, create_app() and studio() say what to install
    import uvicorn  # noqa: F401 - only whether it is installed
    from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict
except ImportError:
    HAS_SERVE_EXTRA = False
else:
    HAS_SERVE_EXTRA = True

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: How often the server records a worker's end and starts the next queued run.
TICK_SECONDS = 0.3

if HAS_SERVE_EXTRA:

    class Node(BaseModel):
        """One box of the graph: its module, its parameters (defaults for the rest), its inputs ("node.port")."""

        model_config = ConfigDict(extra="forbid")
        id: str
        module: str
        params: dict[str, Any] = {}
        inputs: dict[str, str] = {}

    class RunRequest(BaseModel):
        """A run: its graph (nodes, and where the page drew them), or the studio's first, linear request."""

        model_config = ConfigDict(extra="forbid")
        nodes: list[Node] | None = None
        positions: dict[str, list[float]] | None = None
        train: str | None = None
        valid: str | None = None
        split_fraction: float | None = None
        model: dict[str, Any] | None = None
        transform: dict[str, Any] | None = None
        train_params: dict[str, Any] | None = None


def create_app(root: str | Path, token: str | None = None) -> "FastAPI":
    """The studio as an ASGI app over `root` (every path it reads or writes lies under it)."""
    _require_serve_extra()
    root = Path(root).resolve()
    token = studio_token(root, token)
    manager = Manager(root, Registry.open(root))

    async def supervise() -> None:
        while True:
            await asyncio.to_thread(manager.tick)
            await asyncio.sleep(TICK_SECONDS)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(supervise())
        yield
        task.cancel()
        await asyncio.to_thread(manager.shutdown)

    def require_token(request: Request) -> None:
        if not is_valid(token_of(request.headers, request.cookies, request.query_params), token):
            raise HTTPException(
                401, "a token is needed: open the URL the studio printed, or send 'Authorization: Bearer TOKEN'"
            )

    app = FastAPI(title="imgtrain studio", lifespan=lifespan)
    app.add_middleware(BodyLimit)
    _error_answers(app)
    guarded = [Depends(require_token)]
    app.include_router(_run_routes(manager), dependencies=guarded)
    app.include_router(_output_routes(manager), dependencies=guarded)
    app.include_router(_studio_routes(manager), dependencies=guarded)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/", include_in_schema=False, response_model=None)
    async def page(request: Request) -> HTMLResponse | RedirectResponse | FileResponse:
        if is_valid(request.query_params.get("token", ""), token):  # the printed URL: remember it, drop it from view
            answer = RedirectResponse("/", status_code=303)
            answer.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=365 * 86400)
            return answer
        if not is_valid(request.cookies.get(COOKIE, ""), token):
            return HTMLResponse(NO_TOKEN_PAGE.format(path=root / STATE_DIR / TOKEN_FILE), status_code=401)
        return FileResponse(STATIC / "index.html")

    return app


def _error_answers(app: "FastAPI") -> None:
    """Every refusal as {"error": message} (a refused run adds its problems, each at its node and field)."""

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        body: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, Refused):
            body["problems"] = [p.as_json() for p in exc.problems]
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        return JSONResponse({"error": f"the request is not valid: {where}."}, status_code=400)


def _run_routes(manager: Manager) -> "APIRouter":
    """Runs: check a request, submit, list, read, stop, resume, follow a run's events."""
    router, root = APIRouter(prefix="/api", tags=["runs"]), manager.root
    streams = StreamCount()

    @router.post("/check")
    async def check(request: RunRequest) -> dict[str, Any]:
        graph, facts = await asyncio.to_thread(check_request, root, request.model_dump(exclude_unset=True))
        return {"ok": True, "request": graph, "facts": facts}

    @router.post("/runs")
    async def submit(request: RunRequest) -> dict[str, int]:
        graph, _ = await asyncio.to_thread(check_request, root, request.model_dump(exclude_unset=True))
        return {"id": manager.registry.add(graph)}

    @router.get("/runs")
    async def runs() -> list[dict[str, Any]]:
        return await asyncio.to_thread(lambda: [run_summary(root, run) for run in manager.registry.all()])

    @router.get("/runs/{run_id}")
    async def run(run_id: int) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: run_details(root, _existing_run(manager, run_id)))

    @router.post("/runs/{run_id}/stop")
    async def stop(run_id: int) -> dict[str, Any]:
        _existing_run(manager, run_id)
        if not manager.stop(run_id):
            raise BadRequest(409, f"run {run_id} is neither running nor queued.")
        return {"id": run_id, "stopping": True}

    @router.post("/runs/{run_id}/resume")
    async def resume(run_id: int) -> dict[str, Any]:
        found = _existing_run(manager, run_id)
        if found["status"] not in RESUMABLE:
            raise BadRequest(
                409, f"run {run_id} is {found['status']}; only a stopped, interrupted or failed run resumes."
            )
        manager.registry.set_status(run_id, "queued")
        return {"id": run_id, "status": "queued"}

    @router.get("/runs/{run_id}/events")
    async def events(run_id: int, request: Request) -> StreamingResponse:
        await asyncio.to_thread(_existing_run, manager, run_id)
        release = streams.take(run_id, request.client.host if request.client else "")  # 429 past a bound
        stream = follow(manager.run_folder(run_id), request, lambda: _summary_once_ended(manager, run_id), release)
        weakref.finalize(stream, release)  # a stream never started (its client gone at once) is uncounted too
        return StreamingResponse(stream, media_type="text/event-stream")

    return router


def _output_routes(manager: Manager) -> "APIRouter":
    """A run's outputs: each node's panel, its files, downloads, trying an image on a trained model."""
    router, root = APIRouter(prefix="/api", tags=["outputs"]), manager.root

    @router.get("/runs/{run_id}/nodes/{node}")
    async def node(run_id: int, node: str) -> dict[str, Any]:
        return await asyncio.to_thread(node_output, root, _existing_run(manager, run_id), node)

    @router.get("/runs/{run_id}/files/{name:path}")
    async def run_file(run_id: int, name: str) -> FileResponse:
        _existing_run(manager, run_id)
        return FileResponse(output_file(manager.run_folder(run_id), name))

    @router.get("/runs/{run_id}/download/{what}")
    async def download(run_id: int, what: str, node: str | None = None) -> FileResponse:
        model, scores = _trained_outputs(manager, run_id, node)
        path = await asyncio.to_thread(download_file, model, scores, what)
        return FileResponse(path, filename=f"run-{run_id}-{path.name}")

    @router.post("/runs/{run_id}/predict")
    async def predict(run_id: int, request: Request, node: str | None = None) -> dict[str, Any]:
        model, _ = _trained_outputs(manager, run_id, node)
        data = await request.body()
        return await asyncio.to_thread(top_classes, model, data)

    @router.get("/image")
    async def image(path: str) -> FileResponse:
        found = inside_root(root, path, "path")
        if not found.is_file():
            raise BadRequest(404, f"{path!r} is not a file.")
        return FileResponse(found)

    return router


def _studio_routes(manager: Manager) -> "APIRouter":
    """The studio itself: health, the modules and their parameters, the file browser."""
    router = APIRouter(prefix="/api", tags=["studio"])

    @router.get("/health")
    async def health() -> dict[str, Any]:
        runs = await asyncio.to_thread(manager.registry.all)
        return {
            "status": "ok",
            "root": str(manager.root),
            "running": manager.running_id,
            "queued": sum(r["status"] == "queued" for r in runs),
        }

    @router.get("/modules")
    async def module_list() -> dict[str, Any]:
        return await asyncio.to_thread(modules)

    @router.get("/parameters")
    async def parameters() -> dict[str, Any]:
        return await asyncio.to_thread(default_parameters)

    @router.get("/files")
    async def files(path: str = ".") -> dict[str, Any]:
        return await asyncio.to_thread(list_sources, manager.root, path)

    return router


def _trained_outputs(manager: Manager, run_id: int, node: str | None) -> tuple[Path, Path | None]:
    """The trained model directory of the run's training node `node` (its first one by default), and the scores
    made with it, if any; 409 before the model exists."""
    run = _existing_run(manager, run_id)
    graph = run_graph(run)
    layout = run_layout(manager.root, manager.run_folder(run_id), graph)
    trains = [n for n in layout["order"] if layout["nodes"][n]["module"] in TRAINING_MODULES]
    node = node or (trains[0] if trains else None)
    if node not in trains:
        raise BadRequest(404, f"run {run_id} has no training node {node!r}; it has {', '.join(trains) or 'none'}.")
    model = manager.root / layout["nodes"][node]["outputs"]["model"]
    swept = layout["nodes"][node]["module"] == "sweep"  # its best/ is the best so far until the sweep is done
    if not (model / MODEL_META).is_file() or (swept and layout["nodes"][node]["status"] != "done"):
        raise BadRequest(409, f"run {run_id} has no trained model yet.")
    scored = [
        manager.root / layout["nodes"][n["id"]]["outputs"]["scores"]
        for n in graph["nodes"]
        if n["module"] == "score" and n["inputs"].get("model", "").partition(".")[0] == node
    ]
    return model, next((p for p in scored if p.is_file()), None)


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
    return None if run["status"] in ACTIVE else run_summary(manager.root, run)


def _require_serve_extra() -> None:
    if not HAS_SERVE_EXTRA:
        raise MissingDependencyError("The studio needs FastAPI and uvicorn.", hint="pip install 'imgtrain[serve]'.")


def studio(
    root: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    allowed_hosts: Iterable[str] = (),
) -> None:
    """Serve the studio until Ctrl-C, answering only requests addressed to this machine or `allowed_hosts`; prints
    the URL to open (with its token), as Jupyter does."""
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
    token = studio_token(root.resolve(), token)
    keep_under_root(root.resolve() / STATE_DIR)  # the server's caches, and its workers' (they inherit them)
    app = create_app(root, token)
    print(f"imgtrain studio: http://{host}:{port}/?token={token}", flush=True)
    run_server(HostCheck(app, web.allowed_hosts(host, allowed_hosts)), host, port)
