"""Worker benchmarks (issue 18); prints measured numbers next to their targets, side by side.

1. Watched / unwatched: wall time of the default Live run (gmp, 20 digits epochs, dense start
   cached) trained by the dashboard's worker with Chromium polling the Live page, vs the same
   config with no browser open; interleaved (target ratio <= 1.1; was ~10 with threads in the
   server).
2. UI latency while a run trains: page switch (click -> the page's content drawn) and history
   slider (key press -> the chart redrawn at the new step), p50 and p95 (target p95 <= 500 ms).
3. Idle server CPU with one tab open: the shipped config (no file watcher) vs Streamlit's default
   watcher, on the app in --watch-root (a checkout with its .venv shows the inotify cost).

    python benchmarks/bench_workers.py [--trials 3] [--samples 15] [--watch-root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_dashboard import CHROMIUM_ARGS, LOSS_POINTS, server, wait_idle

from pruneviz.config import SessionConfig
from pruneviz.session import run_session
from pruneviz.store import Store
from pruneviz.workers import stop_workers, submit

ROOT = Path(__file__).resolve().parents[1]
HISTORY_TITLE = """() => {
  for (const t of document.querySelectorAll('.gtitle')) {
    if (t.textContent.startsWith('Per-layer sparsity at step')) return t.textContent;
  }
  return '';
}"""


def _wait_worker(store: Store, timeout: float = 120) -> None:
    """Until the dashboard's warm worker has registered and is idle (warmed up)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        w = store.workers()
        if len(w) and w.run_id.isna().all():
            time.sleep(8)        # its warm-up (imports, dataset) runs after it registers
            return
        time.sleep(0.2)


def _run_wall(store: Store, run_id: str) -> float:
    return float(store.run(run_id)["summary"]["wall_s"])


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def bench_watched(trials: int, samples: int) -> dict:
    from playwright.sync_api import sync_playwright

    out: dict = {"watched": [], "unwatched": [], "switch": [], "slider": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        run_session(SessionConfig(method="dense", epochs=1, device="cpu"), store)  # dense cached
        with server(tmp) as (url, _), sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url)
            run = page.get_by_role("button", name="Run", exact=True)
            run.wait_for(timeout=300_000)
            _wait_worker(store)
            config = None
            for _ in range(trials):      # 0 with --latency-only
                # watched: the Live page open, polling, as a user watches the run
                page.goto(url)
                run.wait_for(timeout=120_000)
                page.wait_for_timeout(1000)
                before = set(store.runs().run_id)
                run.click()
                page.wait_for_timeout(500)
                run_id = next(iter(set(store.runs().run_id) - before))
                wait_idle(store)
                out["watched"].append(_run_wall(store, run_id))
                config = store.run(run_id)["config"]
                # unwatched: the same config, no page open anywhere
                page.goto("about:blank")
                page.wait_for_timeout(1000)
                run_id = submit(store, config)
                wait_idle(store)
                out["unwatched"].append(_run_wall(store, run_id))
                print(f"  watched {out['watched'][-1]:.2f} s, unwatched "
                      f"{out['unwatched'][-1]:.2f} s", file=sys.stderr, flush=True)
            # UI latency while a long run trains
            page.goto(url)
            run.wait_for(timeout=120_000)
            page.get_by_label("epochs", exact=True).fill("500")
            page.get_by_label("epochs", exact=True).press("Enter")
            page.wait_for_timeout(800)
            run.click()
            deadline = time.time() + 120
            while page.evaluate(LOSS_POINTS) < 20 and time.time() < deadline:
                page.wait_for_timeout(200)
            for _ in range(samples):
                t = time.perf_counter()
                page.get_by_role("link", name="Runs").click()
                page.get_by_role("heading", name="Runs").wait_for(timeout=60_000)
                page.get_by_text("Run card").first.wait_for(timeout=60_000)
                out["switch"].append(time.perf_counter() - t)
                t = time.perf_counter()
                page.get_by_role("link", name="Live session").click()
                page.get_by_role("heading", name="Live session").wait_for(timeout=60_000)
                while page.evaluate(LOSS_POINTS) == 0:
                    page.wait_for_timeout(10)
                out["switch"].append(time.perf_counter() - t)
            page.reload()       # the history slider is drawn with the page: redraw it now
            run.wait_for(timeout=120_000)
            page.get_by_text("History").first.wait_for(timeout=60_000)
            thumb = page.locator("input[type=range][aria-label='Step']").last   # History's
            for _ in range(samples):
                title = page.evaluate(HISTORY_TITLE)
                thumb.focus()
                t = time.perf_counter()
                thumb.press("ArrowLeft")
                while page.evaluate(HISTORY_TITLE) in (title, "") and \
                        time.perf_counter() - t < 30:
                    page.wait_for_timeout(5)
                out["slider"].append(time.perf_counter() - t)
                page.wait_for_timeout(300)
            page.locator("button", has_text="Cancel").first.click()
            wait_idle(store)
            browser.close()
        stop_workers(store)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle_cpu(app_root: Path, seconds: float = 20) -> dict[str, float]:
    """CPU the server burns per wall second with one tab open and nothing running."""
    from playwright.sync_api import sync_playwright

    out = {}
    # Flags, not the checkout's config.toml, so any checkout compares the same two settings.
    for label, extra in (("shipped (no watcher, no post-run gc)",
                          ("--server.fileWatcherType", "none", "--runner.postScriptGC", "false")),
                         ("Streamlit's defaults", ("--server.fileWatcherType", "auto",
                                                   "--runner.postScriptGC", "true"))):
        with tempfile.TemporaryDirectory() as tmp, server(tmp, app_root, extra) as (url, proc), \
                sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            page.get_by_role("button", name="Run", exact=True).wait_for(timeout=300_000)
            page.wait_for_timeout(5000)
            before, t = _cpu_seconds(proc.pid), time.perf_counter()
            page.wait_for_timeout(seconds * 1000)
            out[label] = (_cpu_seconds(proc.pid) - before) / (time.perf_counter() - t)
            browser.close()
            stop_workers(Store(tmp))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--latency-only", action="store_true",
                    help="Only the UI latency while a run trains (2.): no watched/unwatched "
                         "trials, no idle CPU; for a before/after of a UI change.")
    ap.add_argument("--watch-root", type=Path, default=ROOT,
                    help="Checkout whose app the idle-CPU comparison serves (with its .venv).")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    r = bench_watched(0 if args.latency_only else args.trials, args.samples)
    if not args.latency_only:
        w, u = statistics.median(r["watched"]), statistics.median(r["unwatched"])
        print(f"[watched] default Live run (gmp, 20 epochs, dense cached), worker wall time: "
              f"watched {w:.2f} s ({', '.join(f'{v:.2f}' for v in r['watched'])}), "
              f"unwatched {u:.2f} s ({', '.join(f'{v:.2f}' for v in r['unwatched'])}); ratio "
              f"{w / u:.2f} (target <= 1.1)")
    for key, label, target in (("switch", "page switch -> content", 500),
                               ("slider", "history slider -> chart redrawn", 300)):
        v = r[key]
        print(f"[latency] {label} while a run trains: p50 {_pct(v, 0.5) * 1e3:.0f} ms, "
              f"p95 {_pct(v, 0.95) * 1e3:.0f} ms over {len(v)} (target p95 <= {target}, "
              f"issue 27)")
    print(f"load average {os.getloadavg()[0]:.1f} after the latency samples")
    if args.latency_only:
        return
    cpu = bench_idle_cpu(args.watch_root)
    print(f"[idle] server CPU with one idle tab open ({args.watch_root}): " + ", ".join(
        f"{k} {v * 100:.0f}% of a core" for k, v in cpu.items()))


if __name__ == "__main__":
    main()
