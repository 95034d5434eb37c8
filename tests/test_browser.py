"""End to end in headless Chromium: `imgtrain serve`, the page, pick an image, read the label shown.

Needs Debian's chromium and chromium-driver (.ci/run installs them). Without them the test is
skipped, unless IMGTRAIN_REQUIRE_BROWSER=1 (set by CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import imgtrain

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(trained_model):
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "imgtrain", "serve", str(trained_model[0]), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(1200):  # 120 s or more: serve started in 5 s, 13 s on a loaded machine (measured)
            try:
                urllib.request.urlopen(url + "health", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"imgtrain serve exited: {process.stdout.read()}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _chrome():
    """Headless Chromium through chromedriver, or a skip (a failure in CI) when they are not installed."""
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
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))


def test_pick_an_image_on_the_page_and_see_its_label(server, trained_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    model_dir, valid = trained_model
    directory = imgtrain.ImageDirectory.open(valid)
    image = directory.root / list(directory)[0].path
    expected = imgtrain.load_model(model_dir).predict(image)["label"]

    driver = _chrome()
    try:
        driver.get(server)
        WebDriverWait(driver, 30).until(expected_conditions.text_to_be_present_in_element((By.ID, "model"), "classes"))
        pick = driver.find_element(By.ID, "pick")
        driver.execute_script("arguments[0].hidden = false", pick)
        pick.send_keys(str(image))
        label = WebDriverWait(driver, 60).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".result .label"))
        )
        assert label.text == expected
        bars = driver.find_elements(By.CSS_SELECTOR, ".result .row")
        assert len(bars) == 3  # the top classes, as bars
    finally:
        driver.quit()
