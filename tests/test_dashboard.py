"""The dashboard in a real browser (Debian's headless Chromium, driven through chromium-driver by
Selenium) against `storetwin dashboard` replaying a real runtime run of tiny_pick whose charges are
all flagged for review (``runtime.review_below=1.01``): the page signs in and loads, a cart update
is on the page within a second of being published, and approving the flagged receipt changes it on
the page and in the API."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.cli import main
from harness.servers import free_port

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TOKEN = "operator-token-for-the-browser-test"
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="Debian's chromium and chromium-driver (make installs them)")


@pytest.fixture(scope="module")
def flagged_run(recorded, tmp_path_factory) -> Path:
    run, _ = recorded
    out = tmp_path_factory.mktemp("dash") / "tiny_pick"
    assert main(["run", "scenario=tiny_pick", f"recorded={run}", "pacing=asfast", "runtime.review_below=1.01",
                 f"out={out}"]) == 0
    return out


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


def _wait(what, timeout_s: float, every_s: float = 0.05):
    end = time.time() + timeout_s
    while time.time() < end:
        v = what()
        if v:
            return v
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s} s")


def test_the_dashboard_shows_updates_within_a_second_and_settles_a_flagged_receipt(flagged_run, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    port = free_port()
    env = {**os.environ, "STORETWIN_TOKENS": f"ana:operator:{TOKEN}"}
    dash = subprocess.Popen([sys.executable, "-m", "harness.cli", "dashboard", f"run={flagged_run}", f"port={port}",
                             "speed=2", "duration_s=120"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _up(url) or dash.poll() is not None, 20)
        assert dash.poll() is None, dash.stdout.read()
        browser.get(url + "/")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "signin").click()
        _wait(lambda: browser.find_element(By.ID, "conn").text == "live", 10)
        assert "tiny_unit" in browser.find_element(By.ID, "store-name").text
        # a cart update: on the page within a second of the server publishing it
        # (read and clicked in one script each: the page redraws its rows as updates come)
        published, shown = _wait(lambda: browser.execute_script(
            "const r = document.getElementById('cart-tess'); return r && [r.dataset.wall, r.dataset.shownWall];"), 60)
        assert 0 <= float(shown) - float(published) < 1.0, (published, shown)
        # the flagged receipt reaches the queue when the replay passes the exit; approve it on the page
        rid = _wait(lambda: browser.execute_script(
            "const li = document.querySelector('#queue li[data-id]'); if (li) li.click(); return li && li.dataset.id;"), 60)
        _wait(lambda: browser.execute_script(
            f"const b = document.getElementById('approve-{rid}'); if (b) b.click(); return !!b;"), 5)
        _wait(lambda: browser.execute_script(
            f"const r = document.getElementById('receipt-{rid}'); return r && r.dataset.status === 'reviewed';"), 5)
        _wait(lambda: not browser.execute_script("return document.querySelector('#queue li[data-id]');"), 5)  # emptied
        api = httpx.get(f"{url}/api/receipts/{rid}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert api["status"] == "reviewed" and [(r["action"], r["by"]) for r in api["reviews"]] == [("approve", "ana")]
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"
                  and not e["message"].startswith(f"{url}/ - ")]     # the sign-in page itself comes with a 401
        assert not errors, errors
    finally:
        dash.terminate()
        out, _ = dash.communicate(timeout=20)
    assert "Traceback" not in out, out
    assert (flagged_run / "review" / "events.sqlite").is_file(), "reviews kept beside the run"


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
