"""Hostile and careless input, round two (issue 13): each test makes its own bad input."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import imgtrain
from imgtrain import TrainConfig
from imgtrain.inference.scoring import score_to_file


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_outputs_follow_the_umask_so_other_accounts_can_read_them(
    small_training_data, tmp_path, monkeypatch, umask_027
):
    model, train, valid, spec = small_training_data
    out = tmp_path / "model"
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "batch:1.1")
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    with pytest.raises(imgtrain.TrainingInterrupted):
        imgtrain.train(model, train, valid, out, TrainConfig(epochs=1, batch_size=8, progress=False), spec)
    assert stat.S_IMODE((out / "checkpoint" / "last.safetensors").stat().st_mode) == 0o640
    monkeypatch.delenv("IMGTRAIN_CRASH_AT")
    imgtrain.train(model, train, valid, out, TrainConfig(epochs=1, batch_size=8, progress=False, resume=True), spec)
    scores, _ = score_to_file(out, valid, tmp_path / "scores.csv", progress=False)
    imgtrain.evaluate(scores, tmp_path / "report")
    imgtrain.create_model_directory(
        tmp_path / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False
    )
    for root in (out, tmp_path / "report", tmp_path / "untrained"):
        modes = _modes(root)
        assert modes.pop(".") == 0o750, root
        assert modes and set(modes.values()) == {0o640}, modes  # weights, PNGs and JSON alike (was 0600 / 0644)
    assert stat.S_IMODE(scores.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    "argv, option",
    [
        (["train", "--model", "m", "--train", "t", "--valid", "v", "--out", "o", "--seed", "1" + "0" * 20], "--seed"),
        (["transform", "apply", "spec.json", "src", "out", "--seed", "20000000000000"], "--seed"),
        (["split", "src", "a", "b", "--seed", "-1"], "--seed"),
        (["serve", "model", "--port", "99999"], "--port"),
        (["serve", "model", "--max-upload-mb", "nan"], "--max-upload-mb"),
        (["serve", "model", "--batch-wait-ms", "inf"], "--batch-wait-ms"),
        (
            ["train", "--model", "m", "--train", "t", "--valid", "v", "--out", "o", "--master-port", "0"],
            "--master-port",
        ),
    ],
)
def test_numbers_out_of_range_are_refused_with_the_range(run_cli, argv, option):
    code, _, err = run_cli(*argv)
    assert code == 2 and f"argument {option}: must be from" in err and "Traceback" not in err


def test_numbers_out_of_range_are_refused_by_the_library_too(small_training_data, tmp_path):
    from imgtrain.serving.serve import ServeConfig, serve

    model, train, valid, spec = small_training_data
    with pytest.raises(imgtrain.ParameterError, match="seed must be an integer from 0 to 4294967295"):
        TrainConfig(seed=10**20)
    with pytest.raises(imgtrain.ParameterError, match="seed must be"):
        imgtrain.split(train, tmp_path / "a", tmp_path / "b", seed=2**40)
    with pytest.raises(imgtrain.ParameterError, match="seed must be"):
        imgtrain.apply_transform(spec, train, tmp_path / "t", seed=20_000_000_000_000)
    with pytest.raises(imgtrain.ParameterError, match="port must be"):
        serve(model, port=99999)
    with pytest.raises(imgtrain.ParameterError):
        ServeConfig(batch_wait_ms=float("nan"))
    assert not any(tmp_path.iterdir())


def _designer_dir(root: Path, meta: str) -> Path:
    root.mkdir()
    (root / "_meta.yaml").write_text(meta)
    (root / "images.lst").write_text("")
    return root


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = "type: ImageDirectory\n" + "\n".join(lines) + "\n"  # 9^9 = 387 million strings once expanded
    src = _designer_dir(tmp_path / "bomb", bomb)
    with pytest.raises(imgtrain.InvalidDatasetError, match="aliases") as caught:
        imgtrain.convert(src, tmp_path / "out", progress=False)
    assert len(str(caught.value)) < 1000 and not (tmp_path / "out").exists()


def test_an_oversized_designer_meta_file_is_not_parsed(tmp_path):
    src = _designer_dir(tmp_path / "big", "type: ImageDirectory\n# " + "x" * 100_000 + "\n")
    with pytest.raises(imgtrain.InvalidDatasetError, match="a designer _meta.yaml is a few lines"):
        imgtrain.convert(src, tmp_path / "out", progress=False)


def _jsonl(path: Path, rows: list) -> Path:
    import json

    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _row(label: str, **probs) -> dict:
    return {
        "label": label,
        **{f"Scored Probabilities_{c}": p for c, p in probs.items()},
        "Scored Labels": max(probs, key=probs.get),
    }


@pytest.mark.parametrize(
    "bad_row, words",
    [
        ({"label": "dog", "Scored Probabilities_dog": 0.9, "Scored Labels": "dog"}, "no 'Scored Probabilities_cat'"),
        ([1, 2], "not an object"),
        (_row("cat", cat=True, dog=0.0), "not numbers"),
    ],
)
def test_evaluate_refuses_rows_that_would_be_misread(tmp_path, bad_row, words):
    scores = _jsonl(tmp_path / "s.jsonl", [_row("cat", cat=0.8, dog=0.2), bad_row])
    with pytest.raises(imgtrain.InvalidDatasetError, match=words):
        imgtrain.evaluate(scores, tmp_path / "report")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("where", ["model/model.safetensors", "images/images.jsonl", "images", "folder"])
def test_score_never_writes_over_its_inputs_or_into_a_folder(trained_model, tmp_path, where):
    import shutil

    model_dir, valid = trained_model
    shutil.copytree(model_dir, tmp_path / "model")
    shutil.copytree(valid, tmp_path / "images")
    (tmp_path / "folder").mkdir()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(imgtrain.ParameterError, match="inside the input|is a folder"):
        score_to_file(tmp_path / "model", tmp_path / "images", tmp_path / where, overwrite=True, progress=False)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_class_left_without_training_images_by_a_split_is_refused(small_training_data, tmp_path):
    from conftest import make_class_folder

    model, _, _, spec = small_training_data
    images = imgtrain.convert(
        make_class_folder(tmp_path / "src", {"cat": 4, "dog": 4, "bird": 1}, size=(16, 16)),
        tmp_path / "images",
        progress=False,
    )
    train, valid = imgtrain.split(images.root, tmp_path / "train", tmp_path / "valid", fraction=0.75)
    assert train.class_counts()["bird"] == 0 and valid.class_counts()["bird"] == 1
    with pytest.raises(imgtrain.InvalidDatasetError, match=r"has no images of: \['bird'\]"):
        imgtrain.train(
            model, train.root, valid.root, tmp_path / "model", TrainConfig(epochs=1, batch_size=2, progress=False), spec
        )
    assert not (tmp_path / "model").exists()


def test_an_output_inside_its_source_folder_is_refused(tmp_path):
    from conftest import make_class_folder

    src = make_class_folder(tmp_path / "src", {"cat": 2, "dog": 2})
    with pytest.raises(imgtrain.ParameterError, match="lies inside the input"):
        imgtrain.convert(src, src / "out", progress=False)
    assert sorted(p.name for p in src.iterdir()) == ["cat", "dog"]  # no class `out` for the next run
    images = imgtrain.convert(src, tmp_path / "images", progress=False)
    with pytest.raises(imgtrain.ParameterError, match="lies inside the input"):
        imgtrain.split(images.root, images.root / "a", tmp_path / "b")


def test_resume_with_other_inputs_of_the_same_size_is_refused(small_training_data, tmp_path, monkeypatch):
    from conftest import make_color_classes

    model, train, valid, spec = small_training_data
    other = imgtrain.convert(make_color_classes(tmp_path / "other-src", 8, seed=7), tmp_path / "other", progress=False)
    assert len(other) == len(imgtrain.ImageDirectory.open(train))
    out = tmp_path / "run"
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "batch:1.1")
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    with pytest.raises(imgtrain.TrainingInterrupted):
        imgtrain.train(model, train, valid, out, TrainConfig(epochs=1, batch_size=8, progress=False), spec)
    monkeypatch.delenv("IMGTRAIN_CRASH_AT")
    with pytest.raises(imgtrain.ParameterError, match="these differ: train_index"):
        imgtrain.train(
            model, other.root, valid, out, TrainConfig(epochs=1, batch_size=8, progress=False, resume=True), spec
        )


def _thin_png(path: Path, length: int) -> Path:
    from PIL import Image

    Image.new("RGB", (1, length), (200, 30, 30)).save(path)  # a few hundred bytes, any length
    return path


@pytest.fixture
def resizing_model(trained_model, tmp_path):
    """The trained test model, with a transformation that resizes (as the designer's default does)."""
    import json
    import shutil

    model_dir, valid = trained_model
    out = shutil.copytree(model_dir, tmp_path / "resizing-model")
    meta = json.loads((out / "imgtrain-model.json").read_text())
    meta["input"]["transform"].update(resize=True, size=32, center_crop=True, crop_size=32)
    (out / "imgtrain-model.json").write_text(json.dumps(meta))
    return out, valid


def test_a_thin_image_is_refused_by_trains_precheck_without_allocating_it(small_training_data, tmp_path):
    from conftest import make_color_classes

    model, _, valid, _ = small_training_data
    src = make_color_classes(tmp_path / "src", 4)
    _thin_png(src / "red" / "thin.png", 100_000)  # resized to 256 on its short side: 256 x 25,600,000
    train = imgtrain.convert(src, tmp_path / "train", progress=False)
    with pytest.raises(imgtrain.InvalidDatasetError, match=r"red/thin.png|images/\d+.png") as caught:
        imgtrain.train(
            model, train.root, valid, tmp_path / "model", TrainConfig(epochs=1, batch_size=4, progress=False)
        )
    assert "too large for the transformation" in str(caught.value)


def test_a_thin_image_gets_an_error_row_in_score_and_413_from_serve(resizing_model, tmp_path):
    import base64

    from fastapi.testclient import TestClient

    from imgtrain.serving.serve import create_app

    model_dir, _ = resizing_model
    folder = tmp_path / "flat"
    folder.mkdir()
    _thin_png(folder / "thin.png", 300_000)
    from conftest import noise

    noise(40, 40).save(folder / "ok.png")
    images = imgtrain.convert(folder, tmp_path / "images", progress=False)
    rows = imgtrain.score(model_dir, images.root, skip_invalid=True, progress=False)
    errors = {Path(row["path"]).name: row.get("error") for row in rows}
    assert sum(e is None for e in errors.values()) == 1 and any("aspect ratio" in (e or "") for e in errors.values())
    with pytest.raises(imgtrain.InvalidDatasetError, match="aspect ratio"):
        imgtrain.score(model_dir, images.root, progress=False)
    thin = _thin_png(tmp_path / "million.png", 1_000_000).read_bytes()
    with TestClient(create_app(model_dir)) as client:
        answer = client.post("/predict", files={"file": ("thin.png", thin, "image/png")})
        assert answer.status_code == 413 and "aspect ratio" in answer.json()["error"]
        answer = client.post("/predict", json={"images": [base64.b64encode(thin).decode()]})
        assert answer.status_code == 413
        assert client.get("/health").status_code == 200


def test_file_and_folder_names_that_are_not_utf8(tmp_path):
    from conftest import make_class_folder, noise

    src = make_class_folder(tmp_path / "src", {"cat": 2, "dog": 2})
    noise(seed=7).save(os.fsdecode(bytes(src / "cat") + b"/caf\xe9.png"))  # Latin-1 bytes, as old tar files have
    os.mkdir(os.fsdecode(bytes(src) + b"/\xe9t\xe9"))
    noise(seed=8).save(os.fsdecode(bytes(src) + b"/\xe9t\xe9/1.png"))
    with pytest.raises(imgtrain.InvalidDatasetError, match=r"class folder name '\\xe9t\\xe9' is not UTF-8"):
        imgtrain.convert(src, tmp_path / "out", progress=False)
    images = imgtrain.convert(src, tmp_path / "out", skip_invalid=True, progress=False)
    assert list(images.classes) == ["cat", "dog"] and len(images) == 5
    assert "cat/caf\\xe9.png" in {r.source for r in images}


def test_a_tar_with_latin1_member_names_converts(tmp_path):
    import tarfile

    from conftest import make_class_folder

    src = make_class_folder(tmp_path / "src", {"cat": 2, "dog": 2})
    with tarfile.open(tmp_path / "photos.tar", "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for path in sorted(src.rglob("*.png")):
            name = str(path.relative_to(src))
            tar.add(path, arcname=name.replace("img0", "café"))  # stored as Latin-1 bytes
    images = imgtrain.convert(tmp_path / "photos.tar", tmp_path / "out", progress=False)
    assert len(images) == 4 and any(r.source.endswith("photos.tar/cat/caf\\xe9.png") for r in images)


def test_symbolic_links_are_never_followed_and_always_reported(tmp_path):
    import json

    from conftest import make_class_folder

    outside = make_class_folder(tmp_path / "outside", {"secret": 1, "bird": 2})
    src = make_class_folder(tmp_path / "src", {"cat": 2, "dog": 2})
    (src / "bird").symlink_to(outside / "bird", target_is_directory=True)
    (src / "cat" / "linked.png").symlink_to(outside / "secret" / "img0.png")
    images = imgtrain.convert(src, tmp_path / "out", progress=False)
    assert list(images.classes) == ["cat", "dog"] and len(images) == 4
    report = json.loads((tmp_path / "out" / "convert-report.json").read_text())
    assert sorted(report["ignored_non_images"]) == [
        "bird (symbolic link: not followed)",
        "cat/linked.png (symbolic link: not followed)",
    ]


def test_manifest_entries_that_are_devices_fifos_or_outside_its_folder(tmp_path):
    from conftest import noise

    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(2):
        noise(seed=i).save(folder / f"{i}.png")
    os.mkfifo(folder / "fifo.png")
    noise(seed=5).save(tmp_path / "elsewhere.png")
    manifest = folder / "list.csv"
    manifest.write_text("path,label\n0.png,a\n1.png,b\nfifo.png,a\n/dev/zero,b\n")
    with pytest.raises(imgtrain.InvalidDatasetError, match="lead outside its folder") as caught:
        imgtrain.convert(manifest, tmp_path / "out", progress=False)
    assert "/dev/zero" in str(caught.value)
    manifest.write_text("path,label\n0.png,a\n1.png,b\nfifo.png,a\n../elsewhere.png,b\n")
    with pytest.raises(imgtrain.InvalidDatasetError, match="lead outside its folder"):
        imgtrain.convert(manifest, tmp_path / "out", progress=False)
    manifest.write_text("path,label\n0.png,a\n1.png,b\nfifo.png,a\n/dev/zero,b\n../elsewhere.png,b\n")
    with pytest.raises(imgtrain.InvalidDatasetError, match="not a regular file") as caught:  # no hang, no 3 GB
        imgtrain.convert(manifest, tmp_path / "out", allow_outside=True, progress=False)
    images = imgtrain.convert(manifest, tmp_path / "out", allow_outside=True, skip_invalid=True, progress=False)
    assert len(images) == 3  # 0.png, 1.png and ../elsewhere.png, which the user allowed
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]


def test_only_the_accepted_formats_are_ever_decoded(trained_model, tmp_path):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from imgtrain.data.imaging import BadImage, open_image
    from imgtrain.serving.serve import create_app

    ico = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(ico, format="ICO")  # Pillow reads ICO; imgtrain must not
    postscript = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
    assert Image.open(io.BytesIO(ico.getvalue())).format == "ICO"
    for data in (ico.getvalue(), postscript):
        with pytest.raises(BadImage):
            open_image(data)
    model_dir, _ = trained_model
    with TestClient(create_app(model_dir)) as client:
        for data in (ico.getvalue(), postscript):
            answer = client.post("/predict", files={"file": ("x.png", data, "image/png")})
            assert answer.status_code == 400, answer.text


def test_a_broken_build_never_replaces_a_good_output(tmp_path):
    import json

    from conftest import make_class_folder, noise
    from imgtrain.files import building_dir

    good = imgtrain.convert(make_class_folder(tmp_path / "src", {"cat": 2, "dog": 2}), tmp_path / "out", progress=False)
    before = {p: p.read_bytes() for p in good.root.rglob("*") if p.is_file()}
    designer = tmp_path / "designer"
    (designer / "image").mkdir(parents=True)
    (designer / "_meta.yaml").write_text("type: ImageDirectory\nimage_list: images.lst\n")
    rows = []
    for i, category in enumerate(["cat", ""]):
        noise(seed=i).save(designer / "image" / f"{i}.png")
        rows.append(json.dumps({"image_info": {"file_name": f"image/{i}.png"}, "category": category, "id": i}))
    (designer / "images.lst").write_text("\n".join(rows) + "\n")
    with pytest.raises(imgtrain.InvalidDatasetError, match="the category is empty"):
        imgtrain.convert(designer, tmp_path / "out", overwrite=True, progress=False)
    # whatever a builder leaves, its own reader checks it before it takes the place of the old output
    with (
        pytest.raises(imgtrain.InvalidDatasetError, match="does not pass its own checks"),
        building_dir(tmp_path / "out", overwrite=True, validate=imgtrain.ImageDirectory.open) as tmp,
    ):
        (tmp / "imgtrain-images.json").write_text("{}")
    assert {p: p.read_bytes() for p in good.root.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["designer", "out", "src"]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_member_that_expands_too_much_is_refused_before_unpacking(tmp_path, kind):
    import io
    import tarfile
    import zipfile

    from conftest import noise

    image = io.BytesIO()
    noise().save(image, format="PNG")
    zeros = bytes(70 * 1024**2)  # 70 MB that compress to ~70 KB: 1000x
    archive = tmp_path / f"photos.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("cat/ok.png", image.getvalue())
            zf.writestr("cat/bomb.png", zeros)
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for name, data in (("cat/ok.png", image.getvalue()), ("cat/bomb.png", zeros)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    del zeros
    with pytest.raises(imgtrain.InvalidDatasetError, match="expands .* times") as caught:
        imgtrain.convert(archive, tmp_path / "out", progress=False)
    assert "before unpacking it" in str(caught.value) and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]  # nothing unpacked was left behind


def test_a_log_dir_inside_the_output_is_refused_before_training(small_training_data, tmp_path):
    model, train, valid, spec = small_training_data
    config = TrainConfig(epochs=1, batch_size=8, progress=False, log_dir=str(tmp_path / "model" / "logs"))
    with pytest.raises(imgtrain.ParameterError, match="event files would be deleted"):
        imgtrain.train(model, train, valid, tmp_path / "model", config, spec)
    assert not (tmp_path / "model").exists()


def test_an_output_named_through_a_symlink_shares_the_lock_of_its_target(tmp_path):
    from imgtrain.files import exclusive

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    from concurrent.futures import ThreadPoolExecutor

    def take(path):  # in another thread: within one thread the lock is re-entrant
        with exclusive(path):
            return "taken"

    with exclusive(tmp_path / "real"), ThreadPoolExecutor(1) as other:
        with pytest.raises(imgtrain.OutputExistsError, match="Another imgtrain process"):
            other.submit(take, tmp_path / "link").result()
        with pytest.raises(imgtrain.OutputExistsError, match="Another imgtrain process"):
            other.submit(take, tmp_path / "real").result()
    assert take(tmp_path / "link") == "taken"  # released: free again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # and the lock file is gone


def test_a_full_disk_while_unpacking_is_a_write_error_not_a_damaged_archive(tmp_path):
    import resource
    import signal
    import subprocess
    import sys
    import zipfile

    from conftest import noise

    big = tmp_path / "big.png"
    noise(400, 400).save(big)  # ~480 KB of noise: over the 200 KB file-size limit below
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as zf:
        zf.write(big, "cat/big.png")
        zf.write(big, "dog/big.png")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    run = subprocess.run(
        [sys.executable, "-m", "imgtrain", "convert", str(tmp_path / "photos.zip"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    assert run.returncode == 1 and "OutputWriteError" in run.stderr and "File too large" in run.stderr, run.stderr
    assert "cannot be read" not in run.stderr and not (tmp_path / "out").exists()


def test_overwrite_replaces_only_what_imgtrain_wrote(small_training_data, tmp_path):
    from conftest import make_class_folder

    model, train, valid, spec = small_training_data
    mine = tmp_path / "my-photos"
    mine.mkdir()
    (mine / "wedding.jpg").write_bytes(b"irreplaceable")
    with pytest.raises(imgtrain.OutputExistsError, match="holds files imgtrain did not write"):
        imgtrain.train(
            model, train, valid, mine, TrainConfig(epochs=1, batch_size=8, progress=False, overwrite=True), spec
        )
    with pytest.raises(imgtrain.OutputExistsError, match="holds files imgtrain did not write"):
        imgtrain.convert(make_class_folder(tmp_path / "src", {"a": 1, "b": 1}), mine, overwrite=True, progress=False)
    assert (mine / "wedding.jpg").read_bytes() == b"irreplaceable"


def test_serve_answers_health_while_heavy_images_are_decoded(resizing_model):
    import io
    import threading
    import time

    from fastapi.testclient import TestClient
    from PIL import Image

    from imgtrain.serving.serve import ServeConfig, create_app

    buffer = io.BytesIO()
    Image.new("RGB", (4000, 4000), (200, 30, 30)).save(buffer, format="PNG")  # 16 M pixels in a few KB
    files = [("file", (f"big{i}.png", buffer.getvalue(), "image/png")) for i in range(4)]
    with TestClient(create_app(resizing_model[0], ServeConfig(decode_threads=1))) as client:
        spans, started = [], threading.Event()

        def heavy():
            begin = time.perf_counter()
            started.set()
            assert client.post("/predict", files=files).status_code == 200
            spans.append(time.perf_counter() - begin)

        workers = [threading.Thread(target=heavy) for _ in range(3)]
        for worker in workers:
            worker.start()
        started.wait()
        time.sleep(0.2)
        waits = []
        while any(w.is_alive() for w in workers) and len(waits) < 20:
            begin = time.perf_counter()
            assert client.get("/health").status_code == 200
            waits.append(time.perf_counter() - begin)
            time.sleep(0.05)
        for worker in workers:
            worker.join()
    assert len(spans) == 3 and len(waits) >= 3, (spans, waits)
    assert max(waits) < min(spans) / 4, f"/health waited {max(waits):.2f} s while requests took {spans}"


def test_a_convert_stopped_by_sigterm_or_killed_leaves_nothing_behind(tmp_path, monkeypatch, run_cli):
    from conftest import make_class_folder

    src = make_class_folder(tmp_path / "src", {"cat": 3, "dog": 3})
    out = tmp_path / "out"
    monkeypatch.setenv("IMGTRAIN_CRASH_AT", "output-built")  # every image written aside, not yet in place
    monkeypatch.setenv("IMGTRAIN_CRASH_SIGNAL", "TERM")
    code, _, err = run_cli("convert", src, out)
    assert code == 143 and "terminated" in err
    assert sorted(os.listdir(tmp_path)) == ["src"]  # no .out.building-*, no lock file
    monkeypatch.delenv("IMGTRAIN_CRASH_AT")
    killed = tmp_path / ".out.building-k1ll3d"  # what a SIGKILL-ed convert leaves: its half-built folder
    make_class_folder(killed, {"cat": 2})
    assert run_cli("convert", src, out)[0] == 0
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]
    assert imgtrain.ImageDirectory.open(out).classes == ("cat", "dog")


def test_an_image_replaced_after_convert_by_another_size_is_named(small_training_data, trained_model, tmp_path):
    import shutil

    from conftest import noise

    model, train, valid, spec = small_training_data
    changed = shutil.copytree(train, tmp_path / "train")
    directory = imgtrain.ImageDirectory.open(changed)
    victim = directory.image_path(5)
    noise(20, 18).save(victim, format="PNG")  # the index says 16x16
    with pytest.raises(imgtrain.InvalidDatasetError, match="changed after convert") as caught:
        imgtrain.train(
            model, changed, valid, tmp_path / "model", TrainConfig(epochs=1, batch_size=4, progress=False), spec
        )
    assert str(victim) in str(caught.value) and "20x18" in str(caught.value)
    rows = imgtrain.score(trained_model[0], changed, skip_invalid=True, progress=False)
    errors = [row["error"] for row in rows if row.get("error")]
    assert len(errors) == 1 and "changed after convert" in errors[0]


def test_images_too_small_for_the_network_are_named_not_crashed_on(small_training_data, tmp_path):
    from fastapi.testclient import TestClient

    from conftest import noise
    from imgtrain.serving.serve import create_app

    _, train, valid, _ = small_training_data  # 16x16 images; densenet's poolings need 29x29
    densenet = tmp_path / "densenet"
    imgtrain.create_model_directory(densenet, imgtrain.Architecture("densenet", "densenet121"), pretrained=False)
    unresized = imgtrain.TransformSpec(resize=False, center_crop=False)
    with pytest.raises(imgtrain.InvalidDatasetError, match="needs at least 29x29") as caught:
        imgtrain.train(
            densenet, train, valid, tmp_path / "model", TrainConfig(epochs=1, batch_size=4, progress=False), unresized
        )
    assert "16x16" in str(caught.value) and "resize" in caught.value.hint
    imgtrain.train(
        densenet,
        train,
        valid,
        tmp_path / "model",
        TrainConfig(epochs=1, batch_size=8, progress=False),
        imgtrain.TransformSpec(size=32, crop_size=32),
    )
    import io

    buffer = io.BytesIO()
    noise(300, 1).save(buffer, format="PNG")  # resized to 32 high it is 9600x32: fine; 1 high is not
    meta = json.loads((tmp_path / "model" / "imgtrain-model.json").read_text())
    meta["input"]["transform"].update(resize=False, center_crop=False)
    (tmp_path / "model" / "imgtrain-model.json").write_text(json.dumps(meta))
    with TestClient(create_app(tmp_path / "model")) as client:
        answer = client.post("/predict", files={"file": ("thin.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 400 and "needs at least 29x29" in answer.json()["error"]
