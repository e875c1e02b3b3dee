"""The Learn pages and the Live metrics at a classroom projector's size (1400 x 900, and
1280 for the Live metrics, sidebar open) in a real browser (Chromium driven by Playwright, as
tests/test_browser.py): no control, chart, metric or equation reaches past its column or the
main area or is cut off, and no chart's axis labels sit over a plot or over each other."""

import time

import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _settle, server  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser
PAGES = ("learn_basics", "learn_schedules", "learn_methods", "learn_speed")

# Everything drawn in the main area that can be cut off: what reaches past the main area, past
# the column it sits in, or (equations) past its own box, which hides the overflow; and axis
# tick labels drawn over a plot area of the same chart (each subplot's drag rectangle).
CLIPPED = """() => {
  const main = document.querySelector('[data-testid="stMain"]').getBoundingClientRect();
  const side = document.querySelector('[data-testid="stSidebar"]');
  const out = {sidebar: side ? side.getBoundingClientRect().width : 0, count: 0, bad: []};
  const name = el => (el.innerText || el.textContent || '').trim().split('\\n')[0].slice(0, 60);
  const sel = ['[data-testid="stSlider"]', '[data-testid="stNumberInput"]',
    '[data-testid="stSelectbox"]', '[data-testid="stRadio"]', '[data-testid="stCheckbox"]',
    '[data-testid="stMetric"]', '.stPlotlyChart', '.katex-display'].join(', ');
  for (const el of document.querySelectorAll('[data-testid="stMain"] :is(' + sel + ')')) {
    const r = el.getBoundingClientRect();
    if (!r.width || !el.checkVisibility()) continue;       // an inactive tab's
    out.count++;
    const col = el.closest('[data-testid="stColumn"]');
    const box = col ? col.getBoundingClientRect() : main;
    if (r.left < main.left - 1 || r.right > main.right + 1)
      out.bad.push(['past the main area', name(el)]);
    else if (r.left < box.left - 1 || r.right > box.right + 1)
      out.bad.push(['past its column', name(el)]);
    // An equation wider than its column scrolls inside its box (overflow auto): on a
    // projector that reads as cut off. A metric's label or value is cut with an ellipsis.
    const cut = (c, px) => c.clientWidth && c.scrollWidth > c.clientWidth + px;
    if (el.matches('.katex-display') && cut(el, 4))      // KaTeX's italic corrections: 2-3 px
      out.bad.push(['equation cut off', name(el), el.scrollWidth - el.clientWidth]);
    for (const c of el.querySelectorAll('*')) {
      if (cut(c, 1) && getComputedStyle(c).textOverflow === 'ellipsis') {
        out.bad.push(['text cut off', name(c), c.scrollWidth - c.clientWidth]);
        break;
      }
    }
    if (el.matches('.stPlotlyChart')) {
      const title = name(el.querySelector('.gtitle') || el);
      const plots = Array.from(el.querySelectorAll('rect.nsewdrag'))
        .map(d => d.getBoundingClientRect());
      const over = (a, b) => a.left < b.right - 1 && a.right > b.left + 1 &&
                             a.top < b.bottom - 1 && a.bottom > b.top + 1;
      const labels = [];
      for (const t of el.querySelectorAll('g[class$="tick"] text')) {
        const b = t.getBoundingClientRect();
        if (!b.width || !t.textContent) continue;
        if (plots.some(p => over(b, p)))
          out.bad.push(['axis label over a plot', title + ': ' + t.textContent]);
        // a label's box holds its line's padding: neighbours may share 2 px of it
        const hit = labels.find(l => Math.min(b.right, l.b.right) - Math.max(b.left, l.b.left) > 2
                                     && Math.min(b.bottom, l.b.bottom) - Math.max(b.top, l.b.top) > 2);
        if (hit) out.bad.push(['axis labels over each other',
                               title + ': ' + hit.text + ' / ' + t.textContent]);
        labels.push({b, text: t.textContent});
      }
    }
  }
  return out;
}"""


DRAWN = """() => document.querySelectorAll('[data-testid="stMain"] :is(.stPlotlyChart, ' +
  '.katex-display, [data-testid="stSlider"], [data-testid="stMetric"])').length"""


def _checked(page, timeout_s: float = 120) -> dict:
    """CLIPPED once the page has stopped drawing (no script running, nothing new for 4 s)."""
    page.wait_for_selector("[data-testid=stMain] h1", timeout=timeout_s * 1000)
    deadline, last, since = time.time() + timeout_s, -1, time.time()
    while time.time() < deadline:
        _settle(page)
        drawn = page.evaluate(DRAWN)
        if drawn != last:
            last, since = drawn, time.time()
        elif time.time() - since > 4:
            break
        page.wait_for_timeout(250)
    page.wait_for_timeout(1000)              # plotly lays out after the script has run
    return page.evaluate(CLIPPED)


@pytest.mark.parametrize("name", PAGES)
def test_nothing_on_a_learn_page_is_cut_off_at_1400_px_with_the_sidebar_open(server, name):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{server}/{name}")
        found = _checked(page)
        assert found["sidebar"] > 200            # the sidebar is open, taking its width
        seen, bad = found["count"], found["bad"]
        tabs = page.get_by_role("tab")
        for i in range(1, tabs.count()):         # each method's toy on its own tab
            tabs.nth(i).click()
            found = _checked(page)
            seen += found["count"]
            bad += [[tabs.nth(i).inner_text(), *b] for b in found["bad"]]
        browser.close()
    assert seen > 5                              # the check saw the page's controls and charts
    assert bad == []


def test_no_live_metric_is_cut_off_at_projector_widths(server, tmp_path):
    """A finished run's metrics (accuracy with its delta chip vs dense, sparsity vs target,
    loss, the smaller-and-faster panel) at 1280 and 1400 px with the sidebar open."""
    from playwright.sync_api import sync_playwright

    from pruneviz.config import SessionConfig
    from pruneviz.local import train_local
    from pruneviz.store import Store

    store = Store(tmp_path / "runs")
    run_id = train_local(SessionConfig(method="gmp", rate=0.95, epochs=3, dense_epochs=2,
                                       max_steps_per_epoch=10, device="cpu"), store)["run_id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        found = {}
        for width in (1280, 1400):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(f"{server}/?run={run_id}")
            page.get_by_text("Smaller and faster?").wait_for(timeout=180_000)
            found[width] = _checked(page, 180)
        browser.close()
    assert all(f["sidebar"] > 200 and f["count"] > 8 for f in found.values())
    assert {w: f["bad"] for w, f in found.items()} == {1280: [], 1400: []}
