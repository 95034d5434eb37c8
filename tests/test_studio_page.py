"""The studio's page (src/imgtrain/studio/static) in headless Chromium against a real `imgtrain studio`: the canvas
(boxes, ports, arrows, "Compare two models"), parameters checked in place, the file browser, a run followed live to
its outputs, Runs compared, Try it, Stop / Resume, a reload re-attaching, the layout at 1280x800 and 1920x1080.

Needs Debian's chromium and chromium-driver (.ci/run installs them); without them the tests skip, unless
IMGTRAIN_REQUIRE_BROWSER=1 (CI), where they fail. IMGTRAIN_SCREENSHOTS=1 also writes docs/studio-1280x800.png and
docs/studio-1920x1080.png from a finished compared run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import noise

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "page-token"
DOCS = Path(__file__).resolve().parent.parent / "docs"
CLASSES = ("apple", "leaf", "sky")
#: A phone's export: PhoneExport/<class>/<year>/<month>/<image> (deeper folders belong to their class).
PHONE_EXPORT = "PhoneExport"
#: Long enough to stop, reload or look at while it trains (about 0.1 s a batch here, 6 batches an epoch).
LONG_EPOCHS = 30

trains = pytest.mark.trains


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _phone_export(root: Path) -> Path:
    """3 classes x 8 images of 32x32 PNG, nested as a phone exports them: class/2022/05/."""
    seed = 0
    for label in CLASSES:
        folder = root / PHONE_EXPORT / label / "2022" / "05"
        folder.mkdir(parents=True)
        for i in range(8):
            noise(32, 32, seed=seed).save(folder / f"IMG_{i:04d}.png")
            seed += 1
    return root


@contextlib.contextmanager
def _studio(root: Path) -> Iterator[str]:
    """`imgtrain studio --root ROOT` on a free port; yields its base URL (the page needs /?token= once)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "imgtrain", "studio", "--root", str(root), "--port", str(port), "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                request = urllib.request.Request(f"{base}/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
                urllib.request.urlopen(request, timeout=1).read()
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"imgtrain studio exited: {process.stdout.read()}")
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[str]:
    """One studio for the module, over a root holding a phone export (runs add up: tests find their own)."""
    root = _phone_export(tmp_path_factory.mktemp("studio-root"))
    (root / "notes").mkdir()  # a folder with nothing to convert: the browser says so when it is opened
    with _studio(root) as base:
        yield base


def _chrome(width: int = 1280, height: int = 800):
    """Headless Chromium whose page is exactly width x height CSS pixels, or a skip (a failure in CI)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if os.environ.get("IMGTRAIN_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium / chromedriver missing: apt-get install chromium chromium-driver")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    _viewport(driver, width, height)
    return driver


def _viewport(driver, width: int, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


@pytest.fixture
def browser():
    driver = _chrome()
    try:
        yield driver
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        # the API's refusals show as failed loads (a 400 check, a 409 output); a script error is a bug
        assert not [e for e in errors if "Failed to load resource" not in e], errors
    finally:
        driver.quit()


# --- helpers ------------------------------------------------------------------------------------------------------


def _wait(driver, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1)


def _open(driver, base: str, fragment: str | None = None) -> None:
    """The page, with the token (the studio sets its cookie and redirects to /), ready when body[data-ready]; with
    a fragment ("run=7", or "" for none), loaded again at /#fragment, as a bookmark opens it."""
    driver.get(f"{base}/?token={TOKEN}")
    _ready(driver)
    if fragment is not None:
        _visit(driver, f"{base}/#{fragment}")


def _ready(driver) -> None:
    _wait(driver).until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))


def _visit(driver, url: str) -> None:
    """Load `url` afresh (a change of the fragment alone would not reload the page)."""
    driver.execute_script("document.body.dataset.ready = 'old'")
    driver.get(url)
    if driver.execute_script("return document.body.dataset.ready") == "old":
        driver.refresh()
    _ready(driver)


def _q(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def _all(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _text(driver, css: str) -> str:
    """An element's text read at once (a part that is redrawn as the run moves may go stale between two calls)."""
    return driver.execute_script("return document.querySelector(arguments[0])?.innerText || ''", css)


def _texts(driver, css: str) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", css)


def _boxes(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('.box')].map(b => b.dataset.node)")


def _edges(driver) -> set[str]:
    return set(driver.execute_script("return [...document.querySelectorAll('.edge')].map(e => e.dataset.edge)"))


def _statuses(driver) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('.box')].map(b => [b.dataset.node, b.dataset.status]))"
    )


def _select(driver, node: str) -> None:
    """Click a box (on its title: its middle may be a port) and show its parameters."""
    _q(driver, f'.box[data-node="{node}"] .box-title').click()
    _q(driver, "#tab-params").click()
    _wait(driver).until(lambda d: _all(d, f'#params-form[aria-label="Parameters of {node}"]'))


def _set(driver, name: str, value: str) -> None:
    field = _q(driver, f'#params [name="{name}"]')
    field.clear()
    field.send_keys(value)


def _untick(driver, name: str) -> None:
    box = _q(driver, f'#params [name="{name}"]')
    if box.is_selected():
        box.click()


def _choose_phone_export(driver) -> None:
    """Toolbar's Choose images…, then Choose on the phone export's row."""
    _q(driver, "#choose-images").click()
    _wait(driver).until(lambda d: _all(d, f'#files-list li[data-path="{PHONE_EXPORT}"] .choose'))
    _q(driver, f'#files-list li[data-path="{PHONE_EXPORT}"] .choose').click()
    _wait(driver).until(lambda d: not _q(d, "#files-dialog").get_attribute("open"))


def _small(driver, trains: tuple[str, ...] = ("train",), models: tuple[str, ...] = ("resnet",), **train: str) -> None:
    """Seconds-long training: no pretrained weights, 32 px images, batches of 4, the given train values."""
    for model in models:
        _select(driver, model)
        _untick(driver, "pretrained")
    _select(driver, "transform")
    _set(driver, "size", "32")
    _set(driver, "crop_size", "32")
    for node in trains:
        _select(driver, node)
        for name, value in {"epochs": "1", "batch_size": "4", **train}.items():
            _set(driver, name, value)


def _submit(driver) -> int:
    """Submit once the checks pass; the run's id from the header."""
    _wait(driver, 60).until(lambda d: _q(d, "#submit").is_enabled())
    before = _text(driver, "#run-state")
    _q(driver, "#submit").click()
    _wait(driver).until(lambda d: _text(d, "#run-state") != before and "#" in _text(d, "#run-state"))
    return int(_text(driver, "#run-state").split("#")[1].split()[0])


def _run_status(driver) -> str:
    """The selected run's status in the header ("" when none), read at once (the header is redrawn as it moves)."""
    return driver.execute_script("return document.querySelector('#run-state .run-status')?.textContent || ''")


def _wait_status(driver, statuses: tuple[str, ...], timeout: float = 300) -> str:
    _wait(driver, timeout).until(lambda d: _run_status(d) in statuses)
    return _run_status(driver)


def _no_horizontal_scroll(driver) -> None:
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.body.scrollWidth, window.innerWidth]"
    )
    assert widths[0] <= widths[1] and widths[2] <= widths[3], widths


# --- (a) the canvas -----------------------------------------------------------------------------------------------


def test_canvas_add_connect_remove_boxes_and_compare_two_models(studio, browser):
    from selenium.webdriver.common.keys import Keys

    driver = browser
    _open(driver, studio)
    titles = [b.text for b in _all(driver, ".palette-item")]
    assert titles == [
        "Convert to Image Directory",
        "Split Image Directory",
        "Init Image Transformation",
        "ResNet",
        "DenseNet",
        "Image model (catalog)",
        "Train PyTorch Model",
        "Tune Model Hyperparameters",
        "Score Image Model",
        "Evaluate Model",
    ]
    # the default graph, left to right: every arrow of the designer's pipeline, each box with its ports
    assert _boxes(driver) == ["convert", "split", "transform", "resnet", "train", "score", "evaluate"]
    assert {"convert.images->split.images", "split.train->train.train", "split.valid->train.valid"} <= _edges(driver)
    x = {b.get_attribute("data-node"): b.rect["x"] for b in _all(driver, ".box")}
    assert x["convert"] < x["split"] < x["train"] < x["score"] < x["evaluate"]
    assert _q(driver, '.box[data-node="train"]').get_attribute("data-status") == "idle"
    assert len(_all(driver, '.box[data-node="train"] .port[data-side="in"]')) == 4

    # add a box from the palette: the next free id of its module
    _q(driver, '.palette-item[data-module="score"]').click()
    assert _boxes(driver)[-1] == "score-2"
    assert _q(driver, ".box.selected").get_attribute("data-node") == "score-2"

    # a mismatched connection is refused, visibly; a matching one draws an arrow
    _q(driver, '.port[data-port="split.train"][data-side="out"]').click()
    _q(driver, '.port[data-port="score-2.model"][data-side="in"]').click()
    message = _q(driver, "#canvas-message")
    assert message.get_attribute("data-kind") == "error" and "takes trained model" in message.text
    assert message.is_displayed()
    assert not any(e.endswith("->score-2.model") for e in _edges(driver))
    _q(driver, '.port[data-port="train.model"][data-side="out"]').click()
    _q(driver, '.port[data-port="score-2.model"][data-side="in"]').click()
    assert "train.model->score-2.model" in _edges(driver)

    # an arrow is selected by a click and removed with Delete
    edge = _q(driver, '.edge[data-edge="train.model->score-2.model"] .edge-hit')
    driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", edge)
    _wait(driver).until(lambda d: _all(d, ".edge.selected"))
    assert _q(driver, "#edge-remove").is_displayed()
    _q(driver, "body").send_keys(Keys.DELETE)
    assert "train.model->score-2.model" not in _edges(driver)

    # keyboard: focus a box, Enter selects it, Delete removes it; the x button removes another
    box = _q(driver, '.box[data-node="score-2"]')
    box.send_keys(Keys.ENTER)
    assert _q(driver, ".box.selected").get_attribute("data-node") == "score-2"
    box.send_keys(Keys.DELETE)
    assert "score-2" not in _boxes(driver)
    _q(driver, '.box[data-node="evaluate"] .box-remove').click()
    assert "evaluate" not in _boxes(driver)
    assert not any("evaluate" in e for e in _edges(driver))  # its arrows went with it

    # a box can be dragged: its position moves, its arrows follow
    from selenium.webdriver.common.action_chains import ActionChains

    score = _q(driver, '.box[data-node="score"] .box-title')
    before = _q(driver, '.box[data-node="score"]').rect
    ActionChains(driver).click_and_hold(score).move_by_offset(40, 60).release().perform()
    after = _q(driver, '.box[data-node="score"]').rect
    assert after["x"] > before["x"] + 20 and after["y"] > before["y"] + 30

    # "Compare two models": a second model, Train, Score and Evaluate, fed by the same Split and transformation
    _q(driver, "#default-graph").click()
    _q(driver, "#compare-models").click()
    assert _boxes(driver)[7:] == ["densenet", "train-2", "score-2", "evaluate-2"]
    assert {
        "densenet.model->train-2.model",
        "split.train->train-2.train",
        "split.valid->train-2.valid",
        "transform.transform->train-2.transform",
        "train-2.model->score-2.model",
        "split.valid->score-2.images",
        "score-2.scores->evaluate-2.scores",
        "train-2.model->evaluate-2.model",
    } <= _edges(driver)
    assert set(_statuses(driver).values()) == {"idle"}
    _no_horizontal_scroll(driver)


# --- (b) checks in place ------------------------------------------------------------------------------------------


def test_a_parameter_is_refused_at_its_field_with_the_librarys_message(studio, browser):
    driver = browser
    _open(driver, studio)
    assert not _q(driver, "#submit").is_enabled()  # no images chosen yet
    assert "Choose the images" in _q(driver, "#submit").get_attribute("title")
    _choose_phone_export(driver)
    assert _q(driver, '.box[data-node="convert"] .box-source').text == f"source: {PHONE_EXPORT}"

    _select(driver, "train")
    labels = [label.text for label in _all(driver, "#params .field > label")]
    assert "Learning rate" in labels and "Batch size" in labels and "Random seed" in labels
    help_text = _q(driver, '#params .field[data-field="epochs"] .help').text
    assert help_text.startswith("number of epochs")  # the library's help, visible
    _set(driver, "epochs", "0")
    error = _q(driver, '#params .field[data-field="epochs"] .field-error')
    _wait(driver).until(lambda d: error.text)
    assert error.text == "epochs must be an integer >= 1, got 0"  # the library's words, as they are
    assert _q(driver, '#params [name="epochs"]').get_attribute("aria-invalid") == "true"
    described = _q(driver, '#params [name="epochs"]').get_attribute("aria-describedby").split()
    assert error.get_attribute("id") in described
    assert not _q(driver, "#submit").is_enabled()
    assert _q(driver, '.box[data-node="train"]').get_attribute("data-problems") == "1"

    # the tests are offline: pretrained weights that are not cached are refused at pretrained, saying to untick it
    _set(driver, "epochs", "2")
    _wait(driver).until(lambda d: not _q(d, '#params .field[data-field="epochs"] .field-error').text)
    _wait(driver).until(lambda d: _q(d, '.box[data-node="resnet"]').get_attribute("data-problems") != "0")
    _select(driver, "resnet")
    assert _q(driver, '#params [name="model_name"]').tag_name == "select"
    options = [o.text for o in _all(driver, '#params [name="model_name"] option')]
    assert "resnet18" in options and "densenet121" not in options
    pretrained = _q(driver, '#params .field[data-field="pretrained"] .field-error')
    assert "pretrained" in pretrained.text
    assert not _q(driver, "#submit").is_enabled()
    _untick(driver, "pretrained")
    _wait(driver).until(lambda d: _q(d, "#submit").is_enabled())
    assert not _all(driver, "[aria-invalid='true']")


def test_an_unreadable_photo_is_found_before_work_and_skip_unreadable_images_is_offered_at_its_field(browser, tmp_path):
    """A phone export with one truncated JPEG: the quick scan names it at Convert's "Skip unreadable images"
    before any work, Submit waits; ticking it lets the run start."""
    root = _phone_export(tmp_path / "root")
    photo = root / PHONE_EXPORT / CLASSES[0] / "2022" / "05" / "IMG_0100.jpg"
    noise(64, 64, seed=9).save(photo, quality=90)
    photo.write_bytes(photo.read_bytes()[:200])  # cut short, as a phone's interrupted copy
    driver = browser
    with _studio(root) as base:
        _open(driver, base)
        _choose_phone_export(driver)
        _small(driver)
        _wait(driver, 60).until(lambda d: _q(d, '.box[data-node="convert"]').get_attribute("data-problems") == "1")
        assert not _q(driver, "#submit").is_enabled()
        _select(driver, "convert")
        error = _q(driver, '#params .field[data-field="skip_invalid"] .field-error')
        assert "IMG_0100.jpg" in error.text and "Skip unreadable images" in error.text
        assert _q(driver, '#params .field[data-field="skip_invalid"] > label').text == "Skip unreadable images"
        _q(driver, '#params [name="skip_invalid"]').click()
        _wait(driver, 60).until(lambda d: _q(d, "#submit").is_enabled())
        assert not _all(driver, "[aria-invalid='true']")


# --- (c) the file browser -----------------------------------------------------------------------------------------


def test_the_file_browser_offers_the_class_folders_preselects_nothing_and_explains_an_empty_root(
    studio, browser, tmp_path
):
    driver = browser
    _open(driver, studio)
    _select(driver, "convert")
    _q(driver, '#params .field[data-field="source"] .browse').click()
    _wait(driver).until(lambda d: _all(d, "#files-list li"))
    rows = {r.get_attribute("data-path"): r for r in _all(driver, "#files-list li")}
    assert set(rows) == {PHONE_EXPORT, "notes"}
    assert rows[PHONE_EXPORT].get_attribute("data-kind") == "class folders"
    assert "class folders" in rows[PHONE_EXPORT].text and "24 images, 3 classes" in rows[PHONE_EXPORT].text
    assert rows["notes"].get_attribute("data-kind") == "folder"
    # nothing is chosen until the user chooses: no row marked, the field still empty
    assert not _all(
        driver, "#files-list [aria-selected='true'], #files-list [aria-checked='true'], #files-list .selected"
    )
    assert _q(driver, '#params [name="source"]').get_attribute("value") == ""
    # a folder opens; one with nothing to convert says so; the breadcrumb goes back
    rows["notes"].find_element("css selector", ".open").click()
    _wait(driver).until(lambda d: _text(d, "#files-message") not in ("", "Reading…"))
    assert not _all(driver, "#files-list li")
    assert _q(driver, "#files-crumbs").text.replace("\n", " ").endswith("notes")
    _q(driver, "#files-up").click()
    _wait(driver).until(lambda d: _all(d, f'#files-list li[data-path="{PHONE_EXPORT}"]'))
    _q(driver, f'#files-list li[data-path="{PHONE_EXPORT}"] .choose').click()
    assert _q(driver, '#params [name="source"]').get_attribute("value") == PHONE_EXPORT

    # an empty root: the browser explains why there is nothing to choose
    (tmp_path / "empty-root").mkdir()
    with _studio(tmp_path / "empty-root") as empty:
        _open(driver, empty)
        _q(driver, "#choose-images").click()
        _wait(driver).until(lambda d: _text(d, "#files-message") not in ("", "Reading…"))
        assert not _all(driver, "#files-list li")


# --- (h) the layout -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_no_horizontal_scroll(studio, browser, size):
    driver = browser
    _viewport(driver, *size)
    _open(driver, studio)
    _no_horizontal_scroll(driver)
    parts = (("header", "header.top"), ("palette", ".palette"), ("canvas", "#canvas"), ("panel", ".panel"))
    grid = {name: _q(driver, css).rect for name, css in (*parts, ("runbar", ".runbar"))}
    assert grid["palette"]["x"] < grid["canvas"]["x"] < grid["panel"]["x"]
    assert grid["header"]["y"] < grid["canvas"]["y"] < grid["runbar"]["y"]
    assert grid["runbar"]["y"] + grid["runbar"]["height"] <= size[1] + 1
    _q(driver, "#compare-models").click()
    _select(driver, "train")
    _no_horizontal_scroll(driver)
    _q(driver, "#view-runs-tab").click()
    _no_horizontal_scroll(driver)


# --- (d) (e) (i) a compared run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared_run(studio):
    """The phone-style journey on the page: choose the folder, Compare two models, submit; both trains finish."""
    driver = _chrome()
    try:
        _open(driver, studio)
        _choose_phone_export(driver)
        _q(driver, "#compare-models").click()
        _small(driver, trains=("train", "train-2"), models=("resnet", "densenet"), epochs="2")
        run_id = _submit(driver)
        _wait(driver, 60).until(lambda d: "batch" in _text(d, "#run-progress-text") or _run_status(d) != "queued")
        status = _wait_status(driver, ("finished", "failed"), timeout=600)
        assert status == "finished", _text(driver, "#run-note")
        yield run_id
    finally:
        driver.quit()


@trains
def test_the_phone_style_journey_trains_two_models_and_compares_them(studio, compared_run, browser):
    driver = browser
    _open(driver, studio, f"run={compared_run}")
    assert _run_status(driver) == "finished"
    statuses = _statuses(driver)
    default = ["convert", "split", "transform", "resnet", "train", "score", "evaluate"]
    assert set(statuses) == {*default, "densenet", "train-2", "score-2", "evaluate-2"}
    assert set(statuses.values()) == {"done"}, statuses
    assert _q(driver, '.box[data-node="train"] .status-text').text == "done"
    # the run's curves: per batch and per epoch, on real axes, for both trains
    assert len(_all(driver, "#chart-batches .u-series")) >= 3  # x, train, train-2
    assert "train-2: val acc" in _q(driver, "#chart-epochs .u-legend").text

    # Evaluate's output: the tabs, the overview table, the confusion matrix with counts
    _q(driver, '.box[data-node="evaluate"] .box-title').click()
    tabs = _wait(driver).until(lambda d: _texts(d, "#output-body [role='tab']"))
    assert tabs == ["Overview", "Confusion matrix", "Errors", "Calibration", "Explanations"]
    overview = _q(driver, "#metrics-overview").text
    assert "Accuracy" in overview and "Macro F1" in overview and "Macro precision" in overview
    _q(driver, "#output-body [data-tab='confusion']").click()
    cells = _texts(driver, "#output-body table.confusion td.cell")
    assert len(cells) == 9 and sum(int(c) for c in cells) == 3  # 3 classes; the 3 validation images
    _q(driver, "#output-body [data-tab='errors']").click()
    _q(driver, "#output-body [data-tab='calibration']").click()
    assert "calibration error" in _q(driver, "#output-body").text.lower()
    assert "{" not in _q(driver, "#output-body").text  # never a raw JSON dump
    _no_horizontal_scroll(driver)

    # Convert's output: class counts and thumbnails that load
    _q(driver, '.box[data-node="convert"] .box-title').click()
    _wait(driver).until(lambda d: len(_all(d, "#output-body .thumb img")) > 0)
    assert "24 images, 3 classes" in _q(driver, "#output-body").text
    image = _q(driver, "#output-body .thumb img")
    _wait(driver).until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
    # the model box's card, the scores table
    _q(driver, '.box[data-node="train-2"] .box-title').click()
    _wait(driver).until(lambda d: "densenet121" in _q(d, "#output-body").text)
    _q(driver, '.box[data-node="score"] .box-title').click()
    _wait(driver).until(lambda d: _all(d, "#output-body table.sticky tbody tr"))
    assert len(_all(driver, "#output-body table.sticky tbody tr")) == 3

    # the Runs view: the run's two trains, ticked and compared (curves overlaid, parameters side by side)
    _q(driver, "#view-runs-tab").click()
    _wait(driver).until(lambda d: _all(d, f'#runs-body tr[data-run="{compared_run}"]'))
    rows = _all(driver, f'#runs-body tr[data-run="{compared_run}"]')
    assert [r.get_attribute("data-train") for r in rows] == ["train", "train-2"]
    assert "resnet18" in rows[0].text and "densenet121" in rows[1].text and "%" in rows[0].text
    assert not _q(driver, "#compare").is_enabled()
    for row in rows:
        row.find_element("css selector", "input[type=checkbox]").click()
    _q(driver, "#compare").click()
    table = _wait(driver).until(lambda d: _all(d, "#comparison-params"))[0]
    assert f"#{compared_run} train" in table.text and f"#{compared_run} train-2" in table.text
    assert "Best validation accuracy" in table.text and "Learning rate" in table.text
    for chart in ("#compare-acc", "#compare-loss"):
        assert len(_all(driver, f"{chart} .u-series")) == 3  # x and the two trains
        assert _all(driver, f"{chart} .u-axis")  # real axes
    _no_horizontal_scroll(driver)


@trains
def test_try_it_shows_the_image_and_the_top_classes(studio, compared_run, browser, tmp_path):
    driver = browser
    _open(driver, studio, "")  # no run selected: Try it says to select a finished run
    try_tab = _q(driver, "#tab-try")
    assert not try_tab.is_enabled() and "finished run" in try_tab.get_attribute("title")
    _open(driver, studio, f"run={compared_run}")
    _wait(driver).until(lambda d: _q(d, "#tab-try").is_enabled())
    _q(driver, "#tab-try").click()
    assert [o.text for o in _all(driver, "#try-node option")] == ["train", "train-2"]
    image = tmp_path / "try.png"
    noise(32, 32, seed=3).save(image)
    _q(driver, "#try-file").send_keys(str(image))
    _wait(driver, 60).until(lambda d: _all(d, "#try-result .bar-row"))
    preview = _q(driver, "#try-preview img")
    assert preview.get_attribute("src").startswith("blob:")
    rows = _all(driver, "#try-result .bar-row")
    assert len(rows) == 3 and {r.find_element("css selector", ".bar-label").text for r in rows} == set(CLASSES)
    assert all(r.find_element("css selector", ".bar-value").text.endswith("%") for r in rows)
    assert _q(driver, "#try-result .label").text in CLASSES
    # a file that is no image: the server's message, as text
    text = tmp_path / "not-an-image.png"
    text.write_text("hello")
    _q(driver, "#try-file").send_keys(str(text))
    _wait(driver, 60).until(lambda d: _q(d, "#try-message").get_attribute("data-kind") == "error")
    message = _text(driver, "#try-message")
    assert message and "[object" not in message and "{" not in message


@trains
def test_screenshots(studio, compared_run, browser):
    if os.environ.get("IMGTRAIN_SCREENSHOTS") != "1":
        pytest.skip("IMGTRAIN_SCREENSHOTS=1 writes docs/studio-*.png")
    driver = browser
    for width, height in ((1280, 800), (1920, 1080)):
        _viewport(driver, width, height)
        _open(driver, studio, f"run={compared_run}")
        _q(driver, '.box[data-node="evaluate"] .box-title').click()
        _wait(driver).until(lambda d: _all(d, "#metrics-overview"))
        _q(driver, "#output-body [data-tab='confusion']").click()
        time.sleep(0.5)  # the charts settle to their width
        driver.save_screenshot(str(DOCS / f"studio-{width}x{height}.png"))


# --- (f) (g) a long run: reload, Stop, Resume ---------------------------------------------------------------------


def _start_long_run(driver, studio: str, **train: str) -> int:
    _open(driver, studio, "")
    _choose_phone_export(driver)
    _small(driver, **{"epochs": str(LONG_EPOCHS), "patience": str(LONG_EPOCHS), **train})
    run_id = _submit(driver)
    _wait(driver, 120).until(lambda d: "batch" in _text(d, "#run-progress-text"))
    return run_id


def _stop(driver) -> None:
    _wait(driver).until(lambda d: _q(d, "#stop").is_enabled())
    _q(driver, "#stop").click()
    _wait_status(driver, ("stopped",), timeout=120)


@trains
def test_a_reload_reattaches_to_the_running_run_and_shows_its_parameters(studio, browser):
    driver = browser
    run_id = _start_long_run(driver, studio, learning_rate="0.005", seed="7")
    _visit(driver, studio + "/")  # a fresh visit (a bookmark): no run named in the address
    assert f"run #{run_id}" in _text(driver, "#run-state")
    assert _run_status(driver) in ("running", "queued")
    assert _q(driver, '.box[data-node="train"]').get_attribute("data-status") in ("running", "queued")
    _select(driver, "train")
    # the run's own values, not the defaults
    assert _q(driver, '#params [name="epochs"]').get_attribute("value") == str(LONG_EPOCHS)
    assert _q(driver, '#params [name="learning_rate"]').get_attribute("value") == "0.005"
    assert _q(driver, '#params [name="seed"]').get_attribute("value") == "7"
    _select(driver, "resnet")
    assert not _q(driver, '#params [name="pretrained"]').is_selected()
    assert _q(driver, '.box[data-node="convert"] .box-source').text == f"source: {PHONE_EXPORT}"
    # and it follows the run live: the box's progress moves on
    _wait(driver, 60).until(lambda d: "batch" in _text(d, "#run-progress-text"))
    _stop(driver)  # the next tests find the studio idle


@trains
def test_stop_shows_stopped_resume_continues_and_resume_finishes(studio, browser):
    driver = browser
    run_id = _start_long_run(driver, studio, epochs="8", patience="8")
    assert "ETA" in _q(driver, "#run-eta").text and "images/s" in _q(driver, "#run-speed").text
    _stop(driver)
    note = _q(driver, "#run-note")
    assert note.text == "stopped — Resume continues"
    assert note.get_attribute("data-kind") == "info"  # not an error
    assert not _q(driver, "#run-error").is_displayed()
    assert not _all(driver, '.box[data-status="failed"]')
    assert _q(driver, "#resume").is_enabled() and not _q(driver, "#stop").is_enabled()
    _q(driver, "#resume").click()
    assert _wait_status(driver, ("finished", "failed"), timeout=600) == "finished"
    assert f"run #{run_id}" in _text(driver, "#run-state")
    # a resumed run does what was left: boxes whose output was there are skipped
    assert set(_statuses(driver).values()) <= {"done", "skipped"}
    assert _q(driver, '.box[data-node="train"]').get_attribute("data-status") == "done"
    assert _text(driver, "#run-note") == ""


@trains
def test_a_sweep_box_shows_its_trials_table_and_curves_at_1280x800(studio, browser):
    from imgtrain.studio.graph import default_graph

    request = default_graph(PHONE_EXPORT)
    for node in request["nodes"]:
        if node["id"] == "train":  # two trials of one epoch, over the learning rate
            node.update(module="sweep", params={"trials": 2, "search": "learning_rate", "epochs": 1, "batch_size": 4})
        elif node["id"] == "resnet":
            node["params"] = {"model_name": "resnet18", "pretrained": False}
        elif node["id"] == "transform":
            node["params"] = {"size": 32, "crop_size": 32}
    post = urllib.request.Request(
        f"{studio}/api/runs",
        data=json.dumps(request).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    run_id = json.loads(urllib.request.urlopen(post, timeout=30).read())["id"]
    driver = browser
    _open(driver, studio, f"run={run_id}")
    assert _wait_status(driver, ("finished", "failed"), timeout=600) == "finished"
    _select(driver, "train")
    _q(driver, "#tab-output").click()
    rows = _wait(driver, 60).until(lambda d: _all(d, "#output-body table.sweep-trials tbody tr"))
    assert [r.get_attribute("data-trial") for r in rows] == ["0", "1"]
    headers = _texts(driver, "#output-body table.sweep-trials thead th")
    assert headers[:5] == ["trial", "state", "val loss", "top-1", "Learning rate"]
    best = _all(driver, "#output-body table.sweep-trials tr.best")
    assert len(best) == 1 and best[0].text.startswith("★")
    assert "2 trials" in _text(driver, "#output-body .summary") and "best: trial" in _text(driver, "#output-body")
    legend = _wait(driver).until(lambda d: _q(d, "#output-body .sweep-curves .u-legend").text)
    assert "trial 0" in legend and "trial 1" in legend and "(best)" in legend
    assert "The best trial's model" in _q(driver, "#output-body").text
    assert _q(driver, "#output-body .downloads a").get_attribute("href").endswith("download/model?node=train")
    _no_horizontal_scroll(driver)
