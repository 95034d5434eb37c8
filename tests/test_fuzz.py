"""Fuzzing: random and mutated bytes as images, archives, manifests, meta, weights and transformation files.

Whatever the bytes, convert / train / score / the readers end normally or raise an ImgtrainError,
never another exception and never a hang. IMGTRAIN_FUZZ_EXAMPLES=N runs N examples per target
(default 8, fixed seed so CI is repeatable; the targets that train or resume take half); run it with a large N
and no seed when touching a reader.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import io
import json
import os
import shutil
import signal
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import imgtrain
from imgtrain import ImgtrainError, TrainConfig
from imgtrain.inference.scoring import score_to_file

EXAMPLES = int(os.environ.get("IMGTRAIN_FUZZ_EXAMPLES", "8"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="IMGTRAIN_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HANG_SECONDS = 30


@contextlib.contextmanager
def only_imgtrain_errors():
    """The block may raise ImgtrainError; anything else fails the test, and so does running past HANG_SECONDS."""

    def hung(signum, frame):
        raise TimeoutError(f"no answer after {HANG_SECONDS} s: a hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    except ImgtrainError:
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        # Hand freed memory back: glibc keeps the freed 100 MB checkpoint buffers of hundreds of examples otherwise
        # (measured: RSS 1 GB -> OOM at 24 GB within 40 examples; flat at 0.93 GB with this).
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --- strategies -----------------------------------------------------------------------------------

EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]),
        st.integers(0, 2**31),
        st.binary(min_size=1, max_size=16),
    ),
    min_size=1,
    max_size=8,
)


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    """Apply byte-level edits (positions taken modulo the length) to `data`."""
    out = bytearray(data)
    for kind, pos, chunk in edits:
        pos = pos % (len(out) + 1)
        if kind == "flip" and out:
            out[pos % len(out)] ^= chunk[0] or 1
        elif kind == "insert":
            out[pos:pos] = chunk
        elif kind == "delete":
            del out[pos : pos + len(chunk)]
        elif kind == "truncate":
            del out[pos:]
        else:
            out[pos : pos + len(chunk)] = chunk
    return bytes(out)


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Pure random bytes, or one of `seeds` with a few byte edits."""
    edited = st.builds(mutate, st.sampled_from(seeds), EDITS)
    return st.one_of(st.binary(max_size=2048), edited, edited)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def edited_json(draw, document: object) -> bytes:
    """`document` with one value somewhere replaced by arbitrary JSON, a key deleted, or its bytes edited."""
    doc = json.loads(json.dumps(document))
    kind = draw(st.sampled_from(["replace", "delete", "bytes"]))
    if kind == "bytes":
        return mutate(json.dumps(doc).encode(), draw(EDITS))
    paths: list[list] = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append(path + [k])
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append(path + [i])
                walk(v, path + [i])

    walk(doc, [])
    if not paths:
        return json.dumps(draw(JSON_VALUES)).encode()
    path = draw(st.sampled_from(paths))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if kind == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(doc).encode()  # NaN / Infinity included, as Python's json would read them


def _image_bytes(fmt: str, size=(9, 7)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


IMAGE_SEEDS = [_image_bytes(f) for f in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


# --- fixtures: small valid inputs to mutate -------------------------------------------------------


@pytest.fixture(scope="module")
def valid(small_training_data, trained_model, tmp_path_factory):
    """Paths of valid inputs: a labeled image directory, a trained and an untrained model, a transform file."""
    model, train, valid_dir, spec = small_training_data
    root = tmp_path_factory.mktemp("fuzz-valid")
    imgtrain.init_transform(root / "transform.json", spec)
    return {
        "images": valid_dir,
        "train": train,
        "untrained": model,
        "trained": trained_model[0],
        "transform": root / "transform.json",
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One folder the examples of a test reuse: model copies are large, and hundreds of them would fill the disk."""
    return tmp_path_factory.mktemp("fuzz-work")


def _copy(src: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    return dest


def _fresh(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# --- convert ---------------------------------------------------------------------------------------


@FUZZ
@given(
    data=mutated(IMAGE_SEEDS),
    ext=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif", ".webp"]),
    skip=st.booleans(),
)
def test_convert_fuzzed_image_files(tmp_path_factory, data, ext, skip):
    root = _fresh(tmp_path_factory.getbasetemp(), "fuzz-img")
    (root / "src" / "a").mkdir(parents=True)
    (root / "src" / "b").mkdir()
    (root / "src" / "a" / f"x{ext}").write_bytes(data)
    (root / "src" / "b" / "ok.png").write_bytes(IMAGE_SEEDS[0])
    with only_imgtrain_errors():
        directory = imgtrain.convert(root / "src", root / "out", skip_invalid=skip, workers=1, progress=False)
        for i in range(len(directory)):  # what convert accepted must read back
            directory.dataset()[i]


def _archive(kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("a/1.png", IMAGE_SEEDS[0])
            z.writestr("b/2.png", IMAGE_SEEDS[0])
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as t:
            for name in ("a/1.png", "b/2.png"):
                info = tarfile.TarInfo(name)
                info.size = len(IMAGE_SEEDS[0])
                t.addfile(info, io.BytesIO(IMAGE_SEEDS[0]))
    return buffer.getvalue()


@FUZZ
@given(kind=st.sampled_from(["zip", "tar.gz"]), edits=EDITS)
def test_convert_fuzzed_archives(tmp_path_factory, kind, edits):
    root = _fresh(tmp_path_factory.getbasetemp(), "fuzz-arc")
    (root / f"src.{kind}").write_bytes(mutate(_archive(kind), edits))
    with only_imgtrain_errors():
        imgtrain.convert(root / f"src.{kind}", root / "out", workers=1, progress=False)
    assert sorted(p.name for p in root.iterdir() if p.name != "out") == [f"src.{kind}"]  # nothing written outside


CSV_SEED = b"path,label\nimgs/1.png,a\nimgs/2.png,b\n"
JSONL_SEED = b'{"path": "imgs/1.png", "label": "a"}\n{"path": "imgs/2.png", "label": "b"}\n'


@FUZZ
@given(kind=st.sampled_from(["csv", "jsonl"]), data=st.data())
def test_convert_fuzzed_manifests(tmp_path_factory, kind, data):
    root = _fresh(tmp_path_factory.getbasetemp(), "fuzz-man")
    (root / "imgs").mkdir()
    for name in ("1.png", "2.png"):
        (root / "imgs" / name).write_bytes(IMAGE_SEEDS[0])
    seed = CSV_SEED if kind == "csv" else JSONL_SEED
    (root / f"list.{kind}").write_bytes(data.draw(mutated([seed])))
    with only_imgtrain_errors():
        imgtrain.convert(root / f"list.{kind}", root / "out", workers=1, progress=False)


# --- image directories, model directories, transformation files, checkpoints ------------------------


@FUZZ
@given(data=st.data(), which=st.sampled_from(["imgtrain-images.json", "images.jsonl"]))
def test_fuzzed_image_directory_files_in_score(valid, work, data, which):
    root = work
    images = _copy(valid["images"], root / "images")
    original = (images / which).read_bytes()
    if which.endswith(".json"):
        (images / which).write_bytes(data.draw(edited_json(json.loads(original))))
    else:
        (images / which).write_bytes(data.draw(mutated([original])))
    with only_imgtrain_errors():
        score_to_file(valid["trained"], images, root / "scores.csv", overwrite=True, progress=False)


@FUZZ
@given(data=st.data())
def test_fuzzed_trained_model_meta_in_score(valid, work, data):
    root = work
    model = _copy(valid["trained"], root / "model")
    meta = json.loads((model / "imgtrain-model.json").read_text())
    (model / "imgtrain-model.json").write_bytes(data.draw(edited_json(meta)))
    with only_imgtrain_errors():
        score_to_file(model, valid["images"], root / "scores.csv", overwrite=True, progress=False)


@FUZZ
@given(edits=EDITS)
def test_fuzzed_weights_in_score(valid, work, edits):
    root = work
    model = _copy(valid["trained"], root / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(mutate(weights.read_bytes()[:4096], edits) + weights.read_bytes()[4096:])
    with only_imgtrain_errors():
        score_to_file(model, valid["images"], root / "scores.csv", overwrite=True, progress=False)


@settings(FUZZ, max_examples=max(4, EXAMPLES // 2))
@given(data=st.data(), target=st.sampled_from(["transform", "untrained"]))
def test_fuzzed_transformation_and_untrained_model_files_in_train(valid, work, data, target):
    root = work
    shutil.rmtree(root / "out", ignore_errors=True)
    for lock in root.glob(".out.*"):
        shutil.rmtree(lock, ignore_errors=True) if lock.is_dir() else lock.unlink()
    transform, untrained = root / "transform.json", _copy(valid["untrained"], root / "untrained")
    shutil.copy(valid["transform"], transform)
    edited = transform if target == "transform" else untrained / "imgtrain-model.json"
    edited.write_bytes(data.draw(edited_json(json.loads(edited.read_text()))))
    with only_imgtrain_errors():
        imgtrain.train(
            untrained,
            valid["train"],
            valid["images"],
            root / "out",
            TrainConfig(epochs=1, batch_size=8, progress=False),
            transform,
        )


@pytest.fixture(scope="module")
def interrupted_run(valid, tmp_path_factory):
    """An output holding the checkpoint of a run stopped by SIGTERM mid-epoch."""
    out = tmp_path_factory.mktemp("interrupted") / "out"
    os.environ.update(IMGTRAIN_CRASH_AT="batch:1.1", IMGTRAIN_CRASH_SIGNAL="TERM")
    try:
        with pytest.raises(imgtrain.TrainingInterrupted):
            imgtrain.train(valid["untrained"], valid["train"], valid["images"], out, RESUMABLE, valid["transform"])
    finally:
        del os.environ["IMGTRAIN_CRASH_AT"], os.environ["IMGTRAIN_CRASH_SIGNAL"]
    return out


RESUMABLE = TrainConfig(epochs=1, batch_size=8, progress=False)


@settings(FUZZ, max_examples=max(4, EXAMPLES // 2))
@given(data=st.data(), kind=st.sampled_from(["meta", "header", "bytes"]))
def test_fuzzed_checkpoints_on_resume(valid, interrupted_run, work, data, kind):
    out = _copy(interrupted_run, work / "resumed")
    path = out / "checkpoint" / "last.safetensors"
    # Only the header is held while drawing: hypothesis keeps the frames of examples it abandons mid-draw, and
    # with the 90 MB tensor bytes in them that grew this process to OOM (measured: +171 MB per abandoned example).
    with path.open("rb") as f:
        prefix = f.read(8)
        size = int.from_bytes(prefix, "little")
        start = prefix + f.read(size + 64)
    header = json.loads(start[8 : 8 + size])
    if kind == "bytes":
        edited, cut = mutate(start, data.draw(EDITS)), len(start)
    else:
        if kind == "meta":
            meta = json.loads(header["__metadata__"]["imgtrain"])
            header["__metadata__"]["imgtrain"] = data.draw(edited_json(meta)).decode("utf-8", "replace")
            encoded = json.dumps(header).encode()
        else:  # the header's JSON as edited, byte edits (that may break the JSON) included
            encoded = data.draw(edited_json(header))
        edited, cut = len(encoded).to_bytes(8, "little") + encoded, 8 + size
    path.write_bytes(edited + path.read_bytes()[cut:])
    with only_imgtrain_errors():
        imgtrain.train(
            valid["untrained"],
            valid["train"],
            valid["images"],
            out,
            dataclasses.replace(RESUMABLE, resume=True),
            valid["transform"],
        )


# --- thin and huge-declared images through train's pre-check and serve ---------------------------------


def _declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height and that holds no pixels (a few dozen bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


THIN = st.tuples(st.integers(1, 3), st.integers(1_000, 1_000_000)).map(lambda s: s if s[1] % 2 else s[::-1])
SHAPES = st.one_of(
    THIN,
    st.tuples(st.integers(1, 300), st.integers(1, 300)),
    st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
)


def _image_of(width: int, height: int) -> bytes:
    """Real pixels where that is cheap to make (thin and small images), else only a header declaring the size."""
    if width * height > 2_000_000:
        return _declared_png(width, height)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def resizing_server(valid, tmp_path_factory):
    from fastapi.testclient import TestClient

    from imgtrain.serving.serve import ServeConfig, create_app

    model = _copy(valid["trained"], tmp_path_factory.mktemp("fuzz-serve") / "model")
    meta = json.loads((model / "imgtrain-model.json").read_text())
    meta["input"]["transform"].update(resize=True, size=32, center_crop=True, crop_size=32)
    (model / "imgtrain-model.json").write_text(json.dumps(meta))
    with TestClient(create_app(model, ServeConfig())) as client:
        yield client


@settings(FUZZ, max_examples=max(4, EXAMPLES // 2))
@given(shape=SHAPES, size=st.integers(1, 512), crop=st.booleans(), declared=st.booleans())
def test_thin_and_huge_declared_images_in_trains_precheck_and_serve(
    valid, work, resizing_server, shape, size, crop, declared
):
    """The index may declare any size (a hostile or stale index); the file may hold pixels or only a header."""
    data = _declared_png(*shape) if declared else _image_of(*shape)
    train = _copy(valid["train"], work / "train")
    records = [json.loads(line) for line in (train / "images.jsonl").read_text().splitlines()]
    keep = [next(r for r in records if r["label"] == c) for c in ("blue", "green", "red")]
    keep.append({**keep[0], "id": 99, "path": "images/fuzz.png", "width": shape[0], "height": shape[1]})
    (train / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    meta = json.loads((train / "imgtrain-images.json").read_text())
    (train / "imgtrain-images.json").write_text(json.dumps({**meta, "num_images": len(keep)}))
    (train / "images" / "fuzz.png").write_bytes(data)
    spec = imgtrain.TransformSpec(resize=True, size=size, center_crop=crop, crop_size=min(size, 24))
    shutil.rmtree(work / "out", ignore_errors=True)
    with only_imgtrain_errors():
        imgtrain.train(
            valid["untrained"],
            train,
            valid["images"],
            work / "out",
            TrainConfig(epochs=1, batch_size=4, progress=False),
            spec,
        )
    with only_imgtrain_errors():
        answer = resizing_server.post("/predict", files={"file": ("x.png", data, "image/png")})
        assert answer.status_code in (200, 400, 413), answer.text
