"""A picture of the dashboard during a recorded run (docs/img/dashboard.png in the README).

    python benchmarks/dashboard_shot.py --run runs/<suite>/busy_store --at 95 --out docs/img/dashboard.png

Starts ``storetwin dashboard`` on the run, opens it in Debian's headless Chromium (Selenium and
chromium-driver), signs in, moves the time slider to ``--at`` seconds, opens the first receipt in the
review queue and saves a screenshot.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from harness.servers import free_port

TOKEN = "dashboard-shot-operator-token"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a scenario's run folder (with out/events.sqlite)")
    ap.add_argument("--at", type=float, default=60.0, help="seconds into the run")
    ap.add_argument("--out", default="docs/img/dashboard.png")
    a = ap.parse_args()
    port = free_port()
    env = {**os.environ, "STORETWIN_TOKENS": f"ana:operator:{TOKEN}"}
    dash = subprocess.Popen([sys.executable, "-m", "harness.cli", "dashboard", f"run={a.run}", f"port={port}",
                             f"start_s={a.at}", "speed=1", "duration_s=120"], env=env)
    url = f"http://127.0.0.1:{port}"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1320,1000", "--hide-scrollbars"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        d.get(url + "/")
        d.find_element(By.ID, "token").send_keys(TOKEN)
        d.find_element(By.ID, "signin").click()
        time.sleep(3.0)      # the stream's snapshot, a few tracks' trails
        d.execute_script("const li = document.querySelector('#queue li[data-id]'); if (li) li.click();")
        time.sleep(1.5)
        d.save_screenshot(a.out)
        print(f"wrote {a.out}")
    finally:
        d.quit()
        dash.terminate()
        dash.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
