"""The studio's Tune Model Hyperparameters box (issue 30): a sweep run as a box whose output is its best trial's
model, which Score and Evaluate read; its panel lists the trials with their parameters, states and results, and
each trial's validation-loss curve; its form's values are checked at their field."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from fastapi.testclient import TestClient

from imgtrain.studio.app import create_app
from test_studio import AUTH, TOKEN, graph, problems_of, root, wait_for  # noqa: F401 - root is a fixture

pytestmark = pytest.mark.trains

#: A sweep of seconds here: two trials of two epochs at most, over the learning rate alone.
SWEEP = {"trials": 2, "search": "learning_rate", "epochs": 2, "batch_size": 6, "patience": 2}


def swept(**params: object) -> dict:
    """The designer's pipeline with a Tune Model Hyperparameters box in place of Train PyTorch Model."""
    built = graph()
    for node in built["nodes"]:
        if node["id"] == "train":
            node.update(module="sweep", params={**SWEEP, **params})
    return built


def test_a_sweep_box_lists_its_trials_and_its_best_model_is_scored_and_evaluated(root):  # noqa: F811
    with TestClient(create_app(root, TOKEN)) as client:
        run_id = client.post("/api/runs", json=swept(), headers=AUTH).json()["id"]
        run = wait_for(client, run_id, ("finished", "failed"))
        assert run["status"] == "finished", run["error"]
        assert run["layout"]["nodes"]["train"]["outputs"]["model"].endswith("/train/best")
        panel = client.get(f"/api/runs/{run_id}/nodes/train", headers=AUTH).json()
        assert panel["kind"] == "sweep" and panel["status"] == "done" and panel["ended"]
        trials = panel["trials"]
        assert [t["trial"] for t in trials] == [0, 1] and panel["parameters"] == ["learning_rate"]
        assert {t["state"] for t in trials} <= {"complete", "pruned"} and trials[0]["state"] == "complete"
        assert all(1e-4 <= t["params"]["learning_rate"] <= 0.1 for t in trials)
        complete = [t for t in trials if t["state"] == "complete"]
        best = min(complete, key=lambda t: t["val_loss"])
        assert panel["best"] == best["trial"] and [t["trial"] for t in trials if t["best"]] == [best["trial"]]
        assert panel["counts"]["complete"] == len(complete) and panel["trials_asked"] == 2
        for trial in trials:  # each trial's curve: its validation loss per epoch run
            curve = panel["curves"][str(trial["trial"])]
            assert [epoch for epoch, _ in curve] == list(range(1, trial["epochs_run"] + 1))
        assert min(loss for _, loss in panel["curves"][str(best["trial"])]) == pytest.approx(best["val_loss"])
        card = dict(map(tuple, panel["card"]))
        assert card["learning rate"] == pytest.approx(best["params"]["learning_rate"])
        assert panel["classes"] == ["cat", "dog"]
        model = client.get(f"/api/runs/{run_id}/download/model?node=train", headers=AUTH)
        assert "model/imgtrain-model.json" in zipfile.ZipFile(io.BytesIO(model.content)).namelist()
        assert client.get(f"/api/runs/{run_id}/nodes/evaluate", headers=AUTH).json()["kind"] == "evaluation"
        scores = client.get(f"/api/runs/{run_id}/download/scores?node=train", headers=AUTH)
        assert scores.text.startswith("id,path,source,label,")
        image = (root / "photos" / "cat" / "img0.png").read_bytes()
        top = client.post(f"/api/runs/{run_id}/predict?node=train", content=image, headers=AUTH).json()["top"]
        assert sorted(t["class"] for t in top) == ["cat", "dog"]
        events = [json.loads(line) for line in (root / run["folder"] / "events.jsonl").read_text().splitlines()]
        epochs = [(e["trial"], e["epoch"]) for e in events if e["kind"] == "epoch" and e["node"] == "train"]
        assert {trial for trial, _ in epochs} == {0, 1} and epochs[0] == (0, 1)  # the page tells trials apart


def test_a_sweep_box_is_offered_and_its_values_are_checked_at_their_field(root):  # noqa: F811
    with TestClient(create_app(root, TOKEN)) as client:
        module = client.get("/api/modules", headers=AUTH).json()["modules"]["sweep"]
        assert module["title"] == "Tune Model Hyperparameters" and module["outputs"] == {"model": "trained model"}
        form = module["parameters"]
        assert list(form)[:6] == ["trials", "budget_minutes", "pruner", "parallel", "sweep_seed", "search"]
        assert {"epochs", "batch_size", "learning_rate"} <= set(form) and not {"resume", "storage"} & set(form)
        assert form["parallel"]["default"] == 1 and form["search"]["default"].startswith("learning_rate, batch_size")
        assert problems_of(client, swept()) == []
        found = problems_of(client, swept(search="learning_rat, epochs", parallel=10_000, trials=0))
        fields = {field: message for _, field, message in found}
        assert set(fields) == {"search", "parallel", "trials"} and {node for node, _, _ in found} == {"train"}
        assert "the default space has no learning_rat" in fields["search"]
        [(node, field, message)] = problems_of(client, swept(batch_size=1000, search="epochs"))
        assert (node, field) == ("train", "batch_size") and "21 training images" in message
        assert problems_of(client, swept(batch_size=1000, search="batch_size")) == []  # each trial draws its own


@pytest.mark.slow  # a minute here: three trials of three epochs, one stopped and resumed
def test_a_stopped_sweep_shows_its_trials_so_far_and_resume_finishes_it(root):  # noqa: F811
    with TestClient(create_app(root, TOKEN)) as client:
        run_id = client.post("/api/runs", json=swept(trials=3, epochs=3, pruner="none"), headers=AUTH).json()["id"]
        deadline = time.monotonic() + 180
        while not [row for row in client.get(f"/api/runs/{run_id}", headers=AUTH).json()["history"].get("train", [])
                   if row.get("trial") == 1]:  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert client.post(f"/api/runs/{run_id}/stop", headers=AUTH).json()["stopping"]
        run = wait_for(client, run_id, ("stopped", "finished", "failed"))
        assert run["status"] == "stopped", run["error"]
        assert run["status"] == "stopped" and run["layout"]["nodes"]["train"]["status"] == "stopped"
        panel = client.get(f"/api/runs/{run_id}/nodes/train", headers=AUTH).json()
        assert panel["status"] == "stopped" and not panel["ended"] and panel["trials"][0]["state"] == "complete"
        assert panel["card"] == []  # the best so far is no output yet
        assert client.get(f"/api/runs/{run_id}/download/model?node=train", headers=AUTH).status_code == 409
        assert client.post(f"/api/runs/{run_id}/resume", headers=AUTH).json()["status"] == "queued"
        run = wait_for(client, run_id, ("finished", "failed", "stopped"))
        assert run["status"] == "finished", run["error"]
        panel = client.get(f"/api/runs/{run_id}/nodes/train", headers=AUTH).json()
        assert panel["counts"]["complete"] == 3 and panel["ended"] and panel["card"]
