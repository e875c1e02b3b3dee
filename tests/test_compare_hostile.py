"""Compare under AppTest with hostile user text: Markdown in run names, folder: paths and the
warnings quoting them reaches every Markdown-rendering element escaped (the browser check is
tests/test_browser.py's)."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pruneviz.config import SessionConfig
from pruneviz.store import Store
from tests.helpers import decode_plotly, recorded_run

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "![x](http://127.0.0.2:9/x.png)"
LINK = "[link](http://127.0.0.2:9/l)"
# plotly's HTML subset keeps a span's style: Chromium fetched each url() in a legend entry.
SPAN = '<span style="background-image:url(http://127.0.0.2:9/s.png)">s</span>'
LIVE = ("![", "](")          # what would still render as an image or a link


def hostile_runs(store: Store) -> list[str]:
    """Two finished runs whose names, folder: datasets and warnings carry Markdown, on two
    datasets (so the mixed-datasets warning names both) and two methods (so the config diff
    has rows)."""
    ids = []
    for i, method in enumerate(("l1", "gmp")):
        folder = f"folder:/tmp/{i}{IMAGE}"
        config = SessionConfig(method=method, rate=0.5, epochs=1, dataset=folder,
                               name=f"run{i} {IMAGE} {LINK} {SPAN}")
        run_id = recorded_run(store, config)
        summary = {**store.run(run_id)["summary"],
                   "warnings": [f"{folder} trained {LINK} to chance"]}
        store.finish_run(run_id, "completed", summary=summary)
        ids.append(run_id)
    return ids


def _rendered(at) -> list[str]:
    """Every text Compare hands to Markdown: alerts, markdown, captions, and st.table's
    cells, index and header."""
    out = []
    for kind in ("markdown", "caption", "error", "warning", "info", "subheader"):
        out += [str(e.value) for e in getattr(at, kind)]
    for table in at.table:
        df = table.value
        out += [str(v) for v in df.to_numpy().ravel()] + [str(v) for v in df.index]
        out += [str(v) for v in df.columns]
    return out


def test_markdown_in_names_paths_and_warnings_is_shown_escaped_on_compare(tmp_path,
                                                                          monkeypatch):
    root = tmp_path / "runs"
    ids = hostile_runs(Store(root))
    monkeypatch.setenv("PRUNEVIZ_STORE", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["runs"] = ",".join(ids)
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    shown = _rendered(at)
    warnings = " ".join(str(w.value) for w in at.warning)
    assert "2 different models or datasets" in warnings and "end with warnings" in warnings
    assert at.table and "127.0.0.2" in " ".join(shown)       # the text is there ...
    assert not [s for s in shown if any(m in s for m in LIVE)]      # ... never as Markdown


def test_a_link_naming_unknown_ids_with_newlines_renders_no_markdown(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    Store(root)
    monkeypatch.setenv("PRUNEVIZ_STORE", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    # A code span ends at a blank line: what followed it rendered as Markdown.
    at.query_params["runs"] = f"a\n\n{IMAGE}\n\nb"
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    notice = [str(w.value) for w in at.warning if "does not hold" in str(w.value)]
    assert notice and "127.0.0.2" in notice[0]
    assert not any(m in notice[0] for m in LIVE)


def _chart_texts(obj) -> list[str]:
    """Every string plotly renders as HTML in a figure spec: names, hover text, titles, ticks."""
    if isinstance(obj, dict):
        return [t for k, v in obj.items() for t in (
            [v] if isinstance(v, str) and k in ("name", "text", "ticktext", "label")
            else _chart_texts(v))]
    if isinstance(obj, list):
        return [t for v in obj for t in _chart_texts(v)]
    return []


def test_html_in_names_and_paths_reaches_the_charts_escaped(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    ids = hostile_runs(Store(root))
    monkeypatch.setenv("PRUNEVIZ_STORE", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["runs"] = ",".join(ids)
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    texts = [t for chart in at.get("plotly_chart")
             for t in _chart_texts(decode_plotly(json.loads(chart.proto.spec)))]
    assert any("&lt;span style=" in t for t in texts)          # shown as typed ...
    assert not [t for t in texts if "<span" in t]               # ... never as a tag
