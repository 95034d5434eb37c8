"""The studio with multi-label data (issue 28): a JSON-lines manifest of label lists runs through the designer's
graph, the checks before work count its images (not its labels), and each box's panel reads a multi-label model."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from fastapi.testclient import TestClient

from conftest import make_composites
from imgtrain.studio.app import create_app
from test_studio import AUTH, TOKEN, graph, problems_of, wait_for
from test_studio_page import TOKEN as PAGE_TOKEN
from test_studio_page import _chrome, _open, _q, _studio, _texts, _wait


def _tagged_root(tmp_path):
    root = tmp_path / "root"
    rows = make_composites(root / "tags", 30, seed=3)
    (root / "tags" / "list.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, rows


def test_a_multilabel_manifest_runs_through_the_graph_and_each_panel_reads_it(tmp_path):
    root, rows = _tagged_root(tmp_path)
    request = graph("tags/list.jsonl", train={"epochs": 2, "batch_size": 8, "learning_rate": 0.05})
    with TestClient(create_app(root, TOKEN)) as client:
        # 30 images, not the 40-odd labels they carry: 27 train at fraction 0.9, so a batch of 28 is too large
        too_large = graph("tags/list.jsonl", train={"epochs": 1, "batch_size": 28})
        assert ("train", "batch_size") in {(p[0], p[1]) for p in problems_of(client, too_large)}
        assert not problems_of(client, graph("tags/list.jsonl", train={"epochs": 1, "batch_size": 27}))
        run_id = client.post("/api/runs", json=request, headers=AUTH).json()["id"]
        run = wait_for(client, run_id, ("finished", "failed"))
        assert run["status"] == "finished", run["error"]
        panels = {n: client.get(f"/api/runs/{run_id}/nodes/{n}", headers=AUTH).json() for n in run["layout"]["order"]}
        counts = panels["convert"]["parts"]["images"]["classes"]
        assert counts == {c: sum(c in r["label"] for r in rows) for c in ("blue", "green", "red")}
        assert all(isinstance(s["label"], list) for s in panels["split"]["parts"]["train"]["samples"])
        card = dict(map(tuple, panels["train"]["card"]))
        assert card["task"].startswith("multi-label") and all(0 < card[f"threshold of {c}"] < 1 for c in counts)
        assert panels["score"]["columns"][3] == "labels" and panels["score"]["total"] == 3
        evaluation = panels["evaluate"]
        assert evaluation["metrics"]["task"] == "multilabel"
        assert set(evaluation["averages"]) == {"micro_avg", "macro_avg"}
        assert evaluation["co_occurrence"]["classes"] == ["blue", "green", "red"]
        assert all(set(c["confusion"]) == {"tp", "fp", "fn", "tn"} for c in evaluation["per_class"].values())
        exact = evaluation["metrics"]["subset_accuracy"] * evaluation["metrics"]["images"]
        assert len(evaluation["errors"]) == round(evaluation["metrics"]["images"] - exact)
        assert all(e["true"] != e["predicted"] for e in evaluation["errors"])
        image = (root / "tags" / rows[0]["path"]).read_bytes()
        answer = client.post(
            f"/api/runs/{run_id}/predict", content=image, headers={**AUTH, "Content-Type": "image/png"}
        ).json()
        assert isinstance(answer["label"], list) and set(answer["label"]) <= set(counts)


def _api_run(base: str, request: dict) -> int:
    """Start a run on a real studio through its API and wait for it to finish; its id."""

    def call(path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {PAGE_TOKEN}", "Content-Type": "application/json"}
        with urllib.request.urlopen(urllib.request.Request(base + path, data, headers), timeout=30) as answer:
            return json.loads(answer.read())

    run_id = call("/api/runs", request)["id"]
    deadline = time.monotonic() + 600
    while (run := call(f"/api/runs/{run_id}"))["status"] not in ("finished", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert run["status"] == "finished", run.get("error")
    return run_id


@pytest.mark.browser
def test_the_page_shows_a_multilabel_evaluation_and_answers_try_it_with_its_classes(tmp_path):

    root, rows = _tagged_root(tmp_path)
    driver = _chrome()
    try:
        with _studio(root) as base:
            run_id = _api_run(base, graph("tags/list.jsonl", train={"epochs": 1, "batch_size": 8}))
            _open(driver, base, f"run={run_id}")
            _q(driver, '.box[data-node="evaluate"] .box-title').click()
            tabs = _wait(driver).until(lambda d: _texts(d, "#output-body [role='tab']"))
            assert tabs == ["Overview", "Per class and co-occurrence", "Errors", "Calibration", "Explanations"]
            overview = _q(driver, "#metrics-overview").text
            for words in ("Exact match", "Hamming loss", "Mean average precision", "Micro F1", "Macro F1"):
                assert words in overview
            _q(driver, "#output-body [data-tab='confusion']").click()
            cells = _texts(driver, "#output-body table.confusion td.cell")
            assert len(cells) == 9  # the co-occurrence of the 3 classes
            assert "missed (FN)" in _q(driver, "#output-body table.class-confusion").text
            _q(driver, '.box[data-node="convert"] .box-title').click()
            captions = _wait(driver).until(lambda d: _texts(d, "#output-body figcaption"))
            assert any("," in c for c in captions) and "{" not in _q(driver, "#output-body").text
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not [e for e in errors if "Failed to load resource" not in e], errors
    finally:
        driver.quit()
