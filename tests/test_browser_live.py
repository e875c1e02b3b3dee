"""The Live page in a real browser (Chromium driven by Playwright, as tests/test_browser.py):
the internals slider follows a run to its last step, one Run click is one run and the view
switches to it, the rate box reaches 0.99, a bad dataset is an inline message with Run
disabled."""

import re
import time

import pytest

from pruneviz.methods.fggp import view as fggp_view
from pruneviz.store import ACTIVE, Store
from tests.helpers import wait_done
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _settle, server  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser
THUMBS = """() => Array.from(document.querySelectorAll('[data-testid=stSliderThumbValue]'))
  .map(e => e.innerText)"""


def _open(p, url: str, height: int = 2400):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(url)
    return browser, page


def _run_button(page):
    from playwright.sync_api import expect

    button = page.get_by_role("button", name="Run", exact=True)
    expect(button).to_be_enabled(timeout=120_000)        # the first page load imports torch
    return button


def _shown_run(page) -> str:
    # location, not page.url: Playwright can miss streamlit's history.replaceState
    return page.evaluate("() => location.href").split("run=")[1].split("&")[0]


def _cancel_all(store: Store) -> None:
    runs = store.runs()
    active = runs[runs.status.isin(ACTIVE)].run_id.tolist()
    for run_id in active:
        store.request_cancel(run_id)
    wait_done(store, active, timeout=60)


def test_the_internals_slider_follows_a_run_to_its_last_step(server, tmp_path):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    store = Store(tmp_path / "runs")
    with sync_playwright() as p:
        browser, page = _open(p, server, height=4200)     # tall: the internals are drawn too
        run = _run_button(page)
        page.get_by_label("epochs", exact=True).fill("6")
        page.get_by_label("epochs", exact=True).press("Enter")
        page.get_by_text("Training and data").first.click()
        page.get_by_label("dense epochs", exact=True).fill("3")
        page.get_by_label("dense epochs", exact=True).press("Enter")
        _settle(page)
        run.click()
        expect(page.get_by_text("Completed after")).to_be_visible(timeout=180_000)
        run_id = _shown_run(page)
        last = fggp_view.steps(fggp_view.load(store, run_id))[-1]     # gmp's last pruning step
        deadline, thumbs = time.time() + 30, []
        while time.time() < deadline:
            thumbs = [int(t) for t in page.evaluate(THUMBS) if t.strip().isdigit()]
            if last in thumbs:
                break
            page.wait_for_timeout(300)
        browser.close()
    assert last in thumbs, f"the internals slider stopped at {thumbs}, not at step {last}"


def test_one_run_click_is_one_run_and_the_view_switches(server, tmp_path):  # noqa: F811
    """Seen with a run training: its view polls, and the old run picker's value came back."""
    from playwright.sync_api import expect, sync_playwright

    store = Store(tmp_path / "runs")
    with sync_playwright() as p:
        browser, page = _open(p, server)
        run = _run_button(page)
        page.get_by_text("Training and data").first.click()
        page.get_by_label("dense epochs", exact=True).fill("2")
        page.get_by_label("dense epochs", exact=True).press("Enter")
        page.get_by_label("epochs", exact=True).fill("300")      # trains while we click
        page.get_by_label("epochs", exact=True).press("Enter")
        _settle(page)
        run.click()
        expect(page.get_by_text(re.compile(r"^Step \d+/"))).to_be_visible(timeout=120_000)
        before = _shown_run(page)
        # Type into a number box and click Run at once: the blur commits the box (a rerun)
        # and the click comes with it, while the live view polls.
        page.get_by_label("epochs", exact=True).fill("3")
        run.click()
        deadline = time.time() + 60
        while time.time() < deadline:
            new = [r for r in store.runs().run_id if r != before]
            if new and _shown_run(page) == new[0]:
                break
            page.wait_for_timeout(250)
        page.wait_for_timeout(5000)       # a late duplicate or a flip back would show by now
        new = [r for r in store.runs().run_id if r != before]
        shown = _shown_run(page)
        texts = page.locator("[data-testid='stMain'] code").all_inner_texts()
        browser.close()
    _cancel_all(store)
    assert len(new) == 1, f"one click queued {len(new)} runs"
    assert shown == new[0] and new[0] in texts, (shown, new, before)
    assert store.run(new[0])["config"].epochs == 3           # the edit made it into the run


def test_the_rate_box_reaches_099(server):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, server)
        run = _run_button(page)
        rate = page.get_by_label("rate", exact=True)
        rate.fill("0.99")
        rate.press("Enter")
        expect(page.get_by_text("Schedule of the form: gmp at rate 0.99")).to_be_visible(
            timeout=30_000)
        expect(run).to_be_enabled()
        rate.fill("0.999")
        rate.press("Enter")
        expect(page.get_by_text("Schedule of the form: gmp at rate 0.999")).to_be_visible(
            timeout=30_000)
        browser.close()


def test_a_bad_dataset_is_an_inline_message_and_run_is_disabled(server):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = _open(p, server)
        run = _run_button(page)
        page.get_by_label("dataset", exact=True).click()
        page.keyboard.type("folder:/nonexistent")
        page.keyboard.press("Enter")
        expect(page.get_by_text("image folder /nonexistent does not exist")).to_be_visible(
            timeout=30_000)
        expect(run).to_be_disabled()
        browser.close()
