"""Home: what pruneviz is and the runs in the store."""

import streamlit as st

from pruneviz.store import Store, StoreError

st.title("pruneviz")
st.write("Run short neural-network pruning sessions and watch what each method does. "
         "Start one from the command line with `python -m pruneviz run`.")
try:
    runs = Store().runs()
except StoreError as e:
    st.error(str(e))
else:
    if runs.empty:
        st.info("No runs yet: `python -m pruneviz run` starts one.")
    else:
        st.dataframe(runs[["run_id", "method", "model", "dataset", "rate", "status",
                           "final_accuracy", "sparsity"]], hide_index=True)
