"""timm as a second catalog: a network per family trains, scores, explains, exports and serves; its pretrained
weights come from a Hugging Face Hub on 127.0.0.1 (HF_ENDPOINT), checked against the SHA-256 the Hub states."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading

import numpy as np
import pytest
import timm
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save, save_file

import imgtrain
from conftest import make_color_classes
from imgtrain import Architecture, ParameterError, PretrainedWeightsError
from imgtrain.deploy.export import export_model
from imgtrain.models import weights
from imgtrain.serving.serve import ServeConfig, create_app

#: One network per family claimed: EfficientNet, ResNet, ConvNeXt, MobileNet, ViT (three of them in make test-slow:
#: make test keeps within its ten minutes).
FAMILIES = [
    "efficientnet_lite0",
    "vit_tiny_patch16_224",
    *(pytest.param(name, marks=pytest.mark.slow) for name in ("resnet10t", "convnext_atto", "mobilenetv3_small_050")),
]


@pytest.fixture(scope="module")
def colour_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("timm-data")
    train = imgtrain.convert(make_color_classes(root / "t", 6, size=32), root / "train", workers=1, progress=False)
    valid = imgtrain.convert(
        make_color_classes(root / "v", 3, size=32, seed=1), root / "valid", workers=1, progress=False
    )
    return train.root, valid.root


@pytest.mark.parametrize("name", FAMILIES)
def test_a_timm_network_trains_scores_explains_exports_and_serves(name, colour_dirs, tmp_path, run_cli):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    train, valid = colour_dirs
    side = 224 if name.startswith("vit") else 64  # a ViT takes the size it was made for only
    spec = imgtrain.TransformSpec(size=side, crop_size=side)
    run_cli("model", str(tmp_path / "m"), "--model-name", f"timm/{name}", "--no-pretrained")
    imgtrain.train(
        tmp_path / "m", train, valid, tmp_path / "t", imgtrain.TrainConfig(epochs=1, batch_size=6, progress=False), spec
    )
    assert json.loads((tmp_path / "t" / "imgtrain-model.json").read_text())["architecture"]["family"] == "timm"
    rows = imgtrain.score(tmp_path / "t", valid)
    assert len(rows) == 9 and all(
        abs(sum(v for k, v in r.items() if k.startswith("Scored Probabilities_")) - 1) < 1e-4 for r in rows
    )
    fp32, openvino = (
        imgtrain.score(imgtrain.load_model(tmp_path / "t", device="cpu", precision=p, backend=b), valid)
        for p, b in (("fp32", "torch"), ("auto", "openvino"))
    )
    assert [r["Scored Labels"] for r in openvino] == [r["Scored Labels"] for r in fp32]

    report = imgtrain.explain(tmp_path / "t", valid, tmp_path / "x", errors=2, correct=1)
    layer = report["target_layer"]
    assert "head" not in layer and "attn" not in layer, layer  # a map of the image, not of tokens or the classifier

    export_model(tmp_path / "t", tmp_path / "onnx")
    meta = json.loads((tmp_path / "onnx" / "imgtrain-export.json").read_text())
    image = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    probabilities = session.run(None, {session.get_inputs()[0].name: image})[0]
    model = imgtrain.load_model(tmp_path / "t", precision="fp32")
    mean, std = (torch.tensor(meta["input"]["normalization"][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    expected = model.probabilities((torch.from_numpy(image) - mean) / std)
    assert probabilities.shape == (1, 3) and np.allclose(probabilities, expected.numpy(), atol=1e-4)

    with TestClient(create_app(model, ServeConfig())) as client:
        png = (valid / json.loads((valid / "images.jsonl").read_text().splitlines()[0])["path"]).read_bytes()
        answer = client.post("/predict", files={"file": ("a.png", png, "image/png")})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] in ("red", "green", "blue")


def test_an_unknown_timm_name_is_refused_with_close_names(tmp_path, run_cli):
    with pytest.raises(ParameterError, match="timm has no network named 'efficientnet_lite9'.*efficientnet_lite0"):
        Architecture.from_catalog("timm/efficientnet_lite9")
    code, out, err = run_cli("model", str(tmp_path / "m"), "--model-name", "timm/nope_net", "--no-pretrained")
    assert code != 0 and "timm has no network named 'nope_net'" in err and not (tmp_path / "m").exists()


def test_models_lists_timm_networks_with_what_timm_says_of_them(run_cli):
    code, out, err = run_cli("models", "--source", "timm", "--json")
    rows = {r["model"]: r for r in map(json.loads, out.splitlines())}
    lite = rows["timm/efficientnet_lite0.ra_in1k"]
    assert (
        lite["input"] == "224x224"
        and lite["pretrained_classes"] == 1000
        and lite["hub"] == "timm/efficientnet_lite0.ra_in1k"
    )
    assert len(rows) > 1000


def test_a_weights_file_states_its_normalization_and_training_uses_it(colour_dirs, tmp_path):
    state = timm.create_model("resnet10t", num_classes=1000).state_dict()
    save_file(state, str(tmp_path / "w.safetensors"), metadata={"mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]"})
    untrained = imgtrain.create_model_directory(
        tmp_path / "m", Architecture.from_catalog("timm/resnet10t"), weights=tmp_path / "w.safetensors"
    )
    assert (untrained.mean, untrained.std) == ((0.5,) * 3, (0.5,) * 3)
    train, valid = colour_dirs
    imgtrain.train(
        tmp_path / "m",
        train,
        valid,
        tmp_path / "t",
        imgtrain.TrainConfig(epochs=1, batch_size=6, progress=False),
        imgtrain.TransformSpec(size=64, crop_size=64),
    )
    trained = json.loads((tmp_path / "t" / "imgtrain-model.json").read_text())
    assert trained["input"]["mean"] == trained["input"]["std"] == [0.5, 0.5, 0.5]

    save_file(state, str(tmp_path / "bad.safetensors"), metadata={"mean": "[0.5, 0.5]", "std": "[0, 1, 1]"})
    with pytest.raises(ParameterError, match="bad.safetensors states a normalization that cannot be used"):
        imgtrain.create_model_directory(
            tmp_path / "m2", Architecture.from_catalog("timm/resnet10t"), weights=tmp_path / "bad.safetensors"
        )


class _Hub:
    """A Hugging Face Hub on 127.0.0.1: serves `files` (URL path -> bytes), stating `stated` (path -> SHA-256) in
    X-Linked-Etag as the Hub does for large files (None: no hash stated)."""

    def __init__(self, files: dict[str, bytes], stated: dict[str, str | None]):
        self.files, self.stated, self.requests = files, stated, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body_too: bool) -> None:
                hub.requests.append((self.command, self.path))
                body = hub.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if hub.stated.get(self.path):
                    self.send_header("X-Linked-Etag", f'"{hub.stated[self.path]}"')
                self.end_headers()
                if body_too:
                    self.wfile.write(body)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


REPO_FILE = "/timm/resnet10t.c3_in1k/resolve/main/model.safetensors"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hub serving this test's own resnet10t weights, an empty torch cache, imgtrain online."""
    data = save(timm.create_model("resnet10t", num_classes=1000).state_dict())
    server = _Hub({REPO_FILE: data}, {REPO_FILE: hashlib.sha256(data).hexdigest()})
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv(weights.HUB_ENV, server.url)
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    yield server, data
    server.close()


def test_timm_weights_are_downloaded_once_checked_and_kept_with_their_hash(hub, tmp_path, monkeypatch):
    server, data = hub
    assert timm.models.get_pretrained_cfg("resnet10t").hf_hub_id == "timm/resnet10t.c3_in1k"
    model = imgtrain.create_model_directory(tmp_path / "m", Architecture.from_catalog("timm/resnet10t"), progress=False)
    cached = weights.hub_weights("timm/resnet10t.c3_in1k", "model.safetensors")
    assert model.pretrained and cached.path.read_bytes() == data
    assert cached.sha256_prefix == hashlib.sha256(data).hexdigest()  # kept beside the file
    assert [c for c, _ in server.requests] == ["HEAD", "GET"]

    monkeypatch.setenv(weights.OFFLINE_ENV, "1")  # the cached file is checked against the kept hash, offline
    imgtrain.create_model_directory(tmp_path / "m2", Architecture.from_catalog("timm/resnet10t"))
    assert len(server.requests) == 2
    cached.path.write_bytes(data[:-1] + b"x")
    with pytest.raises(PretrainedWeightsError, match="delete the file and run again"):
        imgtrain.create_model_directory(tmp_path / "m3", Architecture.from_catalog("timm/resnet10t"))


@pytest.mark.parametrize("stated", ["0" * 64, None], ids=["wrong hash", "no hash"])
def test_a_hub_file_that_does_not_match_or_states_no_hash_is_not_kept(hub, tmp_path, stated):
    server, data = hub
    server.stated[REPO_FILE] = stated
    with pytest.raises(PretrainedWeightsError, match="not 0000|does not state the file's SHA-256"):
        imgtrain.create_model_directory(tmp_path / "m", Architecture.from_catalog("timm/resnet10t"), progress=False)
    cache = tmp_path / "torch-home"
    assert not [p for p in cache.rglob("*") if p.is_file()] and not (tmp_path / "m").exists()


def test_offline_without_the_file_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(PretrainedWeightsError, match="model.safetensors are not in .*resnet10t.c3_in1k.*offline"):
        imgtrain.create_model_directory(tmp_path / "m", Architecture.from_catalog("timm/resnet10t"))
