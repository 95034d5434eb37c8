"""Small images made on the fly, and a way to run the CLI in-process."""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgtrain.cli import main

# Tests never reach the internet: a pretrained model that is not cached fails instead of downloading
# (tests/test_weights.py turns this off against its own server on 127.0.0.1).
os.environ["IMGTRAIN_OFFLINE"] = "1"
# The decoded-image cache of the whole run lives in a folder of its own, never in ~/.cache.
os.environ["IMGTRAIN_CACHE_DIR"] = tempfile.mkdtemp(prefix="imgtrain-test-cache-")
atexit.register(shutil.rmtree, os.environ["IMGTRAIN_CACHE_DIR"], ignore_errors=True)

#: Modules whose tests train a network (or run the studio, the demo or a benchmark that does), and the fixtures
#: that train one: `make test-fast` (-m "not trains") leaves them out.
TRAINING_MODULES = {
    "test_calibration",
    "test_catalog",
    "test_decoding",
    "test_demo",
    "test_distributed",
    "test_fuzz",
    "test_imbalance",
    "test_precision",
    "test_reliability",
    "test_studio",
    "test_browser",
    "test_training",
    "test_transfer",
    "test_two_nodes",
    "test_tracking",
    "test_explain",
    "test_multilabel_training",
    "test_multilabel_inference",
    "test_multilabel_bench",
    "test_studio_multilabel",
    "test_timm",
    "test_recipe",
    "test_tuning",
    "test_sweep",
    "test_sweep_storage",
    "test_gpu_bench",
    "test_deploy",
}
#: Modules that drive Chromium: `make test` runs them, `make test-fast` leaves them out (a browser start each).
BROWSER_MODULES = {"test_studio_page", "test_serve_page", "test_browser"}
TRAINING_FIXTURES = {"small_training_data", "trained_model", "bench", "multilabel_model"}


def pytest_ignore_collect(collection_path, config):
    """Under -m "not trains" the training modules are not even imported (a quarter of `make test-fast`'s time), nor
    under -m "not browser" the browser ones."""
    markexpr = config.option.markexpr or ""
    if "not trains" in markexpr and collection_path.stem in TRAINING_MODULES:
        return True
    if "not browser" in markexpr and collection_path.stem in BROWSER_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """Mark the tests that train with `trains` and those that drive Chromium with `browser`, for `make test-fast`."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in TRAINING_MODULES or TRAINING_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.trains)
        if module in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a real server a test starts."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def noise(width: int = 12, height: int = 10, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def make_class_folder(root: Path, counts: dict[str, int], ext: str = ".png", size=(12, 10)) -> Path:
    """root/<class>/<i><ext> with distinct noise images."""
    seed = 0
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise(*size, seed=seed).save(root / label / f"img{i}{ext}")
            seed += 1
    return root


@pytest.fixture
def run_cli(capsys):
    """Run `imgtrain ARGS` in-process; return (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def labeled_folder(tmp_path: Path) -> Path:
    return make_class_folder(tmp_path / "src", {"cat": 6, "dog": 4})


def tree(root: Path) -> set[str]:
    """Every path under root, relative, for checking that nothing else was written."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def make_color_classes(root: Path, per_class: int, size: int = 16, seed: int = 0) -> Path:
    """Learnable images: each class is a base colour plus noise."""
    rng = np.random.default_rng(seed)
    colors = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    for label, color in colors.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(color) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def small_training_data(tmp_path_factory):
    """(untrained resnet18 dir, train dir, valid dir, transform spec) shared by the training tests."""
    import imgtrain

    root = tmp_path_factory.mktemp("training-data")
    imgtrain.convert(make_color_classes(root / "train-src", 8), root / "train", workers=1, progress=False)
    imgtrain.convert(make_color_classes(root / "valid-src", 3, seed=1), root / "valid", workers=1, progress=False)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    spec = imgtrain.TransformSpec(resize=False, center_crop=False)
    return root / "untrained", root / "train", root / "valid", spec


def sweep_inputs_in(folder: Path, data, space: dict) -> tuple:
    """(untrained model, train, valid, transform file, space file) for `imgtrain sweep`, the files in `folder`."""
    import imgtrain

    model, train, valid, spec = data
    imgtrain.init_transform(folder / "spec.json", spec)
    (folder / "space.json").write_text(json.dumps(space))
    return model, train, valid, folder / "spec.json", folder / "space.json"


@pytest.fixture(scope="session")
def trained_model(small_training_data, tmp_path_factory):
    """A trained model directory (1 epoch on the colour classes) and the validation directory."""
    import imgtrain

    model, train, valid, spec = small_training_data
    out = tmp_path_factory.mktemp("scoring") / "model"
    imgtrain.train(model, train, valid, out, imgtrain.TrainConfig(epochs=1, batch_size=8, progress=False), spec)
    return out, valid


#: Multi-label composites: each class is a coloured quadrant; an image shows any subset of them.
QUADRANTS = {"red": ((0, 0), (220, 30, 30)), "green": ((0, 8), (30, 220, 30)), "blue": ((8, 0), (30, 30, 220))}
MULTILABEL_FAST = {"epochs": 3, "batch_size": 8, "learning_rate": 0.05, "progress": False}


def make_composites(folder: Path, count: int, seed: int) -> list[dict]:
    """`count` 16x16 images with a random subset of the QUADRANTS (some with none), and their manifest rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        pixels = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
        present = [name for name in QUADRANTS if rng.random() < 0.5]
        for name in present:
            (y, x), colour = QUADRANTS[name]
            pixels[y : y + 8, x : x + 8] = colour
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": present})
    return rows


@pytest.fixture(scope="session")
def multilabel_data(tmp_path_factory):
    """(untrained resnet18, train, valid, transform) of multi-label composites, converted from JSON-lines manifests."""
    import imgtrain

    root = tmp_path_factory.mktemp("multilabel")
    parts = []
    for name, count, seed in (("train", 48, 0), ("valid", 24, 1)):
        rows = make_composites(root / f"{name}-src", count, seed)
        manifest = root / f"{name}-src" / "list.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        parts.append(imgtrain.convert(manifest, root / name, workers=1, progress=False).root)
    imgtrain.create_model_directory(root / "untrained", imgtrain.Architecture("resnet", "resnet18"), pretrained=False)
    spec = imgtrain.TransformSpec(resize=False, center_crop=False, random_horizontal_flip=False)
    return root / "untrained", parts[0], parts[1], spec


@pytest.fixture(scope="session")
def multilabel_model(multilabel_data, tmp_path_factory):
    """A multi-label model trained with MULTILABEL_FAST, and its TrainResult."""
    import imgtrain

    model, train, valid, spec = multilabel_data
    out = tmp_path_factory.mktemp("multilabel-trained") / "m"
    return out, imgtrain.train(model, train, valid, out, imgtrain.TrainConfig(**MULTILABEL_FAST), spec)


BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    """bench/NAME.py as a module: the tests run the benchmarks' own code at a smaller size."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bench():
    """bench/trust.py (audit, explanations, calibration, imbalance)."""
    return load_bench("trust")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def network():
    """Namespaces a and b, joined by a veth pair: a is 10.N.M.1, b is 10.N.M.2 (two hosts on one machine: the
    two-node training job, the sweep workers sharing a PostgreSQL study). Needs root and iproute2, else skips."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("two-node test: needs root and iproute2's `ip netns` (not available here)")
    tag = f"{os.getpid() % 100000}"
    spaces, links = (f"imgtrain-a-{tag}", f"imgtrain-b-{tag}"), (f"ita{tag}", f"itb{tag}")
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 250)}"
    try:
        for space in spaces:
            _ip("netns", "add", space)
        _ip("link", "add", links[0], "type", "veth", "peer", "name", links[1])
        for space, link, host in zip(spaces, links, (1, 2), strict=True):
            _ip("link", "set", link, "netns", space)
            _ip("netns", "exec", space, "ip", "addr", "add", f"{subnet}.{host}/24", "dev", link)
            _ip("netns", "exec", space, "ip", "link", "set", link, "up")
            _ip("netns", "exec", space, "ip", "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for space in spaces:
            _ip("netns", "delete", space, check=False)
        pytest.skip(f"two-node test: network namespaces cannot be created here ({exc.stderr.strip()[:200]})")
    yield [(space, link, f"{subnet}.{host}") for space, link, host in zip(spaces, links, (1, 2), strict=True)]
    for space in spaces:
        _ip("netns", "delete", space, check=False)
