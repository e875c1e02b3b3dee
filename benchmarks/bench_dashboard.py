"""Dashboard benchmarks (issue 7); prints measured numbers next to their targets.

1. Click Run -> first live chart, embedded default (tiny_cnn on digits, dense baseline cached), in
   Chromium against `streamlit run app.py` (target <= 2 s).
2. One poll/redraw of a run with 10k recorded steps: the live view's store reads + figure build +
   the JSON streamlit sends (target <= 150 ms), side by side with a 1k-step run; and each
   method family's internals view (load + panels + JSON) on a real ResNet-20 run with 40
   epochs of per-filter/per-layer records (the records that grow with epochs, not steps).
3. A sweep of 6 methods x 3 rates on digits through one worker process, with the thread setting
   a dashboard gives its workers (target <= 60 s on 2 cores).
4. The server's resident memory after 20 finished runs and during one live run (target <= 2.5 GB,
   growth <= 200 MB across the 20 runs).

    python benchmarks/bench_dashboard.py [--skip-browser]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import plotly.io as pio
import torch

from pruneviz import views
from pruneviz.config import SessionConfig
from pruneviz.methods import load_all
from pruneviz.records import LayerRow, Row, Scalar
from pruneviz.session import run_session
from pruneviz.store import ACTIVE, Store
from pruneviz.ui.live import fetch_live, live_figures
from pruneviz.workers import grid, spawn_worker, stop_workers, submit_grid

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HREF = "() => location.href"     # page.url can miss streamlit's history.replaceState updates
LOSS_POINTS = """() => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const t = (gd._fullData || []).find(t => t.name === 'train loss');
    if (t) return t.x.length;
  }
  return 0;
}"""


def server_threads() -> int:
    """The torch threads a dashboard's workers use on this CPU (workers.spawn_worker)."""
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))


# -- 2. poll/redraw ------------------------------------------------------------------------------
def synthesize(store: Store, steps: int, layers: int = 20, steps_per_epoch: int = 100) -> str:
    """A finished-looking run with `steps` recorded steps, written the way a session writes."""
    run_id = store.create_run(SessionConfig(method="gmp", epochs=steps // steps_per_epoch))
    store.start_run(run_id, steps)
    every = max(1, steps // 100)
    for start in range(0, steps, 1000):
        records = []
        for s in range(start, min(start + 1000, steps)):
            e = s // steps_per_epoch
            records += [Scalar(s, e, k, v) for k, v in (
                ("loss", 2.0 / (1 + s / 500)), ("lr", 0.01), ("step_time", 0.01),
                ("wall_time", s * 0.01), ("train_accuracy", min(0.99, s / steps)))]
            if s % every == 0:
                records += [Scalar(s, e, "sparsity", 0.8 * s / steps),
                            Scalar(s, e, "target_sparsity", 0.8 * s / steps)]
                records += [LayerRow(s, e, f"layer{i}.conv", "sparsity", 0.8 * s / steps)
                            for i in range(layers)]
            if (s + 1) % steps_per_epoch == 0:
                records += [Scalar(s, e, "test_accuracy", 0.9), Scalar(s, e, "test_loss", 0.3)]
            if s % 50 == 0:
                records.append(Row(s, e, "prune_steps", {"t": s, "target_density": 0.5,
                                                         "achieved_density": 0.5, "pruned": 10}))
        store.write(run_id, records, step=min(start + 1000, steps) - 1)
    store.finish_run(run_id, "completed", summary={})
    return run_id


def redraw(store: Store, run_id: str) -> float:
    t = time.perf_counter()
    figs = live_figures(fetch_live(store, run_id))
    for fig in figs.values():            # what st.plotly_chart does with a Figure
        pio.to_json(fig.to_dict(), validate=False)
    return time.perf_counter() - t


def bench_redraw(repeats: int = 15) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        big, small = synthesize(store, 10_000), synthesize(store, 1_000)
        redraw(store, big), redraw(store, small)          # warm-up
        times: dict[str, list[float]] = {big: [], small: []}
        for _ in range(repeats):                          # interleaved
            for run_id in (big, small):
                times[run_id].append(redraw(store, run_id))
        return statistics.median(times[big]), statistics.median(times[small])


def internals_redraw(store: Store, run_id: str) -> float:
    t = time.perf_counter()
    run = store.run(run_id)
    module = views.view(run["config"].method)
    frames = module.load(store, run_id)
    for panel in module.panels(frames, run, module.steps(frames)[-1]):
        pio.to_json(panel.figure.to_dict(), validate=False)
    return time.perf_counter() - t


def bench_internals(epochs: int = 40, repeats: int = 7) -> dict[str, float]:
    """Median internals redraw per family on ResNet-20 runs (digits, 2 steps per epoch)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        ids = {}
        for method in ("pgmpf", "pgp", "slr", "fggp"):
            config = SessionConfig(method=method, model="resnet20", epochs=epochs, rate=0.5,
                                   max_steps_per_epoch=2, eval_limit=128, dense_epochs=1,
                                   device="cpu")
            ids[method] = run_session(config, store)["run_id"]
        for run_id in ids.values():
            internals_redraw(store, run_id)               # warm-up
        times: dict[str, list[float]] = {m: [] for m in ids}
        for _ in range(repeats):                          # interleaved
            for method, run_id in ids.items():
                times[method].append(internals_redraw(store, run_id))
        return {m: statistics.median(v) for m, v in times.items()}


# -- 3. sweep ------------------------------------------------------------------------------------
def bench_sweep(rates=(0.5, 0.8, 0.9)) -> tuple[list[str], float, float, int]:
    methods = [m for m in sorted(load_all()) if m != "dense"][:6]
    torch.set_num_threads(server_threads())
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        t = time.perf_counter()
        run_session(SessionConfig(method="dense", epochs=1, device="cpu"), store)
        dense = time.perf_counter() - t
        spawn_worker(store)
        time.sleep(15)                    # warmed up, as a dashboard's worker is
        t = time.perf_counter()
        _, ids = submit_grid(store, grid(SessionConfig(device="cpu"), methods, list(rates), [0]))
        while store.runs().query("run_id in @ids").status.isin(ACTIVE).any():
            time.sleep(0.1)
        wall = time.perf_counter() - t
        stop_workers(store)
        failed = int((store.runs().query("run_id in @ids").status != "completed").sum())
    return methods, wall, dense, failed


# -- 1 and 4: the real server --------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(500)


@contextmanager
def server(store_root: str, app_root: Path = ROOT, extra: tuple[str, ...] = ()):
    """`streamlit run app.py` from `app_root` (its .streamlit/config.toml applies) on a free
    local port, once it answers its health check; yields (url, process)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PRUNEVIZ_STORE": store_root, "PYTHONPATH": str(app_root)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false",
                             *extra],
                            cwd=app_root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def wait_idle(store: Store, timeout: float = 1800) -> None:
    """Until no run of the store is queued or running (or `timeout` seconds)."""
    deadline = time.time() + timeout
    while store.runs().status.isin(ACTIVE).any() and time.time() < deadline:
        time.sleep(0.2)


def bench_server(trials: int = 5, runs: int = 20) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        torch.set_num_threads(server_threads())
        run_session(SessionConfig(method="dense", epochs=1, device="cpu"), store)  # cache dense
        try:
            with server(tmp) as (url, proc), sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                page.goto(url)
                run = page.get_by_role("button", name="Run", exact=True)
                run.wait_for(timeout=300_000)
                latencies = []
                for _ in range(trials + 1):      # the first is the server's first session
                    wait_idle(store)
                    page.wait_for_timeout(1500)
                    old_url = page.evaluate(HREF)
                    t = time.perf_counter()
                    run.click()
                    while time.perf_counter() - t < 120:
                        url = page.evaluate(HREF)
                        if url != old_url and "run=" in url:
                            run_id = url.split("run=")[1].split("&")[0]
                            points = page.evaluate(LOSS_POINTS)
                            # The chart on screen is this run's (not the previous run's, still
                            # shown while the new one mounts) once the page names the run and
                            # the curve is no longer than what the store holds for it.
                            if 0 < points <= len(store.scalars(run_id, ["loss"])) and \
                                    page.get_by_text(run_id[-4:]).count():
                                latencies.append(time.perf_counter() - t)
                                break
                        page.wait_for_timeout(20)
                    # The default run may be over by now (2-3 s on a warm worker): then its
                    # Cancel is disabled and there is nothing to stop.
                    cancel = page.locator("button", has_text="Cancel").first
                    try:
                        cancel.click(timeout=3000)
                    except PlaywrightTimeout:
                        assert not cancel.is_enabled(), "Cancel is enabled but cannot be clicked"
                out["first_chart"], out["first_ever"] = latencies[1:], latencies[0]
                wait_idle(store)
                _set_number(page, "epochs", 2)
                wait_idle(store)
                out["rss_before"] = _rss_mb(proc.pid)
                for _ in range(runs):     # one click, one run: the next once it has ended
                    run.click()
                    page.wait_for_timeout(300)
                    wait_idle(store)
                    page.wait_for_timeout(2100)      # past the double-click window
                wait_idle(store)
                page.wait_for_timeout(3000)
                out["finished"] = int((store.runs().status == "completed").sum())
                out["rss_after"] = _rss_mb(proc.pid)
                _set_number(page, "epochs", 500)
                run.click()
                deadline = time.time() + 300
                while page.evaluate(LOSS_POINTS) < 50 and time.time() < deadline:
                    page.wait_for_timeout(500)
                out["rss_live"] = _rss_mb(proc.pid)
                page.locator("button", has_text="Cancel").first.click()
                wait_idle(store)
                browser.close()
        finally:
            stop_workers(store)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-browser", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, worker threads {server_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    big, small = bench_redraw()
    print(f"[redraw] one live poll/redraw, 10k-step run: {big * 1e3:.0f} ms server time "
          f"(target <= 150); 1k-step run {small * 1e3:.0f} ms; ratio {big / small:.2f}")
    for method, t in bench_internals().items():
        print(f"[redraw] {method} internals view, ResNet-20 run with 40 epochs of records: "
              f"{t * 1e3:.0f} ms server time (plus the live charts above; target <= 150 in all)")
    methods, wall, dense, failed = bench_sweep()
    print(f"[sweep] {len(methods)} methods x 3 rates on digits ({','.join(methods)}), "
          f"8 epochs each, one worker: {wall:.1f} s (target <= 60 for 6 x 3; "
          f"{wall / (3 * len(methods)):.2f} s per run), plus {dense:.1f} s for the dense "
          f"baseline once; {failed} not completed")
    if args.skip_browser:
        return
    s = bench_server()
    first = s["first_chart"]
    print(f"[first-chart] click Run -> first live chart in Chromium (tiny_cnn/digits, dense "
          f"cached): median {statistics.median(first):.2f} s over {len(first)} "
          f"({', '.join(f'{v:.2f}' for v in first)}; target <= 2); the server's very first "
          f"Run {s['first_ever']:.2f} s")
    print(f"[memory] server RSS (it trains nothing: workers do) after warm-up "
          f"{s['rss_before']:.0f} MB, after {s['finished']} "
          f"finished runs {s['rss_after']:.0f} MB (growth "
          f"{s['rss_after'] - s['rss_before']:+.0f} MB over the last 20; target <= 200), "
          f"with one live run {s['rss_live']:.0f} MB (target <= 2560)")


if __name__ == "__main__":
    main()
