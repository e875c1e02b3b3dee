"""Live session: configure a run, preview its schedule, run it and watch it train."""

from functools import partial

import streamlit as st

from pruneviz.config import ConfigError
from pruneviz.ui import forms, live, live_pick, state

state.routed(__file__)

# A first Run must show pruning at work, quickly: gmp to 95 % sparsity in 10 digits epochs
# (220 steps) takes the held-out accuracy from 0.997 down to 0.819 as the last weights go and
# back to 0.994 after the final mask (seed 0). At the former 0.8 over 20 epochs the accuracy
# never moved (0.997 throughout); 0.95 over 20 epochs dipped only to 0.958; 0.98 collapses
# to 0.19.
DEFAULTS = {"method": "gmp", "epochs": 10, "rate": 0.95}
WATCH = ("What to watch: the sparsity chart climbs to the rate along gmp's cubic schedule; the "
         "held-out accuracy holds while easy weights go, dips once the last few percent are "
         "pruned, and recovers in the epochs after the final mask.")

store, queue = state.get_store(), state.get_queue()
st.title("Live session")
st.caption("Pick a model, dataset, method and rate, press Run and watch the session train. "
           "Runs train in the background, one at a time: switch pages or reload and the view "
           "comes back.")
st.caption(WATCH)
form_col, view_col = st.columns([1, 2.4], gap="large")
with form_col:
    live_pick.form_from_url(store, "live")
    config, errors = forms.session_form("live", defaults=DEFAULTS)
    if st.button("Run", type="primary", disabled=config is None, key="live.run",
                 icon=":material/play_arrow:", width="stretch"):
        try:
            # The form has just checked this config (session.check): not again on submit.
            run_id = live_pick.submit_once(config, partial(queue.submit, checked=True), store)
        except ConfigError as e:
            st.error(str(e), icon=":material/error:")
        else:       # the view below picks it up in this same run
            live.watch_start()
            state.add_to_selection(state.list_runs(store), [run_id])

with view_col:
    forms.schedule_preview(config, errors)
    runs = state.list_runs(store)
    run_id = live_pick.current_run(runs)
    live.queue_panel(store, queue, run_id)
    if run_id is None:
        st.info("No runs yet: press Run.")
    else:
        live_pick.run_picker(runs, run_id)
        live_pick.rerun_controls(store.run(run_id), "live", queue.submit)
        live.live_view(store, queue, run_id)
if run_id is not None:
    live.details_view(store, run_id)
