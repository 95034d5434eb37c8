"""Pretrained weights downloaded once, hash-checked and cached, from a real HTTP server on 127.0.0.1.

The download code under test is the real one (torch's, through imgtrain's fetch); only the expected
SHA-256 prefix is injected, since the served file is this test's own resnet18 weights, not ImageNet's.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch
import torchvision

import imgtrain
from imgtrain import Architecture, PretrainedWeightsError
from imgtrain.models import weights


class _Server:
    """Serves `files` (name -> bytes) on 127.0.0.1; `cut` names files whose connection drops half-way."""

    def __init__(self, files: dict[str, bytes], cut: frozenset[str] = frozenset()):
        self.files, self.cut, self.requests = files, cut, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(name)
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in server.cut else body)
                if name in server.cut:
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the server goes away mid-file

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> tuple[bytes, str]:
    """A resnet18 state dict saved as torchvision saves its weights (.pth), and its SHA-256."""
    path = tmp_path_factory.mktemp("served") / "w.pth"
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch, resnet18_file):
    """An empty torch cache, a mirror on loopback serving the file, and the file's own hash as the published one."""
    data, digest = resnet18_file
    name = f"resnet18-{digest[:8]}.pth"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    server = _Server({name: data, "cut-" + name: data}, cut=frozenset({"cut-" + name}))
    monkeypatch.setenv(weights.MIRROR_ENV, server.url)
    real = weights.imagenet_weights

    def published(model_name, prefix=digest[:8], served=name):
        official = real(model_name)  # the mirror's URL and torch's cache folder, as users get them
        return weights.WeightsFile(
            official.url.rsplit("/", 1)[0] + "/" + served, official.path.with_name(served), prefix
        )

    monkeypatch.setattr(weights, "imagenet_weights", published)
    yield server, published, Path(tmp_path / "torch-home" / "hub" / "checkpoints")
    server.close()


def _create(out: Path, **kwargs):
    return imgtrain.create_model_directory(out, Architecture("resnet", "resnet18"), progress=False, **kwargs)


def test_weights_are_downloaded_once_verified_and_cached(hub, tmp_path):
    server, published, cache = hub
    model = _create(tmp_path / "a")
    assert model.pretrained and server.requests == [published("resnet18").path.name]
    assert [p.name for p in cache.iterdir()] == [published("resnet18").path.name]
    _create(tmp_path / "b")  # from the cache: no second request
    assert len(server.requests) == 1
    expected = torchvision.models.resnet18(num_classes=1000)
    expected.load_state_dict(torch.load(published("resnet18").path, weights_only=True))
    assert torch.equal(model.backbone_weights()["conv1.weight"], expected.state_dict()["conv1.weight"])


def test_the_official_url_and_cache_are_torchvisions(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(weights.MIRROR_ENV, raising=False)
    official = weights.imagenet_weights("densenet201")
    assert official.url == torchvision.models.DenseNet201_Weights.DEFAULT.url
    assert official.path == tmp_path / "hub" / "checkpoints" / "densenet201-c1103571.pth"
    assert official.sha256_prefix == "c1103571"
    monkeypatch.setenv(weights.MIRROR_ENV, "https://mirror.example/torch/")
    assert weights.imagenet_weights("densenet201").url == "https://mirror.example/torch/densenet201-c1103571.pth"


@pytest.mark.parametrize("case", ["wrong hash", "dropped connection", "404"])
def test_a_failed_download_keeps_nothing_and_says_why(hub, tmp_path, monkeypatch, case):
    server, published, cache = hub
    served = published("resnet18").path.name
    if case == "wrong hash":
        monkeypatch.setattr(weights, "imagenet_weights", lambda name: published(name, prefix="deadbeef"))
    elif case == "dropped connection":
        monkeypatch.setattr(weights, "imagenet_weights", lambda name: published(name, served="cut-" + served))
    else:
        monkeypatch.setattr(weights, "imagenet_weights", lambda name: published(name, served="missing.pth"))
    with pytest.raises(PretrainedWeightsError) as caught:
        _create(tmp_path / "m")
    message = str(caught.value)
    assert server.url in message and ("nothing was kept" in message or "not kept" in message)
    if case == "wrong hash":
        assert "deadbeef" in message and hashlib.sha256(server.files[served]).hexdigest() in message
    assert not (tmp_path / "m").exists()
    assert not cache.exists() or list(cache.iterdir()) == []  # no file, no .partial


def test_offline_never_touches_the_network_and_names_the_file_and_folder(hub, tmp_path, monkeypatch, run_cli):
    server, published, cache = hub
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    with pytest.raises(PretrainedWeightsError) as caught:
        _create(tmp_path / "m")
    assert published("resnet18").path.name in str(caught.value) and str(cache) in str(caught.value)
    monkeypatch.delenv(weights.OFFLINE_ENV)
    code, _, err = run_cli("resnet", tmp_path / "m", "--model-name", "resnet18", "--offline")
    assert code == 1 and "PretrainedWeightsError" in err and str(cache) in err
    assert server.requests == [] and not (tmp_path / "m").exists()


def test_a_damaged_cached_file_is_refused_with_how_to_fix_it(hub, tmp_path):
    _, published, cache = hub
    cache.mkdir(parents=True)
    published("resnet18").path.write_bytes(b"not the weights")
    with pytest.raises(PretrainedWeightsError, match="delete the file"):
        _create(tmp_path / "m")
