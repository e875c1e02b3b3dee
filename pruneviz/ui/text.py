"""User text (run names, folder paths, error messages quoting them) shown inside Markdown."""

from __future__ import annotations

import html
import re

# The characters that open Markdown constructs mid-line: with these escaped no image, link,
# emphasis, code span, HTML tag, LaTeX ($), table cell or Streamlit directive (:red[...]) can
# form. Path characters (/ - .) stay as they are, so a folder reads as typed, and so does an
# underscore inside a word (snake_case names), which CommonMark never reads as emphasis.
_SPECIAL = re.compile(r"[\\`*{}\[\]()#!<>$:~|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def plain(text: object) -> str:
    """`text` escaped so that st.markdown (and captions, headers, alerts) shows it verbatim:
    a Markdown image in a run name never makes a viewer's browser fetch its URL."""
    return _SPECIAL.sub(lambda m: "\\" + m.group(0), str(text))


def chart_text(text: object) -> str:
    """`text` escaped for plotly, which renders an HTML subset in trace names, hover text, titles
    and tick labels: a <span style="...url(...)"> in a run name made the browser fetch its URL.
    plotly shows the entities as the characters typed."""
    return html.escape(str(text), quote=False)
