"""imgtrain studio's server: the API (runs, their live events, files under the root) and the page, behind a token.

One run at a time, in a worker process that calls the library (runner.work); the others wait, queued. The
registry keeps every run across restarts; a run whose server died is shown interrupted, and resumes.
(No `from __future__ import annotations` here: FastAPI reads the routes' annotations, such as Request.)
"""

import asyncio
import json
import logging
import multiprocessing
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .registry import RUNS_DIR, STATE_DIR, Registry
from .runner import EVENTS, RESULT, BadRequest, check_request, inside_root, work

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
RESUMABLE = ("stopped", "interrupted", "failed")
#: Archives and manifests the file browser offers besides folders.
SOURCE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".csv", ".jsonl", ".json", ".ndjson")


#: What the worker processes' server imports once, so that each run's worker starts with them loaded.
WORKER_PRELOAD = ["torch", "torchvision", "imgtrain.studio.runner", "imgtrain.training.loop",
                  "imgtrain.inference.scoring", "imgtrain.inference.evaluation", "imgtrain.inference.explain"]


def worker_context() -> Any:
    """Runs' workers forked from a server that has imported torch and the library once: a run then starts in a
    fraction of a second, not after the 4-5 s of importing torch and torchvision again (measured on 2 cores).
    That server keeps the environment it started with; where there is no forkserver, workers are spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    return context


@dataclass
class Manager:
    """Starts queued runs one at a time in worker processes and records how each ended."""

    root: Path
    registry: Registry
    run_id: int | None = None
    process: Any = None
    alive: Any = None  # the writing end of the running worker's pipe (runner._stop_when_orphaned)
    context: Any = field(default_factory=lambda: worker_context())

    def folder(self, run_id: int) -> Path:
        return self.root / RUNS_DIR / f"run-{run_id}"

    def tick(self) -> None:
        """Record the end of the running worker, then start the next queued run if none runs."""
        if self.process is not None and not self.process.is_alive():
            self._finish()
        if self.process is None:
            run = self.registry.next_queued()
            if run is not None:
                self._start(run)

    def _start(self, run: dict[str, Any]) -> None:
        folder = self.folder(run["id"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RESULT).unlink(missing_ok=True)
        server_alive, self.alive = self.context.Pipe(duplex=False)  # the worker reads; EOF when this process ends
        self.process = self.context.Process(target=work, daemon=False,
                                            args=(str(self.root), str(folder), run["request"], server_alive))
        self.process.start()
        server_alive.close()
        self.run_id = run["id"]
        self.registry.set_status(run["id"], "running")

    def _finish(self) -> None:
        run_id, code = self.run_id, self.process.exitcode
        self.alive.close()
        self.process, self.run_id, self.alive = None, None, None
        try:
            result = json.loads((self.folder(run_id) / RESULT).read_text())
        except (OSError, ValueError):
            result = {"status": "failed", "error": {"name": "WorkerCrashedError", "message":
                      f"the run's worker process ended (exit code {code}) without a result"}}
        self.registry.set_status(run_id, result["status"], result.get("error"))

    def stop(self, run_id: int) -> bool:
        """Ask a run to stop: the worker stops as Ctrl-C stops training (checkpoint written); a queued run is
        taken off the queue. False when the run is neither running nor queued."""
        run = self.registry.get(run_id)
        if run is None or run["status"] not in ACTIVE:
            return False
        if run_id == self.run_id and self.process is not None:
            os.kill(self.process.pid, signal.SIGINT)
        else:
            self.registry.set_status(run_id, "stopped")
        return True

    def shutdown(self, timeout: float = 60) -> None:
        if self.process is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGINT)
            self.process.join(timeout)
            self._finish()


def create_app(root: str | Path, token: str | None = None):
    """The studio as an ASGI app over `root` (every path it reads or writes lies under it)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    root = Path(root).resolve()
    token = token or secrets.token_urlsafe(16)
    manager = Manager(root, Registry.open(root))

    async def keep_running() -> None:
        while True:
            await asyncio.to_thread(manager.tick)
            await asyncio.sleep(0.3)

    async def lifespan(app):
        task = asyncio.create_task(keep_running())
        yield
        task.cancel()
        await asyncio.to_thread(manager.shutdown)

    app = FastAPI(title="imgtrain studio", lifespan=lifespan)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": "a token is needed: open the URL the studio printed, or send "
                                          "'Authorization: Bearer TOKEN'"}, status_code=401)
        return await call_next(request)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    _run_routes(app, manager)
    _output_routes(app, manager)
    _other_routes(app, manager)
    return app


def _run_routes(app, manager: Manager) -> None:
    """Submit, list, read, stop, resume and follow runs; try an image on a run's model."""
    from fastapi import Request
    from fastapi.responses import StreamingResponse

    root = manager.root

    @app.post("/api/runs")
    async def submit(request: Request) -> dict[str, int]:
        return {"id": manager.registry.add(await _checked_request(request, root))}

    @app.get("/api/runs")
    async def runs() -> list[dict[str, Any]]:
        return [{**_summary(run), "best_accuracy": _best_accuracy(manager.folder(run["id"]))}
                for run in manager.registry.all()]

    @app.get("/api/runs/{run_id}")
    async def run(run_id: int) -> dict[str, Any]:
        found = _run_or_404(manager, run_id)
        return {**_summary(found), **_details(root, manager.folder(run_id))}

    @app.post("/api/runs/{run_id}/stop")
    async def stop(run_id: int) -> dict[str, Any]:
        _run_or_404(manager, run_id)
        if not manager.stop(run_id):
            raise BadRequest(409, f"run {run_id} is neither running nor queued.")
        return {"id": run_id, "stopping": True}

    @app.post("/api/runs/{run_id}/resume")
    async def resume(run_id: int) -> dict[str, Any]:
        found = _run_or_404(manager, run_id)
        if found["status"] not in RESUMABLE:
            raise BadRequest(409, f"run {run_id} is {found['status']}; only a stopped, interrupted or failed run "
                                  "resumes.")
        manager.registry.set_status(run_id, "queued")
        return {"id": run_id, "status": "queued"}

    @app.get("/api/runs/{run_id}/events")
    async def events(run_id: int, request: Request) -> StreamingResponse:
        _run_or_404(manager, run_id)
        return StreamingResponse(_follow(manager, run_id, request), media_type="text/event-stream")


def _output_routes(app, manager: Manager) -> None:
    """A run's outputs: its files, downloads, each module's summary, trying an image; checking a request."""
    from fastapi import Request
    from fastapi.responses import FileResponse

    root = manager.root

    @app.get("/api/runs/{run_id}/files/{name:path}")
    async def run_file(run_id: int, name: str) -> FileResponse:
        _run_or_404(manager, run_id)
        return FileResponse(_run_file(manager.folder(run_id), name))

    @app.get("/api/runs/{run_id}/download/{what}")
    async def download(run_id: int, what: str) -> FileResponse:
        _run_or_404(manager, run_id)
        path = await asyncio.to_thread(_download, manager.folder(run_id), what)
        return FileResponse(path, filename=f"run-{run_id}-{path.name}")

    @app.get("/api/runs/{run_id}/outputs/{name}")
    async def output(run_id: int, name: str) -> dict[str, Any]:
        _run_or_404(manager, run_id)
        return await asyncio.to_thread(_output_summary, manager.folder(run_id), name)

    @app.get("/api/runs/{run_id}/errors")
    async def errors(run_id: int) -> list[dict[str, Any]]:
        _run_or_404(manager, run_id)
        return await asyncio.to_thread(_confident_errors, manager.folder(run_id))

    @app.post("/api/check")
    async def check(request: Request) -> dict[str, Any]:
        return {"ok": True, "request": await _checked_request(request, root)}

    @app.post("/api/runs/{run_id}/predict")
    async def predict(run_id: int, request: Request) -> dict[str, Any]:
        _run_or_404(manager, run_id)
        model_dir = manager.folder(run_id) / "model"
        if not (model_dir / "imgtrain-model.json").is_file():
            raise BadRequest(409, f"run {run_id} has no trained model yet.")
        data = await _bounded_body(request, MAX_UPLOAD_BYTES)
        return await asyncio.to_thread(_predict, model_dir, data)


def _other_routes(app, manager: Manager) -> None:
    """Health, the parameters' defaults, the file browser, the page."""
    from fastapi.responses import HTMLResponse

    from .page import PAGE

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        runs = manager.registry.all()
        return {"status": "ok", "root": str(manager.root), "running": manager.run_id,
                "queued": sum(r["status"] == "queued" for r in runs)}

    @app.get("/api/parameters")
    async def parameters() -> dict[str, Any]:
        return default_parameters()

    @app.get("/api/files")
    async def files(path: str = ".") -> dict[str, Any]:
        return _listing(manager.root, path)

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)


MAX_REQUEST_BYTES = 1 << 20
MAX_UPLOAD_BYTES = 20 << 20


async def _bounded_body(request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, f"the request is over {limit:,} bytes.")
    return body


def _run_file(folder: Path, name: str) -> Path:
    """A file of a run's outputs (plots, metrics, scores); nothing outside the run's folder."""
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise BadRequest(404, f"the run has no file {name!r}.")
    return path


DOWNLOADS = ("model", "onnx", "scores")


def _download(folder: Path, what: str) -> Path:
    """The model directory as a zip, its ONNX export, or the scores: made once, on the first request."""
    from ..files import atomic_file

    if what not in DOWNLOADS:
        raise BadRequest(404, f"downloads are {', '.join(DOWNLOADS)}; not {what!r}.")
    model = folder / "model"
    if not (model / "imgtrain-model.json").is_file():
        raise BadRequest(409, "the run has no trained model yet.")
    if what == "scores":
        return _run_file(folder, "scores.csv")
    if what == "onnx":
        from ..models.export import export_model

        if not (folder / "export" / "model.onnx").is_file():
            export_model(model, folder / "export", "onnx", overwrite=True)
        return folder / "export" / "model.onnx"
    zipped = folder / "downloads" / "model.zip"
    if not zipped.is_file():
        import zipfile

        with atomic_file(zipped) as tmp, zipfile.ZipFile(tmp, "w") as archive:
            for path in sorted(model.rglob("*")):
                if path.is_file() and "checkpoint" not in path.relative_to(model).parts:
                    archive.write(path, Path("model") / path.relative_to(model))
    return zipped


IMAGE_OUTPUTS = ("train-images", "valid-images", "train", "valid")


def _output_summary(folder: Path, name: str) -> dict[str, Any]:
    """What one module wrote, for its box: an image directory's counts and a few images, the model's card, the
    first scores, the evaluation's metrics."""
    from ..data.image_directory import ImageDirectory
    from ..models.model_directory import open_model_directory

    path = folder / name
    if name in IMAGE_OUTPUTS and path.is_dir():
        directory = ImageDirectory.open(path)
        samples = [str((path / r.path).relative_to(folder)) for r in directory.records[:8]]
        return {"kind": "image directory", "images": len(directory), "classes": directory.class_counts(),
                "samples": samples}
    if name == "model" and (path / "imgtrain-model.json").is_file():
        trained = open_model_directory(path)
        return {"kind": "model", "classes": list(trained.classes), "training": trained.meta.get("training", {})}
    if name == "scores.csv" and path.is_file():
        with open(path, encoding="utf-8") as f:
            return {"kind": "scores", "head": [next(f, "").rstrip("\n") for _ in range(11)]}
    if name == "evaluation" and (path / "metrics.json").is_file():
        return {"kind": "evaluation", "metrics": json.loads((path / "metrics.json").read_text())}
    raise BadRequest(404, f"the run has no output {name!r} (yet).")


def _confident_errors(folder: Path, count: int = 16) -> list[dict[str, Any]]:
    """The most confidently wrong predictions of a run's scores, each with its image's path in the run's folder
    (None for an image outside it: a validation directory given as it was)."""
    import csv

    from ..inference.scoring import PROBABILITY_PREFIX, SCORED_LABELS

    scores = folder / "scores.csv"
    if not scores.is_file():
        raise BadRequest(409, "the run has no scores yet.")
    wrong = []
    with open(scores, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("label") and row.get(SCORED_LABELS) and row["label"] != row[SCORED_LABELS]:
                confidence = float(row[PROBABILITY_PREFIX + row[SCORED_LABELS]])
                wrong.append((confidence, row))
    wrong.sort(key=lambda pair: -pair[0])
    valid = folder / "valid" if (folder / "valid").is_dir() else folder / "valid-images"
    return [{"path": str((valid / row["path"]).relative_to(folder)) if (valid / row["path"]).is_file() else None,
             "true": row["label"], "predicted": row[SCORED_LABELS], "probability": confidence}
            for confidence, row in wrong[:count]]


async def _checked_request(request, root: Path) -> dict[str, Any]:
    """A run request's JSON body, checked (check_request); BadRequest when it is not JSON or not valid."""
    try:
        body = json.loads(await _bounded_body(request))
    except ValueError:
        raise BadRequest(400, "the request body is not JSON.") from None
    return check_request(root, body)


def _predict(model_dir: Path, data: bytes) -> dict[str, Any]:
    """The top classes of one uploaded image under a run's trained model ("try it")."""
    from ..data.imaging import BadImage
    from ..inference.scoring import load_model

    model = load_model(model_dir)
    try:
        probabilities = model.probabilities(model.model_input.from_bytes(data)[None])[0].tolist()
    except BadImage as exc:
        raise BadRequest(400, f"the image cannot be used: {exc}") from None
    ranked = sorted(zip(model.classes, probabilities), key=lambda pair: -pair[1])
    return {"label": ranked[0][0], "top": [{"class": c, "probability": p} for c, p in ranked[:5]]}


def _run_or_404(manager: Manager, run_id: int) -> dict[str, Any]:
    found = manager.registry.get(run_id)
    if found is None:
        raise BadRequest(404, f"there is no run {run_id}.")
    return found


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    return {"id": run["id"], "created": run["created"], "status": run["status"], "request": run["request"],
            "error": run["error"], "folder": f"{RUNS_DIR}/run-{run['id']}"}


def _details(root: Path, folder: Path) -> dict[str, Any]:
    """What a run has produced so far: its epoch rows, the evaluation's metrics, the output paths that exist."""
    history = [e for e in _read_events(folder) if e.get("kind") == "epoch"]
    metrics_file = folder / "evaluation" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    outputs = {name: str((folder / name).relative_to(root)) for name in
               ("train-images", "train", "valid", "untrained", "model", "scores.csv", "evaluation")
               if (folder / name).exists()}
    return {"history": history, "metrics": metrics, "outputs": outputs}


def _best_accuracy(folder: Path) -> float | None:
    accuracies = [e["val_top1"] for e in _read_events(folder) if e.get("kind") == "epoch" and
                  e.get("val_top1") is not None]
    return max(accuracies, default=None)


def _read_events(folder: Path) -> list[dict[str, Any]]:
    try:
        lines = (folder / EVENTS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return events


async def _follow(manager: Manager, run_id: int, request):
    """Server-sent events: every event of the run from the start, then new ones as they come, then its end."""
    path, offset = manager.folder(run_id) / EVENTS, 0
    while not await request.is_disconnected():
        try:
            with open(path, encoding="utf-8") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            chunk = ""
        complete = chunk[:chunk.rfind("\n") + 1]
        offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            yield f"data: {line}\n\n"
        run = manager.registry.get(run_id)
        if run["status"] not in ACTIVE and not complete:
            yield f"event: end\ndata: {json.dumps(_summary(run))}\n\n"
            return
        await asyncio.sleep(0.3)


def default_parameters() -> dict[str, Any]:
    """Each module's parameters and defaults, from the library's declarations (params.param), as the CLI's are:
    `parameters` has each one's type, range, choices and help; `ranges` and `choices` are the page's shortcuts."""
    from ..config import CATALOG_FAMILY, FAMILIES, STUDIO_MODEL, TrainConfig, TransformSpec
    from ..models.catalog import catalog_names
    from ..params import describe

    declared = {"train_params": describe(TrainConfig, studio_only=True), "transform": describe(TransformSpec)}
    everything = {name: d for module in declared.values() for name, d in module.items()}
    return {**{module: {name: d["default"] for name, d in fields.items()} for module, fields in declared.items()},
            "model": dict(STUDIO_MODEL), "parameters": declared,
            "ranges": {name: [d["low"], d["high"]] for name, d in everything.items()
                       if d["type"] == "int" or (d["type"] == "float" and d["high"] is not None and not d["above"])},
            "choices": {name: d["choices"] for name, d in everything.items() if d["choices"]},
            "models": {**{family: list(names) for family, names in FAMILIES.items()}, CATALOG_FAMILY: catalog_names()}}


def _listing(root: Path, relative: str, depth: int = 3, limit: int = 500) -> dict[str, Any]:
    """The sources under a folder of the root, `depth` levels down: image directories, datasets (a folder whose
    sub-folders hold images: class folders), folders of images, archives and manifests. Links out of the root
    are not offered."""
    folder = inside_root(root, relative, "path") if relative not in ("", ".") else root
    if not folder.is_dir():
        raise BadRequest(400, f"{relative!r} is not a folder.")
    entries: list[dict[str, str]] = []
    _walk(root, folder, depth, entries, limit)
    return {"path": str(folder.relative_to(root)), "entries": entries}


def _walk(root: Path, folder: Path, depth: int, entries: list[dict[str, str]], limit: int) -> None:
    from ..data.imaging import is_image_name

    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if len(entries) >= limit or entry.name.startswith(".") or entry.name == STATE_DIR:
            continue
        if not entry.resolve().is_relative_to(root):
            continue
        path = str(entry.relative_to(root))
        if entry.is_file():
            if entry.name.lower().endswith(SOURCE_SUFFIXES):
                entries.append({"name": entry.name, "path": path, "kind": "archive or manifest"})
        elif (entry / "imgtrain-images.json").is_file():
            entries.append({"name": entry.name, "path": path, "kind": "image directory"})
        elif _holds(entry, lambda c: c.is_dir() and _holds(c, lambda f: is_image_name(f.name))):
            entries.append({"name": entry.name, "path": path, "kind": "class folders"})
        elif _holds(entry, lambda f: is_image_name(f.name)):
            entries.append({"name": entry.name, "path": path, "kind": "images, unlabeled"})
        elif depth > 1:
            _walk(root, entry, depth - 1, entries, limit)


def _holds(folder: Path, test, look: int = 50) -> bool:
    """Whether one of the first `look` entries of `folder` passes `test` (a bounded look, for huge folders)."""
    try:
        for n, child in enumerate(folder.iterdir()):
            if n >= look:
                return False
            if test(child):
                return True
    except OSError:
        return False
    return False


def studio(root: str | Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Serve the studio until Ctrl-C; prints the URL to open (with its token), as Jupyter does."""
    try:
        import uvicorn
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("The studio needs uvicorn.", hint="pip install 'imgtrain[serve]'.") from None
    root = Path(root)
    if not root.is_dir():
        from ..errors import ParameterError

        raise ParameterError(f"--root {root} is not a folder.", hint="give the folder that holds your images.")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the studio listens on %s: anyone who can reach this machine and has the token can run "
                    "jobs and read every file under %s", host, root)
    token = token or secrets.token_urlsafe(16)
    app = create_app(root, token)
    print(f"imgtrain studio: http://{host}:{port}/?token={token}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
