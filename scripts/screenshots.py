"""Screenshots of dashboard pages in headless Chromium, for the README and for looking at a
change where a user sees it: `python scripts/screenshots.py --store DIR OUT.png=URL_PATH ...`
(URL_PATH like `/?run=ID` (Live) or `/learn_methods`; `#tab` after it clicks that tab first;
`!SECONDS` after it presses Run on the page and shoots that many seconds later, mid-run)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--width", type=int, default=1500)
    ap.add_argument("--height", type=int, default=1800)
    ap.add_argument("--wait", type=float, default=6.0, help="seconds to let charts settle")
    ap.add_argument("--full", action="store_true", help="the whole page, not the viewport")
    ap.add_argument("shots", nargs="+", help="OUT.png=URL_PATH[#tab name]")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = _free_port()
    env = {**os.environ, "PRUNEVIZ_STORE": args.store, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
         str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            for shot in args.shots:
                out, _, target = shot.partition("=")
                target, _, run_after = target.partition("!")
                path, _, tab = target.partition("#")
                page.goto(url + path)
                page.wait_for_selector("h1", timeout=120_000)
                if tab:
                    page.get_by_role("tab", name=tab).click()
                if run_after:
                    run = page.get_by_role("button", name="Run", exact=True)
                    run.wait_for(timeout=120_000)
                    page.wait_for_timeout(3000)
                    run.click()
                    page.wait_for_timeout(float(run_after) * 1000)
                else:
                    page.wait_for_timeout(args.wait * 1000)
                page.screenshot(path=out, full_page=args.full, timeout=120_000)
                print(out)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
