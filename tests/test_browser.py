"""End-to-end sessions in a real browser: Playwright drives Debian's Chromium against
`streamlit run app.py` (start a run, watch the live chart update, cancel, find it on Compare;
Compare's seed groups, shared links and overlay as drawn)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pruneviz.config import SessionConfig
from pruneviz.store import Store
from pruneviz.workers import stop_workers
from tests.helpers import recorded_run

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The last step the live loss curve draws, as the browser has it (plotly keeps its decoded
# traces on the chart's div). Not the number of points: the live page thins each curve to about
# 400 points (stride ceil(n/400)), so the count drops when the stride steps up (264 points at
# n=528, 243 at n=729); the thinning always keeps the last step.
LOSS_LAST_STEP = """() => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const t = (gd._fullData || []).find(t => t.name === 'train loss');
    if (t && t.x.length) return Math.max(...Array.from(t.x));
  }
  return 0;
}"""


# Each drawn chart's title -> its legend entries, with how many points each one draws.
DRAWN = """() => {
  const out = {};
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const text = gd._fullLayout && gd._fullLayout.title && gd._fullLayout.title.text;
    if (!text) continue;
    const title = text.replace(/<[^>]+>/g, '');      // streamlit's theme wraps it in <b>
    out[title] = (gd._fullData || []).filter(t => t.name && t.showlegend !== false).map(t => ({
      name: t.name, points: Array.from(t.y || []).filter(v => v !== null && !isNaN(v)).length}));
  }
  return out;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`streamlit run app.py` on a free port with its own store (and the workers it starts);
    yields the URL."""
    port = _free_port()
    env = {**os.environ, "PRUNEVIZ_STORE": str(tmp_path / "runs"), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
         str(port), "--server.headless", "true"], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT)         # the address comes from .streamlit/config.toml
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        stop_workers(Store(tmp_path / "runs"))      # detached: they outlive the server


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) listening on `port`."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:          # 0A: LISTEN
                out.add(address)
    return out


def test_the_server_listens_on_localhost_only(server):
    port = int(server.rsplit(":", 1)[1])
    assert _listening(port) == {"0100007F"}       # 127.0.0.1, and no IPv6 wildcard


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(400)


def _settle(page, seconds: float = 60) -> None:
    """Until the app has shown no running script for half a second: a click that lands while
    the reruns of the edits before it still redraw the form can be lost on a loaded machine
    (CI lost the Run click of the slider test that way once: "No runs yet" for 180 s).
    The race of a click right after an edit is test_browser_live's one-run-click test."""
    deadline, idle_since = time.time() + seconds, None
    while time.time() < deadline:
        if page.locator("[data-testid=stStatusWidgetRunningIcon]").count():
            idle_since = None
        elif idle_since is None:
            idle_since = time.time()
        elif time.time() - idle_since >= 0.5:
            return
        page.wait_for_timeout(50)


@pytest.mark.browser
def test_a_live_run_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.goto(server)
        run_button = page.get_by_role("button", name="Run", exact=True)
        expect(run_button).to_be_enabled(timeout=120_000)   # first run imports torch
        _set_number(page, "epochs", 300)               # long enough to watch; cancelled below
        page.get_by_text("Training and data").first.click()
        _set_number(page, "dense epochs", 3)
        _settle(page)
        run_button.click()

        seen: list[int] = []
        deadline = time.time() + 120     # a loaded 2-core machine; seconds on an idle one
        while len(set(seen)) < 3 and time.time() < deadline:
            last = page.evaluate(LOSS_LAST_STEP)
            if last and (not seen or last != seen[-1]):
                seen.append(last)
            page.wait_for_timeout(200)
        assert len(set(seen)) >= 3, f"the live loss curve did not update twice: {seen}"
        assert seen == sorted(seen), f"the live loss curve went back in steps: {seen}"
        page.screenshot(path=str(tmp_path / "live.png"), timeout=120_000)

        page.locator("button", has_text="Cancel").first.click()
        expect(page.get_by_text("Interrupted after")).to_be_visible(timeout=30_000)

        # location, not page.url: Playwright can miss streamlit's history.replaceState
        run_id = page.evaluate("() => location.href").split("run=")[1].split("&")[0]
        page.get_by_role("link", name="Compare").click()
        expect(page.get_by_role("heading", name="Compare")).to_be_visible(timeout=15_000)
        label = f"gmp 0.95 s0 · {run_id[-4:]}"
        # Listed in the run table (a canvas grid with an accessible mirror) and the legends.
        expect(page.locator("[data-testid='stMain'] td", has_text=label).first).to_be_attached(
            timeout=60_000)
        expect(page.locator(".legendtext", has_text=label).first).to_be_visible()
        page.screenshot(path=str(tmp_path / "compare.png"), timeout=120_000)
        browser.close()
    assert (tmp_path / "live.png").stat().st_size > 10_000


def _drawn(page, title: str, timeout_s: float = 60, entries: int = 1) -> list[dict]:
    """The legend entries of the chart titled `title`, once it draws at least `entries`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        drawn = page.evaluate(DRAWN)
        if len(drawn.get(title, [])) >= entries:
            return drawn[title]
        page.wait_for_timeout(250)
    raise AssertionError(f"no chart titled {title!r} with {entries} entries; drawn: {drawn}")


@pytest.mark.browser
def test_compare_in_a_real_browser_averages_distinct_seeds_only(server, tmp_path):
    from playwright.sync_api import sync_playwright

    store = Store(tmp_path / "runs")
    config = SessionConfig(method="l1", rate=0.5, epochs=1)
    first = recorded_run(store, config)
    again = recorded_run(store, config, accuracy=0.6)                  # seed 0 again
    recorded_run(store, config.replace(seed=1), accuracy=0.7)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 3000})
        # A shared link, as the first request of a fresh server (it goes through the router).
        page.goto(f"{server}/compare?runs={first},{again}")
        names = [t["name"] for t in _drawn(page, "Held-out accuracy", 120, entries=2)]
        assert len(names) == 2 and not any("mean of" in n for n in names), names
        assert f"runs={first},{again}" in page.evaluate("() => decodeURIComponent(location.href)")

        page.goto(f"{server}/compare")          # a new session: the default selection, all 3
        names = [t["name"] for t in _drawn(page, "Held-out accuracy", entries=2)]
        assert sum("mean of 2 seeds" in n for n in names) == 1, names
        assert not any("mean of 3" in n for n in names) and len(names) == 2
        single = next(n for n in names if "mean of" not in n)
        assert single.startswith("l1 0.5 s0 ·")
        overlay = _drawn(page, "Overlay: lr")           # opens on a curve, not an empty chart
        assert sum(t["points"] for t in overlay) >= 2 * 10, overlay
        browser.close()


@pytest.mark.browser
def test_markdown_in_user_text_fetches_nothing_in_a_real_browser(server, tmp_path):
    """A Markdown image in a run name, a folder: path and an error is shown as text; the browser
    never requests its URL (Runs, Live and Compare pages and the sidebar)."""
    from playwright.sync_api import expect, sync_playwright

    from pruneviz.config import SessionConfig
    from pruneviz.store import Store

    evil = "![x](http://evil.example/x.png)"
    store = Store(tmp_path / "runs")
    run_id = store.create_run(SessionConfig(name=f"mine {evil}", dataset=f"folder:/tmp/{evil}"))
    store.finish_run(run_id, "failed", error=f"image folder /tmp/{evil} does not exist")
    fetched: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.on("request", lambda r: fetched.append(r.url) if "evil" in r.url else None)
        page.route("**/*evil*", lambda route: route.abort())
        page.goto(f"{server}/?run={run_id}")
        expect(page.get_by_text(f"mine {evil}").first).to_be_visible(timeout=120_000)
        for name in ("Runs", "Compare"):
            page.get_by_role("link", name=name).click()
            expect(page.get_by_role("heading", name=name)).to_be_visible(timeout=30_000)
            if name == "Runs":
                expect(page.get_by_text(f"/tmp/{evil} does not exist").first).to_be_visible(
                    timeout=30_000)
            page.wait_for_timeout(1500)
        assert page.locator("img[src*='evil']").count() == 0
        browser.close()
    assert fetched == []


@pytest.mark.browser
def test_notes_saved_after_a_rename_reach_the_renamed_run_in_a_real_browser(server, tmp_path):
    """The browser holds the card picker's value as its label: after Rename the card must stay
    on the renamed run and its notes and tags be saved to it (issue 27, #1)."""
    from playwright.sync_api import expect, sync_playwright

    store = Store(tmp_path / "runs")
    first = recorded_run(store, SessionConfig(method="l1", rate=0.5, epochs=1))
    second = recorded_run(store, SessionConfig(method="gmp", rate=0.9, epochs=1))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(f"{server}/runs")
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=120_000)
        # the list is newest first: the card opens on `second`; pick `first`
        page.get_by_label("Selected Run card").or_(page.get_by_role(
            "combobox", name="Run card")).first.click()
        page.get_by_role("option").filter(has_text="l1").first.click()
        expect(page.get_by_text(first).first).to_be_visible(timeout=30_000)
        page.get_by_role("textbox", name="Name", exact=True).fill("the low rate")
        page.get_by_role("button", name="Rename").click()
        deadline = time.time() + 30
        while store.run(first)["name"] != "the low rate" and time.time() < deadline:
            time.sleep(0.2)
        page.wait_for_timeout(1500)
        page.get_by_role("textbox", name="Notes").fill("l1 keeps its accuracy at 0.5")
        page.get_by_role("textbox", name="Tags", exact=True).fill("keeper")
        page.get_by_role("button", name="Save notes and tags").click()
        expect(page.get_by_text("Notes and tags saved.")).to_be_visible(timeout=30_000)
        browser.close()
    assert store.run(first)["notes"] == "l1 keeps its accuracy at 0.5"
    assert store.run(first)["tags"] == ["keeper"]
    assert store.run(second)["notes"] == "" and store.run(second)["tags"] == []


@pytest.mark.browser
def test_a_shared_compare_link_to_hostile_names_fetches_nothing_in_a_real_browser(server,
                                                                                 tmp_path):
    """Compare opened from a ?runs= link to runs whose names, folder: paths and warnings hold
    Markdown images and links and a styled HTML span (the mixed-datasets warning, the warnings
    note, the config diff table, the charts' legends and hover text): the browser requests no
    attacker URL and shows the text as typed."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_compare_hostile import IMAGE, LINK, hostile_runs

    ids = hostile_runs(Store(tmp_path / "runs"))
    fetched: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 3000})
        page.on("request", lambda r: fetched.append(r.url) if "127.0.0.2" in r.url else None)
        page.route("http://127.0.0.2:9/**", lambda route: route.abort())
        page.goto(f"{server}/compare?runs={','.join(ids)}")
        main = page.locator("[data-testid='stMain']")
        expect(main.get_by_text("2 different models or datasets")).to_be_visible(timeout=120_000)
        expect(main.get_by_text("Config fields that differ")).to_be_visible(timeout=60_000)
        _settle(page)
        page.wait_for_timeout(1500)
        text = main.inner_text(timeout=120_000)
        assert f"folder:/tmp/0{IMAGE}" in text            # the warning, as typed
        assert f"trained {LINK} to chance" in text        # the warnings note
        table = main.locator("[data-testid^='stTable']").first.inner_text(timeout=120_000)
        assert "run0 ![x](" in table and f"folder:/tmp/1{IMAGE}" in table
        # No image, and no link made of the Markdown (a bare URL in plain text may still be
        # autolinked, showing its address: a click, never a fetch).
        assert main.locator("img[src*='127.0.0.2']").count() == 0
        assert main.locator("a", has_text="link").count() == 0
        # plotly's HTML subset: the span is a legend's text, not a styled element
        assert main.locator(".legendtext", has_text='<span style="background-image').count()
        browser.close()
    assert fetched == []


@pytest.mark.browser
def test_a_paper_comparison_ends_in_its_verdict_in_a_real_browser(server, tmp_path):
    """The PGP claim's runs (as the one-click form queues them) shown in Chromium: the claim's
    heading, then the verdict naming the preset each arm ran."""
    from playwright.sync_api import expect, sync_playwright

    from pruneviz.papers import PAPER_COMPARISONS

    store = Store(tmp_path / "runs")
    ids = [recorded_run(store, c, accuracy=(0.42 if c.method == "pgp" else 0.40) + 0.01 * c.seed,
                        dense_accuracy=0.5)
           for c in PAPER_COMPARISONS["pgp"].configs()]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(f"{server}/compare?runs={','.join(ids)}")
        claim = page.get_by_text("The paper's claim: PGP ≥ PSFP at equal FLOPs")
        expect(claim).to_be_visible(timeout=120_000)
        verdict = page.get_by_text("pgp − psfp: +2.0 points").first
        expect(verdict).to_be_visible()
        assert ("(pgp ran interactive preset; psfp ran interactive preset)."
                in verdict.inner_text())
        browser.close()
