"""The web page in a real browser: Debian's chromium through chromedriver (Selenium).

The server runs on 127.0.0.1 in a thread; the test uploads two images, waits for their
overlays, moves the threshold slider with the keyboard and checks that the decisions
change, and saves a screenshot under its temp folder (``ANOMALIGN_SCREENSHOT=PATH`` also
copies it there, e.g. ``docs/serve.png``). Without chromium it skips locally, and fails
in CI (``CI`` set), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from anomalign.service import ServedDetector, ServerThread, ServiceConfig, create_app

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _browser_paths() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
    )
    if browser and driver:
        return browser, driver
    message = "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message + "; .ci/run should have installed them")
    pytest.skip(message)


@pytest.fixture()
def browser():
    browser_path, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,960",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _decisions(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".card .decision")]


def test_page_uploads_shows_overlays_and_redecides_with_the_slider(
    browser, served: ServedDetector, test_images: list[Path], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    good = next(p for p in test_images if p.parent.name == "good")
    defect = next(p for p in reversed(test_images) if p.parent.name != "good")
    wait = WebDriverWait(browser, 60)
    with ServerThread(create_app([served], ServiceConfig(max_wait_ms=2))) as server:
        browser.get(server.url + "/")
        wait.until(lambda d: d.find_element(By.ID, "detector").get_attribute("value") == "synth")
        banner = browser.find_element(By.ID, "untrained")
        assert banner.is_displayed() and "UNTRAINED BACKBONE" in banner.text

        upload = browser.find_element(By.ID, "files")
        upload.send_keys(f"{good}\n{defect}")
        wait.until(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, ".card img.overlay")) == 2
                and all(
                    d.execute_script(
                        "return arguments[0].complete && arguments[0].naturalWidth", img
                    )
                    for img in d.find_elements(By.CSS_SELECTOR, ".card img.overlay")
                )
            )
        )
        at_bundle = _decisions(browser)
        assert set(at_bundle) <= {"ANOMALOUS", "normal"}
        assert "inspected" in browser.find_element(By.ID, "status").text

        slider = browser.find_element(By.ID, "threshold")
        slider.send_keys(Keys.HOME)  # lowest threshold: every image is anomalous
        wait.until(lambda d: _decisions(d) == ["ANOMALOUS", "ANOMALOUS"])
        low_value = browser.find_element(By.ID, "threshold-value").text
        slider.send_keys(Keys.END)  # highest threshold: every image is normal
        wait.until(lambda d: _decisions(d) == ["normal", "normal"])
        assert browser.find_element(By.ID, "threshold-value").text != low_value
        # the bundle holds its 4 normal scores: the FPR follows the slider
        assert browser.find_element(By.ID, "fpr").text == "FPR on 4 validation images: 0.0%"
        slider.send_keys(Keys.HOME)
        wait.until(lambda d: d.find_element(By.ID, "fpr").text.endswith(": 100.0%"))
        slider.send_keys(Keys.END)

        browser.find_element(By.ID, "reset").click()  # back to the bundle's threshold
        wait.until(lambda d: _decisions(d) == at_bundle)
        assert browser.find_element(By.ID, "fpr").text == "FPR on 4 validation images: 25.0%"
        shot = tmp_path / "serve.png"
        assert browser.save_screenshot(str(shot))
    with Image.open(shot) as image:
        assert image.size[0] >= 800
        target = os.environ.get("ANOMALIGN_SCREENSHOT")
        if target:
            image.convert("RGB").quantize(colors=128).save(target, optimize=True)
