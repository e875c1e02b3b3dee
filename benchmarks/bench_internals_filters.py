"""Internals views of the filter methods (issue 7, part 3): load + panels time of a ResNet-20
run with 10k recorded steps, against the 150 ms redraw target.

A real ResNet-20 session on digits (20 epochs of 2 steps, so it takes seconds) gives the method
records with ResNet-20's layers and filters. A copy stretches it to 20 epochs of 500 steps: its
epoch records move to the new epoch ends, and it gets what a session writes (7 scalars every
step, 3 per-layer keys per prunable layer every 1% of the steps): 10k steps. A redraw is load +
steps + panels at the last step + the JSON of every figure (what st.plotly_chart sends).

Two redraws are timed, interleaved so machine load hits both alike: "cold" with the views'
per-filter cache emptied first (opening the view, or the first redraw after an epoch ends), and
"warm" (every other live redraw: the filter records change only at epoch ends).

    python benchmarks/bench_internals_filters.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import plotly.io as pio

from pruneviz import views
from pruneviz.config import SessionConfig
from pruneviz.records import FilterRow, LayerRow, Row, Scalar
from pruneviz.session import run_session
from pruneviz.store import Store
from pruneviz.views import view

STEPS_PER_EPOCH, EPOCHS, SHORT = 500, 20, 2
SESSION_SCALARS = ("loss", "lr", "train_accuracy", "sparsity", "target_sparsity", "step_time",
                   "wall_time")


def stretch(store: Store, run_id: str) -> str:
    """A copy of `run_id` (SHORT steps per epoch) with STEPS_PER_EPOCH steps per epoch."""
    run = store.run(run_id)
    new = store.create_run(run["config"])
    total = EPOCHS * STEPS_PER_EPOCH
    store.start_run(new, total)

    def at(step: int) -> int:          # epoch ends stay epoch ends
        e, i = divmod(step, SHORT)
        return e * STEPS_PER_EPOCH + (STEPS_PER_EPOCH - 1 if i == SHORT - 1 else i * 250)

    records: list = []
    per_step = set(SESSION_SCALARS)
    for r in store.scalars(run_id).itertuples():
        if r.key not in per_step:
            records.append(Scalar(at(r.step), r.epoch, r.key, r.value))
    for r in store.filters(run_id).itertuples():
        records.append(FilterRow(at(r.step), r.epoch, r.layer, r.filter, r.key, r.value))
    layers = store.layers(run_id)
    names = list(dict.fromkeys(layers.layer))
    for r in layers[~layers.key.isin(["sparsity", "keep_rate", "norm"])].itertuples():
        records.append(LayerRow(at(r.step), r.epoch, r.layer, r.key, r.value))
    for table in store.tables(run_id):
        for r in store.rows(run_id, table).to_dict("records"):
            data = {k: v for k, v in r.items() if k not in ("run_id", "step", "epoch")}
            records.append(Row(at(r["step"]), r["epoch"], table, data))
    store.write(new, records)
    for start in range(0, total, 1000):
        chunk = []
        for s in range(start, start + 1000):
            e = s // STEPS_PER_EPOCH
            chunk += [Scalar(s, e, k, 0.5) for k in SESSION_SCALARS]
            if s % (total // 100) == 0:        # the session's snapshot rate
                chunk += [LayerRow(s, e, n, k, 0.5) for n in names
                          for k in ("sparsity", "keep_rate", "norm")]
        store.write(new, chunk, step=start + 999)
    store.finish_run(new, "completed", summary={})
    return new


def redraw(store: Store, run_id: str, cold: bool) -> float:
    if cold:
        views._cache.clear()
    t = time.perf_counter()
    run = store.run(run_id)
    mod = view(run["config"].method)
    frames = mod.load(store, run_id)
    steps = mod.steps(frames)
    for p in mod.panels(frames, run, steps[-1]):
        pio.to_json(p.figure.to_dict(), validate=False)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for method in ("pgmpf", "pgp"):
            config = SessionConfig(method=method, model="resnet20", epochs=EPOCHS, rate=0.4,
                                   max_steps_per_epoch=SHORT, dense_epochs=2, device="cpu")
            long = stretch(store, run_session(config, store)["run_id"])
            filters = len(store.filters(long))
            redraw(store, long, True), redraw(store, long, False)   # warm-up
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.repeats):                          # interleaved
                for cold in (True, False):
                    times[cold].append(redraw(store, long, cold))
            cold, warm = (statistics.median(times[c]) * 1e3 for c in (True, False))
            print(f"{method}: resnet20, {EPOCHS * STEPS_PER_EPOCH} steps, {filters} filter "
                  f"rows: load + panels + JSON cold {cold:.0f} ms, warm {warm:.0f} ms "
                  f"(target <= 150 ms), cold / warm {cold / warm:.2f}")


if __name__ == "__main__":
    main()
