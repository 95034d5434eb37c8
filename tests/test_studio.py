"""imgtrain studio's API (docs/studio-api.md): a run is a graph run by a worker process, node by node; checks before
work at their node and field; stop and resume; refusals; restarts; what each node's panel is given."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import make_class_folder
from imgtrain import TrainConfig, TransformSpec
from imgtrain.studio.app import create_app
from imgtrain.studio.graph import default_graph
from imgtrain.studio.registry import Registry

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SMALL = {
    "transform": {"resize": False, "center_crop": False, "random_horizontal_flip": False},
    "model": {"family": "resnet", "model_name": "resnet18", "pretrained": False},
    "model_params": {"model_name": "resnet18", "pretrained": False},
}
#: Epochs of the runs stopped after their first epoch: about 0.4 s each here, seconds to stop them before the end.
LONG_RUN = 10


@pytest.fixture
def root(tmp_path):
    make_class_folder(tmp_path / "root" / "photos", {"cat": 12, "dog": 12}, size=(32, 32))
    return tmp_path / "root"


def wait_for(client: TestClient, run_id: int, statuses: tuple[str, ...], timeout: float = 600) -> dict:
    # a hang guard: 19 epochs after a resume took 62 s, and 91 s and 136 s on a loaded machine (measured)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}", headers=AUTH).json()
        if run["status"] in statuses:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} is still {run['status']} after {timeout} s")


def graph(source: str = "photos", train: dict | None = None, **params: dict) -> dict:
    """The designer's pipeline on `source` with a small network and no resize (seconds per epoch here)."""
    built = default_graph(source)
    nodes = {n["id"]: n for n in built["nodes"]}
    nodes["resnet"]["params"] = SMALL["model_params"]
    nodes["transform"]["params"] = SMALL["transform"]
    nodes["train"]["params"] = train or {"epochs": 1, "batch_size": 6}
    for node_id, values in params.items():
        nodes[node_id]["params"] = {**nodes[node_id].get("params", {}), **values}
    return built


def compared(source: str = "photos") -> dict:
    """Two networks trained on the same split and evaluated side by side (the designer's common comparison)."""
    built = graph(source)
    built["nodes"] += [
        {"id": "resnet-2", "module": "resnet", "params": {"model_name": "resnet34", "pretrained": False}},
        {
            "id": "train-2",
            "module": "train",
            "params": {"epochs": 1, "batch_size": 6, "learning_rate": 0.01},
            "inputs": {"model": "resnet-2", "train": "split.train", "valid": "split.valid", "transform": "transform"},
        },
        {"id": "score-2", "module": "score", "inputs": {"model": "train-2", "images": "split.valid"}},
        {"id": "evaluate-2", "module": "evaluate", "inputs": {"scores": "score-2", "model": "train-2"}},
    ]
    return built


def test_a_run_goes_through_its_graph_node_by_node_and_each_node_shows_its_output(root):
    with TestClient(create_app(root, TOKEN)) as client:
        assert client.get("/api/health", headers=AUTH).json()["status"] == "ok"
        run_id = client.post("/api/runs", json=graph(train={"epochs": 2, "batch_size": 6}), headers=AUTH).json()["id"]
        run = wait_for(client, run_id, ("finished", "failed"))
        assert run["status"] == "finished", run["error"]
        layout = run["layout"]
        assert layout["order"] == ["convert", "split", "transform", "resnet", "train", "score", "evaluate"]
        assert {n["status"] for n in layout["nodes"].values()} == {"done"}
        assert all(n["started"] <= n["ended"] for n in layout["nodes"].values())
        assert [row["epoch"] for row in run["history"]["train"]] == [1, 2]
        assert run["batches"]["train"] and all(b["node"] == "train" for b in run["batches"]["train"])
        assert run["summary"]["train"] | {"best_accuracy": None} == {
            "model": "resnet18",
            "pretrained": False,
            "epochs": 2,
            "lr": 0.001,
            "batch_size": 6,
            "best_accuracy": None,
            "epochs_done": 2,
        }
        assert run["started"] <= run["ended"]
        stream = client.get(f"/api/runs/{run_id}/events", headers=AUTH).text
        events = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith('data: {"time')]
        steps = [(e["node"], e["status"]) for e in events if e["kind"] == "step"]
        assert steps[:2] == [("convert", "running"), ("convert", "done")] and steps[-1] == ("evaluate", "done")
        assert {e["node"] for e in events if e["kind"] == "epoch"} == {"train"} and "event: end" in stream
        counted = {(e["node"], e["total"], e["unit"]) for e in events if e["kind"] == "progress" and "total" in e}
        assert ("convert", 24, "img") in counted  # feedback before training starts (3 images score in one batch)
        panels = {n: client.get(f"/api/runs/{run_id}/nodes/{n}", headers=AUTH).json() for n in layout["order"]}
        assert panels["convert"]["parts"]["images"]["classes"] == {"cat": 12, "dog": 12}
        split = panels["split"]["parts"]
        assert (split["train"]["images"], split["valid"]["images"]) == (21, 3)
        sample = split["train"]["samples"][0]["url"]
        assert client.get(sample, headers=AUTH).content[:4] == b"\x89PNG"
        assert {s["label"] for s in split["train"]["samples"]} == {"cat", "dog"}  # every class shows
        assert panels["transform"]["steps"]["resize"] is False
        assert dict(map(tuple, panels["resnet"]["card"]))["pretrained"] == "no"
        card = dict(map(tuple, panels["train"]["card"]))
        assert (card["network"], card["epochs"]) == ("resnet18", 2) and panels["train"]["classes"] == ["cat", "dog"]
        assert panels["score"]["columns"][:4] == ["id", "path", "source", "label"] and panels["score"]["total"] == 3
        evaluation = panels["evaluate"]
        assert set(evaluation) >= {"metrics", "confusion", "errors", "calibration", "explanations", "per_class"}
        assert 0 <= evaluation["metrics"]["accuracy"] <= 1
        wrong = round((1 - evaluation["metrics"]["accuracy"]) * evaluation["metrics"]["images"])
        assert len(evaluation["errors"]) == wrong and all(e["true"] != e["predicted"] for e in evaluation["errors"])
        assert all(client.get(e["url"], headers=AUTH).status_code == 200 for e in evaluation["errors"])
        for url in evaluation["explanations"][:2]:
            assert client.get(url, headers=AUTH).content[:4] == b"\x89PNG"
        assert client.get(f"/api/runs/{run_id}/nodes/nothing", headers=AUTH).status_code == 404
        assert client.get(f"/api/runs/{run_id}/files/../../photos/cat/img0.png", headers=AUTH).status_code == 404
        assert (
            client.get(f"/api/runs/{run_id}/files/%2e%2e/%2e%2e/photos/cat/img0.png", headers=AUTH).status_code == 404
        )
        assert client.get("/api/image?path=../outside.png", headers=AUTH).status_code in (403, 404)


def test_two_models_from_one_split_are_trained_and_evaluated_side_by_side(root):
    with TestClient(create_app(root, TOKEN)) as client:
        run_id = client.post("/api/runs", json=compared(), headers=AUTH).json()["id"]
        run = wait_for(client, run_id, ("finished", "failed"))
        assert run["status"] == "finished", run["error"]
        assert set(run["history"]) == {"train", "train-2"}
        assert (run["summary"]["train"]["model"], run["summary"]["train-2"]["model"]) == ("resnet18", "resnet34")
        assert run["summary"]["train-2"]["lr"] == 0.01
        for node in ("evaluate", "evaluate-2"):
            assert client.get(f"/api/runs/{run_id}/nodes/{node}", headers=AUTH).json()["kind"] == "evaluation"
        image = (root / "photos" / "cat" / "img0.png").read_bytes()
        for node in ("train", "train-2"):
            top = client.post(f"/api/runs/{run_id}/predict?node={node}", content=image, headers=AUTH).json()["top"]
            assert sorted(t["class"] for t in top) == ["cat", "dog"]
        assert client.post(f"/api/runs/{run_id}/predict?node=score", content=image, headers=AUTH).status_code == 404


def test_downloads_the_model_the_onnx_export_and_the_scores(root):
    with TestClient(create_app(root, TOKEN)) as client:
        run_id = client.post("/api/runs", json=graph(), headers=AUTH).json()["id"]
        assert wait_for(client, run_id, ("finished", "failed"))["status"] == "finished"
        model = client.get(f"/api/runs/{run_id}/download/model", headers=AUTH)
        names = zipfile.ZipFile(io.BytesIO(model.content)).namelist()
        assert "model/imgtrain-model.json" in names and "model/model.safetensors" in names
        assert not any("checkpoint" in name for name in names)
        onnx = client.get(f"/api/runs/{run_id}/download/onnx?node=train", headers=AUTH)
        assert onnx.status_code == 200 and len(onnx.content) > 1_000_000
        scores = client.get(f"/api/runs/{run_id}/download/scores", headers=AUTH)
        assert scores.text.startswith("id,path,source,label,")
        assert client.get(f"/api/runs/{run_id}/download/weights", headers=AUTH).status_code == 404


def test_stop_writes_a_checkpoint_and_resume_finishes_the_run(root):
    with TestClient(create_app(root, TOKEN)) as client:
        request = graph(train={"epochs": LONG_RUN, "batch_size": 4, "patience": LONG_RUN})
        run_id = client.post("/api/runs", json=request, headers=AUTH).json()["id"]
        deadline = time.monotonic() + 180
        while not client.get(f"/api/runs/{run_id}", headers=AUTH).json()["history"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.post(f"/api/runs/{run_id}/stop", headers=AUTH).json()["stopping"]
        run = wait_for(client, run_id, ("stopped", "finished", "failed"))
        assert run["status"] == "stopped", run
        assert (run["error"], run["note"]) == (None, "stopped — Resume continues")  # not an error
        assert run["layout"]["nodes"]["train"]["status"] == "stopped"
        assert run["layout"]["nodes"]["score"]["status"] == "queued"
        stopped_at = len(run["history"]["train"])
        assert (root / run["folder"] / "train" / "checkpoint").is_dir()
        assert client.post(f"/api/runs/{run_id}/stop", headers=AUTH).status_code == 409
        assert client.post(f"/api/runs/{run_id}/resume", headers=AUTH).json()["status"] == "queued"
        run = wait_for(client, run_id, ("finished", "failed", "stopped"))
        assert run["status"] == "finished", run["error"]
        assert [row["epoch"] for row in run["history"]["train"]] == list(range(1, LONG_RUN + 1))
        assert stopped_at < LONG_RUN
        assert client.post(f"/api/runs/{run_id}/resume", headers=AUTH).status_code == 409


def test_a_failed_node_skips_what_reads_it_and_the_other_branch_still_finishes(root):
    request = compared()
    nodes = {n["id"]: n for n in request["nodes"]}
    nodes["train-2"]["params"].update(epochs=2, learning_rate=1e12)  # passes every check, then diverges
    with TestClient(create_app(root, TOKEN)) as client:
        run_id = client.post("/api/runs", json=request, headers=AUTH).json()["id"]
        run = wait_for(client, run_id, ("finished", "failed"))
    statuses = {n: s["status"] for n, s in run["layout"]["nodes"].items()}
    assert run["status"] == "failed" and "train-2" in run["error"]["message"]
    assert run["error"]["name"] == "TrainingDivergedError"  # the library's error, as the CLI would name it
    assert "lower the learning rate" in run["layout"]["nodes"]["train-2"]["error"]
    assert (statuses["train-2"], statuses["score-2"], statuses["evaluate-2"]) == ("failed", "skipped", "skipped")
    assert (statuses["train"], statuses["evaluate"]) == ("done", "done")
    assert run["layout"]["nodes"]["train-2"]["error"]


def test_a_library_error_is_the_runs_failure_not_a_500(root):
    with TestClient(create_app(root, TOKEN)) as client:
        run_id = client.post("/api/runs", json=graph(), headers=AUTH).json()["id"]
        (root / "photos" / "cat" / "img3.png").write_bytes(b"not a png")  # after the checks, before the run
        run = wait_for(client, run_id, ("finished", "failed"))
        if run["layout"]["nodes"]["convert"]["status"] == "done":
            pytest.skip("the run converted the folder before the file was damaged")
        assert run["status"] == "failed"
        assert "img3.png" in run["layout"]["nodes"]["convert"]["error"]
        assert {run["layout"]["nodes"][n]["status"] for n in ("split", "train", "score", "evaluate")} == {"skipped"}
        assert client.get(f"/api/runs/{run_id}/download/model", headers=AUTH).status_code == 409
        assert client.post(f"/api/runs/{run_id}/predict", content=b"x", headers=AUTH).status_code == 409
        assert client.get(f"/api/runs/{run_id}/nodes/train", headers=AUTH).status_code == 409


def problems_of(client: TestClient, request: dict) -> list[tuple]:
    answer = client.post("/api/check", json=request, headers=AUTH)
    assert answer.status_code in (200, 400), answer.text
    return [(p["node"], p["field"], p["message"]) for p in answer.json().get("problems", [])]


def test_checks_before_work_name_the_node_and_field_that_fix_them(root, monkeypatch):
    (root / "broken" / "cat").mkdir(parents=True)
    shutil.copytree(root / "photos" / "dog", root / "broken" / "dog")
    shutil.copy(root / "photos" / "cat" / "img0.png", root / "broken" / "cat" / "good.png")
    (root / "broken" / "cat" / "a.png").write_bytes(b"not a png")
    make_class_folder(root / "birds", {"cat": 3, "dog": 3, "bird": 3}, size=(32, 32))
    with TestClient(create_app(root, TOKEN)) as client:
        answer = client.post("/api/check", json=graph(), headers=AUTH).json()
        assert answer["ok"] and answer["facts"]["convert"]["classes"] == {"cat": 12, "dog": 12}
        [(node, field, message)] = problems_of(client, graph(train={"batch_size": 1000}))
        assert (node, field) == ("train", "batch_size") and "21 training images" in message
        [(node, field, message)] = problems_of(client, graph("broken"))
        assert (node, field) == ("convert", "skip_invalid") and "a.png" in message and "(skip_invalid)" in message
        assert problems_of(client, graph("broken", convert={"skip_invalid": True})) == []
        separate = graph()
        separate["nodes"].insert(1, {"id": "convert-2", "module": "convert", "params": {"source": "birds"}})
        nodes = {n["id"]: n for n in separate["nodes"]}
        nodes["train"]["inputs"]["valid"] = "convert-2"
        [(node, field, message)] = problems_of(client, separate)
        assert (node, field) == ("train", None) and "bird" in message
        monkeypatch.setenv("IMGTRAIN_OFFLINE", "1")
        pretrained = graph(resnet={"model_name": "resnet152", "pretrained": True})
        [(node, field, message)] = problems_of(client, pretrained)
        assert (node, field) == ("resnet", "pretrained") and "untick pretrained" in message
        [(node, field, message)] = problems_of(client, graph(train={"epochs": 0}))
        assert (node, field, message) == ("train", "epochs", "epochs must be an integer >= 1, got 0")


def test_requests_are_refused_with_the_reason(root, tmp_path):
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    with TestClient(create_app(root, TOKEN)) as client:
        assert client.get("/api/health").status_code == 401
        assert client.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(f"/api/health?token={TOKEN}").status_code == 200
        for source, words in [
            ("../outside", "outside"),
            ("link", "outside"),
            (str(root / "photos"), "relative"),
            ("nothing", "does not exist"),
        ]:
            [(node, field, message)] = problems_of(client, graph(source))
            assert (node, field) == ("convert", "source") and words in message, message
        cycle = graph()
        {n["id"]: n for n in cycle["nodes"]}["split"]["inputs"]["images"] = "evaluate"
        cases = [
            (graph(train={"resume": True}), ("train", "resume")),
            (graph(transform={"size": -3}), ("transform", "size")),
            (graph(split={"fraction": 1.5}), ("split", "fraction")),
            (graph(resnet={"model_name": "vgg11"}), ("resnet", "model_name")),
            ({"nodes": [{"id": "Bad Id!", "module": "convert"}]}, (None, None)),
            ({"nodes": [{"id": "x", "module": "vgg"}]}, ("x", None)),
            (cycle, (None, None)),
        ]
        for body, where in cases:
            found = problems_of(client, body)
            assert where in [(node, field) for node, field, _ in found], (body, found)
        wrong_kind = graph()
        {n["id"]: n for n in wrong_kind["nodes"]}["train"]["inputs"]["model"] = "split.train"
        assert any("takes untrained model" in m for _, _, m in problems_of(client, wrong_kind))
        assert client.post("/api/runs", json={"nodes": [], "colour": "red"}, headers=AUTH).status_code == 400
        assert client.post("/api/runs", content=b"{", headers=AUTH).status_code == 400
        assert client.post("/api/runs", content=b"x" * (2 << 20), headers=AUTH).status_code == 413
        assert client.get("/api/runs/99", headers=AUTH).status_code == 404
        assert client.post("/api/runs/99/stop", headers=AUTH).status_code == 404
        assert client.get("/api/files?path=../outside", headers=AUTH).status_code == 403
        names = [e["name"] for e in client.get("/api/files", headers=AUTH).json()["entries"]]
        assert names == ["photos"]  # the link out of the root is not offered
        linear = {"train": "photos", "split_fraction": 0.75, "train_params": {"epochs": 1}, **SMALL}
        linear.pop("model_params")
        checked = client.post("/api/check", json=linear, headers=AUTH).json()["request"]
        assert {n["id"]: n for n in checked["nodes"]}["split"]["params"]["fraction"] == 0.75


def test_the_token_is_remembered_by_a_cookie_and_across_restarts(root):
    with TestClient(create_app(root)) as client:
        token = (root / ".imgtrain-studio" / "token").read_text()
        assert oct((root / ".imgtrain-studio" / "token").stat().st_mode & 0o777) == "0o600"
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 401 and "token" in page.text and "<html" in page.text  # a page, not JSON
        assert client.get("/favicon.ico").status_code == 200
        visit = client.get(f"/?token={token}", follow_redirects=False)
        assert visit.status_code == 303 and visit.headers["location"] == "/"
        assert "httponly" in visit.headers["set-cookie"].lower()
        assert "<canvas" in client.get("/").text or "studio.js" in client.get("/").text  # the cookie suffices now
        assert client.get("/api/health").status_code == 200
    with TestClient(create_app(root)) as client:  # a restart keeps the token: bookmarks work
        assert client.get("/api/health", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_modules_and_their_parameters_come_from_the_library(root):
    with TestClient(create_app(root, TOKEN)) as client:
        answer = client.get("/api/modules", headers=AUTH).json()
        modules = answer["modules"]
        assert answer["palette"] == [
            "convert",
            "split",
            "transform",
            "resnet",
            "densenet",
            "catalog",
            "train",
            "sweep",
            "score",
            "evaluate",
        ]
        assert modules["train"]["title"] == "Train PyTorch Model"
        train = modules["train"]["parameters"]
        assert train["epochs"]["default"] == TrainConfig().epochs == 5 and train["epochs"]["low"] == 1
        assert train["learning_rate"]["default"] == TrainConfig().learning_rate and train["learning_rate"]["help"]
        assert modules["transform"]["parameters"]["size"]["default"] == TransformSpec().size
        assert set(modules["split"]["parameters"]) == {"fraction", "seed", "stratify"}
        assert set(modules["convert"]["parameters"]) == {"source", "skip_invalid"}
        assert "densenet121" in modules["densenet"]["parameters"]["model_name"]["choices"]
        assert "efficientnet_b0" in modules["catalog"]["parameters"]["model_name"]["choices"]
        assert modules["evaluate"]["optional_inputs"] == ["model"]
        help_text = subprocess.run(
            [sys.executable, "-m", "imgtrain", "split", "--help"], capture_output=True, text=True
        ).stdout
        assert " ".join(modules["split"]["parameters"]["fraction"]["help"].split()[:4]) in " ".join(help_text.split())
        assert client.get("/openapi.json", headers=AUTH).json()["components"]["schemas"]["RunRequest"]


def test_the_registry_survives_a_restart_and_a_run_left_running_is_interrupted(root):
    registry = Registry.open(root)
    left = registry.add(
        {
            "train": "photos",
            "valid": None,
            "split_fraction": 0.9,
            "model": SMALL["model"],
            "transform": SMALL["transform"],
            "train_params": {"epochs": 1, "batch_size": 4},
        }
    )
    registry.set_status(left, "running")  # the server died while it ran
    with TestClient(create_app(root, TOKEN)) as client:
        run = client.get(f"/api/runs/{left}", headers=AUTH).json()
        assert run["status"] == "interrupted"
        client.post(f"/api/runs/{left}/resume", headers=AUTH)
        assert wait_for(client, left, ("finished", "failed"))["status"] == "finished"
    with TestClient(create_app(root, TOKEN)) as client:
        assert [r["status"] for r in client.get("/api/runs", headers=AUTH).json()] == ["finished"]


def test_the_page_and_its_defaults_come_from_the_library(root):
    with TestClient(create_app(root, TOKEN)) as client:
        assert "imgtrain studio" in client.get(f"/?token={TOKEN}").text
        defaults = client.get("/api/parameters", headers=AUTH).json()
        assert defaults["train_params"]["epochs"] == TrainConfig().epochs == 5
        assert defaults["train_params"]["learning_rate"] == TrainConfig().learning_rate
        assert defaults["transform"]["size"] == TransformSpec().size
        assert defaults["ranges"]["epochs"] == [1, None] and defaults["ranges"]["seed"][1] == 2**32 - 1
        assert defaults["ranges"]["random_rotation_degrees"] == [0, 180]
        assert "resnet18" in defaults["models"]["resnet"] and "efficientnet_b0" in defaults["models"]["torchvision"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_studio(root, port: int, env: dict | None = None):
    process = subprocess.Popen(
        [sys.executable, "-m", "imgtrain", "studio", "--root", str(root), "--port", str(port), "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health?token={TOKEN}", timeout=1).read()
            return process
        except OSError:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.1)
    raise AssertionError("the studio did not start")


def _api(port: int, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.mark.slow  # two studio servers and a killed worker: CI's make test-slow
def test_a_studio_killed_mid_run_shows_it_interrupted_and_resumes_it(root):
    """SIGKILL the server while it trains: its worker notices, stops as Ctrl-C does (checkpoint written); the next
    server shows the run interrupted, and resume finishes it where it stopped."""
    port = _free_port()
    server = _start_studio(root, port)
    try:
        request = graph(train={"epochs": LONG_RUN, "batch_size": 4, "patience": LONG_RUN})
        run_id = _api(port, "/api/runs", request)["id"]
        deadline = time.monotonic() + 180
        while not _api(port, f"/api/runs/{run_id}")["history"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    folder = root / "imgtrain-runs" / f"run-{run_id}"
    deadline = time.monotonic() + 60
    while not (folder / "result.json").exists():  # the orphaned worker stops by itself
        assert time.monotonic() < deadline, "the orphaned worker is still running"
        time.sleep(0.2)
    assert json.loads((folder / "result.json").read_text())["status"] == "stopped"
    server = _start_studio(root, port)
    try:
        assert _api(port, f"/api/runs/{run_id}")["status"] == "interrupted"
        _api(port, f"/api/runs/{run_id}/resume", {})
        deadline = time.monotonic() + 600  # as wait_for: up to 136 s measured on a loaded machine
        while (run := _api(port, f"/api/runs/{run_id}"))["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert run["status"] == "finished", run["error"]
        assert run["history"]["train"][-1]["epoch"] == LONG_RUN
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_runs_wait_their_turn_and_a_queued_run_can_be_taken_off_the_queue(root):
    with TestClient(create_app(root, TOKEN)) as client:
        first, second, third = (client.post("/api/runs", json=graph(), headers=AUTH).json()["id"] for _ in range(3))
        assert client.post(f"/api/runs/{third}/stop", headers=AUTH).json()["stopping"]
        seen_waiting = False
        while (run := client.get(f"/api/runs/{first}", headers=AUTH).json())["status"] in ("queued", "running"):
            statuses = {r["id"]: r["status"] for r in client.get("/api/runs", headers=AUTH).json()}
            assert list(statuses.values()).count("running") <= 1
            seen_waiting |= statuses[first] == "running" and statuses[second] == "queued"
            time.sleep(0.1)
        assert run["status"] == "finished" and seen_waiting
        assert wait_for(client, second, ("finished", "failed"))["status"] == "finished"
        third_run = client.get(f"/api/runs/{third}", headers=AUTH).json()
        assert third_run["status"] == "stopped" and third_run["history"] == {}


def test_what_a_run_writes_stays_under_the_root(tmp_path):
    """Outputs in ROOT/imgtrain-runs; the registry, the decoded-image cache, matplotlib's and torch's caches and every
    temporary file in ROOT/.imgtrain-studio. The user's cache folder, $HOME and $TMPDIR are not touched (issue 32
    item 17: matplotlib wrote its font cache under $HOME, torch $TMPDIR/torchinductor_USER), so a studio runs where
    $HOME is read-only or shared."""
    root = make_class_folder(tmp_path / "root" / "large", {"a": 6, "b": 6}, size=(320, 320)).parent
    user_cache = Path(os.environ["IMGTRAIN_CACHE_DIR"])
    before = set(user_cache.rglob("*.rgb"))
    home, temporary = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temporary.mkdir()
    environment = {
        k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
    }
    port = _free_port()
    studio = _start_studio(root, port, env={**environment, "HOME": str(home), "TMPDIR": str(temporary)})
    try:
        request = {
            "train": "large",
            "split_fraction": 0.5,
            "model": SMALL["model"],
            "transform": {"size": 64, "center_crop": False, "random_horizontal_flip": False},
            "train_params": {"epochs": 1, "batch_size": 3},
        }
        run_id = _api(port, "/api/runs", request)["id"]
        deadline = time.monotonic() + 600  # as wait_for
        while _api(port, f"/api/runs/{run_id}")["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _api(port, f"/api/runs/{run_id}")["status"] == "finished"
    finally:
        studio.send_signal(signal.SIGINT)
        studio.wait(60)
    assert len(list((root / ".imgtrain-studio" / "decoded-cache").rglob("*.rgb"))) == 12
    assert set(user_cache.rglob("*.rgb")) == before
    assert sorted(p.name for p in root.iterdir()) == [".imgtrain-studio", "imgtrain-runs", "large"]
    assert list(home.iterdir()) == [] and list(temporary.iterdir()) == []
