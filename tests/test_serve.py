"""imgtrain serve: /predict (upload or base64 JSON), /health, limits answered with 4xx, batching, the page."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import imgtrain
from imgtrain.serving.serve import ServeConfig, create_app


def _png(size=(16, 16), seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(trained_model):
    model_dir, valid = trained_model
    config = ServeConfig(max_upload_bytes=200_000, max_pixels=1_000_000, batch_wait_ms=200)
    # fp32 on both sides: `auto` picks bf16 where one batch measures faster, which may differ between two loads
    with TestClient(create_app(imgtrain.load_model(model_dir, precision="fp32"), config)) as client:
        yield client, model_dir, valid


def _first_image(valid):
    directory = imgtrain.ImageDirectory.open(valid)
    record = list(directory)[0]
    return (directory.root / record.path).read_bytes(), record.label


def test_health_names_the_model(served):
    client, _, _ = served
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json()["classes"] == ["blue", "green", "red"] and answer.json()["status"] == "ok"


def test_upload_answers_the_same_probabilities_as_the_library(served):
    client, model_dir, valid = served
    data, _ = _first_image(valid)
    answer = client.post("/predict", files={"file": ("x.png", data, "image/png")})
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["predictions"][0]
    expected = imgtrain.load_model(model_dir, precision="fp32").predict(Image.open(io.BytesIO(data)))
    assert prediction["label"] == expected["label"]
    for cls, p in expected["probabilities"].items():
        assert prediction["probabilities"][cls] == pytest.approx(p, abs=1e-5)
    assert [t["label"] for t in prediction["top"]][0] == expected["label"]


def test_designer_json_with_base64_images(served):
    client, _, valid = served
    data, _ = _first_image(valid)
    body = {
        "Inputs": {
            "WebServiceInput0": [
                {"image": base64.b64encode(data).decode()},
                {"image": "data:image/png;base64," + base64.b64encode(_png()).decode()},
            ]
        }
    }
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["Results"]["WebServiceOutput0"]
    assert len(rows) == 2 and rows[0]["Scored Labels"] in ("blue", "green", "red")
    assert sum(rows[0][f"Scored Probabilities_{c}"] for c in ("blue", "green", "red")) == pytest.approx(1, abs=1e-5)
    simple = client.post("/predict", json={"images": [base64.b64encode(data).decode()]})
    assert simple.status_code == 200 and simple.json()["predictions"][0]["label"] == rows[0]["Scored Labels"]


@pytest.mark.parametrize(
    "request_kwargs, status, words",
    [
        (dict(files={"file": ("x.png", b"not an image", "image/png")}), 400, "not a readable image"),
        (dict(files={"file": ("x.png", b"", "image/png")}), 400, "empty"),
        (dict(files={"file": ("big.png", _png((1200, 1000)), "image/png")}), 413, "over the limit"),
        (dict(files={"file": ("huge.bin", b"\0" * 300_000, "image/png")}), 413, "over the limit"),
        (dict(json={"images": ["%%%"]}), 400, "not valid base64"),
        (dict(json={"pictures": []}), 400, "expected"),
        (dict(content=b"{broken", headers={"content-type": "application/json"}), 400, "not JSON"),
        (dict(content=b"[" * 100_000, headers={"content-type": "application/json"}), 400, "not JSON"),  # RecursionError
        (
            dict(content=b'{"images": [' + b"9" * 100_000 + b"]}", headers={"content-type": "application/json"}),
            400,
            "not JSON",
        ),  # past Python's int digit limit
        (dict(content=b"plain", headers={"content-type": "text/plain"}), 415, "multipart"),
        (dict(files={"note": (None, "no file")}), 400, "no image"),
    ],
)
def test_bad_requests_get_4xx_saying_why(served, request_kwargs, status, words):
    client, _, _ = served
    answer = client.post("/predict", **request_kwargs)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_concurrent_requests_are_batched(served):
    client, _, valid = served
    data, _ = _first_image(valid)
    before = client.get("/health").json()
    start, answers = threading.Barrier(8), []

    def call():
        start.wait()
        answers.append(client.post("/predict", files={"file": ("x.png", data, "image/png")}).status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = client.get("/health").json()
    assert answers == [200] * 8
    assert after["images"] - before["images"] == 8
    assert after["batches"] - before["batches"] < 8 and after["largest_batch"] >= 2


def test_the_page_and_the_api_description(served):
    client, _, _ = served
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "predict" in page.text
    schema = client.get("/openapi.json").json()
    assert "/predict" in schema["paths"] and "/health" in schema["paths"]
