"""The run list and a run's card: rename, delete (confirmed), download, add to a comparison."""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from ..config import MAX_NAME_CHARS, ConfigError
from ..export import export_run
from ..store import ACTIVE, Store, parse_tags
from ..workers import Queue
from .panel import metrics_panel_view
from .state import select_runs, selected_runs
from .text import plain

LIST_COLUMNS = ["label", "tags", "status", "method", "model", "dataset", "rate", "seed",
                "final_accuracy", "sparsity", "flops_effective", "wall_s", "notes", "run_id",
                "sweep_id"]
CARD_KEY = "runs.card"       # the picker's key starts with this (see card_picker)
_CARD = "runs.card_shown"
_CONFIRM = "runs.confirm_delete"
_SAVED = "runs.saved"


def filter_runs(runs: pd.DataFrame, text: str = "", methods: list[str] | None = None,
                statuses: list[str] | None = None, tags: list[str] | None = None
                ) -> pd.DataFrame:
    """Runs whose label, id, sweep, notes or tags contain `text` (case-insensitive), whose
    method and status are among those given, and that carry any of `tags` (all when empty)."""
    keep = pd.Series(True, index=runs.index)
    if text:
        hay = (runs.label + " " + runs.run_id + " " + runs.sweep_id.fillna("") + " "
               + runs.notes + " " + runs.tags.map(" ".join))
        keep &= hay.str.contains(text, case=False, regex=False)
    if methods:
        keep &= runs.method.isin(methods)
    if statuses:
        keep &= runs.status.isin(statuses)
    if tags:
        keep &= runs.tags.map(lambda have: bool(set(have) & set(tags)))
    return runs[keep]


def all_tags(runs: pd.DataFrame) -> list[str]:
    """Every tag on any run, sorted."""
    return sorted({t for tags in runs.tags for t in tags})


def card_zip(store: Store, run_id: str) -> bytes:
    """The run card: export_run's files (config JSON, records CSV, weights, masks, masked
    state_dict, compact .pt2 and ONNX) zipped. If the model files cannot be exported (a damaged
    or unsafe weights file), the zip holds the card and EXPORT_ERROR.txt saying why."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / run_id
        try:
            paths = export_run(store, run_id, out)
        except ConfigError as e:
            shutil.rmtree(out, ignore_errors=True)
            paths = export_run(store, run_id, out, formats=("card",))
            (out / "EXPORT_ERROR.txt").write_text(f"The model files were not exported: {e}\n")
            paths.append(out / "EXPORT_ERROR.txt")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for path in paths:
                z.write(path, f"{run_id}/{path.name}")
    return buf.getvalue()


def card_picker(shown: pd.DataFrame) -> str:
    """The run whose card is shown. The browser holds a picker's value as its label, so a
    rename left it holding a label no option had: the card fell back to the first run and the
    notes saved next went to a form no longer drawn. The picker is keyed by its labels (a
    rename gives a new picker) and opens on the run this session last showed."""
    ids = list(shown.run_id)
    labels = dict(zip(shown.run_id, shown.label + " — " + shown.status))
    last = st.session_state.get(_CARD)
    digest = hashlib.sha1("\n".join(labels[r] for r in ids).encode()).hexdigest()[:8]
    run_id = st.selectbox("Run card", ids, index=ids.index(last) if last in ids else 0,
                          format_func=labels.get, key=f"{CARD_KEY}.{digest}")
    st.session_state[_CARD] = run_id
    return run_id


def _delete(store: Store, run_id: str) -> None:
    store.delete(run_id)
    st.session_state.pop(_CONFIRM, None)
    select_runs([r for r in selected_runs() if r != run_id])


def _notes_form(store: Store, run_id: str, run: dict) -> None:
    """Notes and tags of the run, saved to the store together."""
    with st.form(f"runs.annotate.{run_id}", border=False):
        notes = st.text_area("Notes", run["notes"], key=f"runs.notes.{run_id}", height=90,
                             placeholder="What this run tried, what you saw",
                             help="Free text, kept with the run; the Filter box searches it.")
        tags = st.text_input("Tags", ", ".join(run["tags"]), key=f"runs.tags.{run_id}",
                             placeholder="baseline, paper-table",
                             help="Comma-separated labels; filter the list by them above.")
        saved = st.form_submit_button("Save notes and tags", key=f"runs.save.{run_id}")
    if saved:
        try:
            store.annotate(run_id, notes=notes, tags=parse_tags(tags))
        except ConfigError as e:
            st.error(f"Tags or Notes: {e}", icon=":material/error:")
            return
        st.session_state[_SAVED] = run_id
        st.rerun()            # the list above shows the new notes and tags
    if st.session_state.get(_SAVED) == run_id:
        st.caption(":material/check: Notes and tags saved.")


def run_card(store: Store, queue: Queue, run_id: str) -> None:
    run = store.run(run_id)
    config, summary, status = run["config"], run["summary"], run["status"]
    st.subheader(plain(run["name"] or f"{config.method} at rate {config.rate:g}"))
    st.markdown(f"`{run_id}` · {plain(config.model)} on {plain(config.dataset)} · "
                f"{config.epochs} epochs · seed {config.seed} · **{status}**")
    if run["error"]:
        (st.warning if status == "interrupted" else st.error)(
            f"This run ended {status}: {plain(run['error'])}")
    cols = st.columns(4)
    for col, key, label in zip(cols, ("dense_accuracy", "final_accuracy", "sparsity",
                                      "flops_effective"),
                               ("Dense accuracy", "Final accuracy", "Sparsity",
                                "Effective FLOPs")):
        value = summary.get(key)
        col.metric(label, "—" if value is None else
                   (f"{value:,.0f}" if key.startswith("flops") else f"{value:.3f}"))
    name_col, rename_col = st.columns([3, 1], vertical_alignment="bottom")
    name_col.text_input("Name", run["name"][:MAX_NAME_CHARS], key=f"runs.name.{run_id}",
                        max_chars=MAX_NAME_CHARS, help="A label shown in lists and legends.")
    rename_col.button("Rename", key=f"runs.rename.{run_id}", on_click=lambda: store.rename(
        run_id, st.session_state[f"runs.name.{run_id}"].strip()))
    _notes_form(store, run_id, run)
    a, b, c = st.columns(3)
    a.download_button("Download run card (.zip)", data=lambda: card_zip(store, run_id),
                      file_name=f"{run_id}.zip", mime="application/zip",
                      key=f"runs.download.{run_id}", icon=":material/download:",
                      help="config.json, summary.json, records as CSV, weights.pt and masks.pt")
    b.button("Add to comparison", key=f"runs.compare.{run_id}",
             on_click=lambda: select_runs([*selected_runs(), run_id]))
    active = status in ACTIVE
    if active:
        c.button("Cancel run", key=f"runs.cancel.{run_id}", on_click=queue.cancel,
                 args=(run_id,))
    elif c.button("Delete…", key=f"runs.delete.{run_id}"):
        st.session_state[_CONFIRM] = run_id
    if st.session_state.get(_CONFIRM) == run_id and not active:
        st.warning(f"Delete {run_id} with its records and files? This cannot be undone.")
        yes, no = st.columns(2)
        yes.button("Yes, delete it", key="runs.confirm.yes", type="primary",
                   on_click=_delete, args=(store, run_id))
        no.button("Keep it", key="runs.confirm.no",
                  on_click=lambda: st.session_state.pop(_CONFIRM, None))
    if status == "completed":
        metrics_panel_view(store, run_id, key=f"runs.panel.{run_id}")
    with st.expander("Config and summary"):
        st.json({"config": config.to_dict(), "summary": summary}, expanded=False)
