"""User text (run names, folder paths, error messages quoting them) shown inside Markdown."""

from __future__ import annotations

import re

# Every ASCII punctuation character CommonMark lets a backslash escape: with all of them escaped
# no image, link, emphasis, code span, LaTeX ($) or Streamlit directive (:red[...]) can form.
_PUNCT = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def plain(text: object) -> str:
    """`text` escaped so that st.markdown (and captions, headers, alerts) shows it verbatim:
    a Markdown image in a run name never makes a viewer's browser fetch its URL."""
    return _PUNCT.sub(r"\\\1", str(text))
