"""Screenshots of dashboard pages in headless Chromium, for the README and for looking at a
change where a user sees it: `python benchmarks/screenshots.py --store DIR OUT.png=URL_PATH ...`
(URL_PATH like `/?run=ID` (Live) or `/learn_methods`; `#tab` after it clicks that tab first;
`!SECONDS` after it presses Run on the page and shoots that many seconds later, mid-run)."""

from __future__ import annotations

import argparse

from bench_dashboard import CHROMIUM_ARGS
from bench_workers import server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--width", type=int, default=1500)
    ap.add_argument("--height", type=int, default=1800,
                    help="of the window: Streamlit scrolls inside it, so make it tall enough")
    ap.add_argument("--wait", type=float, default=6.0, help="seconds to let charts settle")
    ap.add_argument("shots", nargs="+", help="OUT.png=URL_PATH[#tab name]")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with server(args.store) as (url, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=CHROMIUM_ARGS)
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
                page.screenshot(path=out, timeout=120_000)
                print(out)
            browser.close()


if __name__ == "__main__":
    main()
