"""The serve page in headless Chromium: several images picked at once are each classified.

Needs Debian's chromium and chromium-driver, as tests/test_browser.py does (skipped without them, unless
IMGTRAIN_REQUIRE_BROWSER=1, where it fails); its server and browser are started the same way.
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
def served(trained_model):
    """`imgtrain serve` of the trained model on a free port: its URL."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "imgtrain", "serve", str(trained_model[0]), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(1200):  # 120 s: serve started in 5 s, 13 s on a loaded machine (tests/test_browser.py)
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


@pytest.fixture
def chrome():
    """Headless Chromium through chromedriver, or a skip (a failure in CI) when they are not installed."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if os.environ.get("IMGTRAIN_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium / chromedriver missing: apt-get install chromium chromium-driver")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--disable-background-networking")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_three_images_picked_at_once_are_all_classified(served, trained_model, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    model_dir, valid = trained_model
    directory = imgtrain.ImageDirectory.open(valid)
    images = [directory.root / r.path for r in list(directory)[:3]]
    model = imgtrain.load_model(model_dir)
    expected = {image.name: model.predict(image)["label"] for image in images}

    chrome.get(served)
    WebDriverWait(chrome, 30).until(expected_conditions.text_to_be_present_in_element((By.ID, "model"), "classes"))
    pick = chrome.find_element(By.ID, "pick")
    chrome.execute_script("arguments[0].hidden = false", pick)
    pick.send_keys("\n".join(str(image) for image in images))

    def labels(driver) -> dict[str, str] | bool:
        shown = {
            box.find_element(By.TAG_NAME, "img").get_attribute("alt"): box.find_element(By.CLASS_NAME, "label").text
            for box in driver.find_elements(By.CSS_SELECTOR, ".result")
            if box.find_elements(By.CLASS_NAME, "label")
        }
        return shown if len(shown) == len(images) else False

    assert WebDriverWait(chrome, 60).until(labels) == expected
    assert len(chrome.find_elements(By.CSS_SELECTOR, ".result")) == 3
    assert not chrome.find_elements(By.CSS_SELECTOR, ".result .error")
