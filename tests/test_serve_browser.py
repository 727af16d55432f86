"""A person at the page: `rcahook serve` as a real process on a loopback port, Debian's
headless Chromium (through chromium-driver and Selenium; nothing downloaded), the
investigation's page with its five suspects, a click on "root cause", and the verdict read
back from the store `rcahook feedback` uses."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from serveapp import indexed_demo, verdicts_in_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, data: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture
def chromium():
    """Debian's chromium and chromium-driver; missing is a failure (CI installs them), not a skip."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("this test needs Debian's chromium and chromium-driver: "
                    "apt-get install chromium chromium-driver (.ci/run does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(driver))
    yield browser
    browser.quit()


@pytest.fixture
def server(tmp_path):
    demo = indexed_demo(tmp_path / "repo")
    port = _free_port()
    with open(tmp_path / "serve.log", "w") as log:  # the service writes to its own copy of the file
        proc = subprocess.Popen([sys.executable, "-m", "rcahook", "serve", "--repo", f"demo={demo.path}",
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if _request(f"{base}/api/health")["status"] == "ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"rcahook serve did not come up: {(tmp_path / 'serve.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield base, demo
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_a_responder_marks_the_root_cause_on_the_page(server, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, demo = server
    created = _request(f"{base}/api/investigations", demo.incident)
    chromium.get(created["url"])
    suspects = chromium.find_elements(By.CSS_SELECTOR, "article.suspect")
    assert len(suspects) == 5
    assert [s.get_attribute("data-sha") for s in suspects] == [s["sha"] for s in created["suggestions"]]
    first = suspects[0]
    assert first.get_attribute("data-sha") == demo.culprit
    assert "http: never retry non-idempotent methods" in first.text
    assert chromium.find_element(By.CSS_SELECTOR, "section.timeline svg").is_displayed()

    first.find_element(By.CSS_SELECTOR, "button.feedback.root").click()
    status = first.find_element(By.CSS_SELECTOR, ".status")
    WebDriverWait(chromium, 20).until(ec.text_to_be_present_in_element_attribute(
        (By.CSS_SELECTOR, f"article[data-sha='{demo.culprit}'] .status"), "textContent", "recorded"))
    assert status.text == "recorded: root cause"

    stored = verdicts_in_store(demo.state, created["id"])
    assert [(v.verdict, v.sha, v.rank) for v in stored] == [("root_cause", demo.culprit, 1)]
    # the CSP let the page's own script run and nothing else was blocked
    problems = [e["message"] for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []
    # a reload shows the verdict recorded
    chromium.refresh()
    assert "Recorded root cause" in chromium.find_element(By.ID, "headline").text
