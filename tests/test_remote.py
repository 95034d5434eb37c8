"""Remote sources: convert from s3:// against moto's server on 127.0.0.1 (a real S3 API over HTTP), through
a loopback proxy that throttles when asked."""

from __future__ import annotations

import http.server
import importlib.util
import io
import json
import socket
import threading
import urllib.request
import zipfile

import pytest

import imgtrain
from conftest import noise
from imgtrain import InvalidDatasetError, MissingDependencyError

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")
moto_settings = pytest.importorskip("moto.settings")
pytest.importorskip("s3fs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Throttler(http.server.BaseHTTPRequestHandler):
    """Forwards every request to moto; answers 503 SlowDown to the next `fail` GETs first."""

    target = ""
    fail = 0
    failed = 0

    def _forward(self) -> None:
        if self.command == "GET" and _Throttler.fail > 0:
            _Throttler.fail -= 1
            _Throttler.failed += 1
            body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length") or 0)
        request = urllib.request.Request(
            self.target + self.path,
            data=self.rfile.read(length) if length else None,
            method=self.command,
            headers=dict(self.headers.items()),
        )  # Host too: signed
        try:
            answer = urllib.request.urlopen(request)
        except urllib.error.HTTPError as exc:
            answer = exc
        body = answer.read()
        self.send_response(answer.status if hasattr(answer, "status") else answer.code)
        for key, value in answer.headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        length = answer.headers.get("Content-Length") if self.command == "HEAD" else None  # HEAD: the object's
        self.send_header("Content-Length", length or str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 behind a throttling proxy; the environment points the AWS SDK at the proxy."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    _Throttler.target = f"http://{host}:{port}"
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Throttler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.server_address[1]}")
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-not-for-logs")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_PROFILE", raising=False)
        client = boto3.client("s3", endpoint_url=_Throttler.target)
        client.create_bucket(Bucket="photos")
        _upload(client)
        key = _reader_key(_Throttler.target)
        env.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # from here on, keys are checked
        env.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        env.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        yield client
    proxy.shutdown()
    server.stop()


def _reader_key(endpoint: str) -> dict:
    """An IAM user allowed to use S3, and its access key: the only credentials that work once auth is on."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName="imgtrain")
    iam.put_user_policy(
        UserName="imgtrain",
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )
    return iam.create_access_key(UserName="imgtrain")["AccessKey"]


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    noise(12, 10, seed).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_objects() -> dict[str, bytes]:
    """The test bucket's objects: a labeled prefix, an archive, manifests (good, naming a missing key, escaping)."""
    objects = {
        f"labeled/{label}/{i}.png": _png(i + (10 if label == "dog" else 0))
        for i in range(3)
        for label in ("cat", "dog")
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(2):
            z.writestr(f"cat/{i}.png", _png(20 + i))
            z.writestr(f"dog/{i}.png", _png(30 + i))
    objects["archives/data.zip"] = archive.getvalue()
    objects["listed/images/a.png"], objects["listed/images/b.png"] = _png(40), _png(41)
    objects["listed/manifest.csv"] = b"path,label\nimages/a.png,cat\nimages/b.png,dog\n"
    objects["broken/manifest.csv"] = b"path,label\nimages/gone.png,cat\n"
    objects["escape/manifest.csv"] = b"path,label\n../labeled/cat/0.png,cat\n"
    objects["automl/images/a.png"], objects["automl/images/b.png"] = _png(42), _png(43)
    objects["automl/list.jsonl"] = (
        b'{"image_url": "images/a.png", "label": ["cat"]}\n{"image_url": "images/b.png", "label": []}\n'
    )
    objects["imagedir/imgtrain-images.json"] = b"{}"
    objects["imagedir/images/0.png"] = _png(50)
    return objects


def _upload(client) -> None:
    for key, body in sample_objects().items():
        client.put_object(Bucket="photos", Key=key, Body=body)


def every_kind_of_source_converts(base: str, tmp_path) -> None:
    """A labeled prefix, an archive object and a manifest with relative keys under `base` (s3://photos, ...)."""
    directory = imgtrain.convert(f"{base}/labeled", tmp_path / "out", progress=False)
    assert directory.classes == ("cat", "dog") and len(directory) == 6
    assert sorted(r.source for r in directory)[0] == "cat/0.png"
    assert json.loads((tmp_path / "out" / "convert-report.json").read_text())["source"] == f"{base}/labeled"
    assert not any(p.name == ".download" for p in (tmp_path / "out").rglob("*"))  # nothing staged is left
    archive = imgtrain.convert(f"{base}/archives/data.zip", tmp_path / "a", progress=False)
    assert archive.class_counts() == {"cat": 2, "dog": 2}
    assert all(r.source.startswith(f"{base}/archives/data.zip/") for r in archive)
    listed = imgtrain.convert(f"{base}/listed/manifest.csv", tmp_path / "m", progress=False)
    assert listed.class_counts() == {"cat": 1, "dog": 1}


def missing_and_escaping_keys_are_refused(base: str, tmp_path) -> None:
    """A missing prefix, a manifest naming a missing key, a manifest path leaving its prefix: named, no output."""
    with pytest.raises(InvalidDatasetError, match="does not exist"):
        imgtrain.convert(f"{base}/nothing-here", tmp_path / "x", progress=False)
    with pytest.raises(InvalidDatasetError, match="images/gone.png"):
        imgtrain.convert(f"{base}/broken/manifest.csv", tmp_path / "y", progress=False)
    with pytest.raises(InvalidDatasetError, match="not keys relative to it"):
        imgtrain.convert(f"{base}/escape/manifest.csv", tmp_path / "z", progress=False)
    assert not any((tmp_path / n).exists() for n in "xyz")


def test_a_prefix_an_archive_and_a_manifest_in_a_bucket(s3, tmp_path):
    every_kind_of_source_converts("s3://photos", tmp_path)


def test_missing_keys_and_manifests_leaving_their_prefix_are_refused(s3, tmp_path):
    missing_and_escaping_keys_are_refused("s3://photos", tmp_path)


def test_throttled_requests_succeed_on_retry(s3, tmp_path):
    _Throttler.fail, _Throttler.failed = 2, 0
    directory = imgtrain.convert("s3://photos/labeled", tmp_path / "out", progress=False)
    assert len(directory) == 6 and _Throttler.failed == 2


def test_wrong_credentials_fail_clearly_without_the_secret(s3, tmp_path, monkeypatch, run_cli):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-not-for-logs")
    code, out, err = run_cli("convert", "s3://photos/labeled", tmp_path / "out")
    assert code == 1 and "Access to s3://photos/labeled was refused" in err and "AWS_ACCESS_KEY_ID" in err
    assert "wrong-secret-not-for-logs" not in out + err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would only make the test slower
    code, out, err = run_cli("convert", "s3://photos/labeled", tmp_path / "out")
    assert code == 1 and "Traceback" not in err and not (tmp_path / "out").exists()


def test_score_streams_a_remote_prefix(s3, trained_model, run_cli, tmp_path):
    """The same probabilities as scoring a local copy, each object read when scored, nothing staged on disk."""
    model, _ = trained_model
    loaded = imgtrain.load_model(model, precision="fp32")
    remote = imgtrain.score(loaded, "s3://photos/labeled", progress=False)
    local = imgtrain.score(
        loaded, imgtrain.convert("s3://photos/labeled", tmp_path / "copy", progress=False), progress=False
    )
    assert [r["path"] for r in remote] == [
        f"s3://photos/labeled/{label}/{i}.png" for label in ("cat", "dog") for i in range(3)
    ]
    assert [r["label"] for r in remote] == ["cat"] * 3 + ["dog"] * 3
    by_source = {r["source"]: r for r in local}
    for row in remote:
        for c in loaded.classes:
            key = f"Scored Probabilities_{c}"
            assert row[key] == pytest.approx(by_source[row["source"]][key], abs=1e-6)
    code, out, _ = run_cli("score", "--model", model, "--data", "s3://photos/labeled", "--out", tmp_path / "s.csv")
    assert code == 0 and "wrote 6 scores" in out and sorted(p.name for p in tmp_path.iterdir()) == ["copy", "s.csv"]
    with pytest.raises(InvalidDatasetError, match="convert it first"):
        imgtrain.score(loaded, "s3://photos/imagedir", progress=False)


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_a_protocol_without_its_library_names_the_extra(tmp_path):
    with pytest.raises(MissingDependencyError, match=r"imgtrain\[gcs\]"):
        imgtrain.convert("gs://bucket/prefix", tmp_path / "out", progress=False)


def test_a_manifest_naming_its_images_by_url_downloads_them(s3, tmp_path):
    # Azure AutoML's JSON lines: image_url is a URL fsspec reads, the label a list (multi-label)
    rows = [
        {"image_url": "s3://photos/labeled/cat/0.png", "label": ["cat"]},
        {"image_url": "s3://photos/labeled/dog/1.png", "label": ["dog", "cat"]},
        {"image_url": "s3://photos/listed/images/a.png", "label": []},
    ]
    manifest = tmp_path / "automl.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    directory = imgtrain.convert(manifest, tmp_path / "out", progress=False)
    assert directory.multilabel and directory.classes == ("cat", "dog")
    assert [(r.source, r.label) for r in directory] == [(r["image_url"], r["label"]) for r in rows]
    assert (tmp_path / "out" / directory.records[1].path).read_bytes() == sample_objects()["labeled/dog/1.png"]
    assert not any(p.name == ".download" for p in (tmp_path / "out").rglob("*"))
    # a CSV's path column may hold URLs too; a key that is not there is named, and nothing is written
    table = tmp_path / "urls.csv"
    table.write_text("path,labels\ns3://photos/labeled/cat/2.png,cat\ns3://photos/labeled/cat/nothing.png,cat;dog\n")
    with pytest.raises(InvalidDatasetError, match="nothing.png"):
        imgtrain.convert(table, tmp_path / "csv", progress=False)
    assert not (tmp_path / "csv").exists()
    # Azure AutoML's manifest in the bucket, its image_url relative to it: staged with its images
    staged = imgtrain.convert("s3://photos/automl/list.jsonl", tmp_path / "automl", progress=False)
    assert [r.label for r in staged] == [["cat"], []] and staged.multilabel
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"image_url": "a.png", "label": ["cat"]}) + "\n")
    with pytest.raises(InvalidDatasetError, match="some images by URL and 1 by a path"):
        imgtrain.convert(mixed, tmp_path / "mixed", progress=False)
