"""Export a run: config (JSON), summary (JSON), records (CSV), final weights, masks and (methods
that remove filters) kept original indices (.pt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .store import Store


def export_run(store: Store, run_id: str, out: str | Path) -> list[Path]:
    """Write the run's files into `out` (created if missing); returns the paths written."""
    run = store.run(run_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name: str, text: str) -> None:
        (out / name).write_text(text)
        written.append(out / name)

    meta = {k: run[k] for k in ("run_id", "name", "kind", "status", "error", "created",
                                "started", "finished")}
    put("config.json", json.dumps({**meta, "config": run["config"].to_dict()}, indent=2))
    put("summary.json", json.dumps(run["summary"], indent=2))
    for table in ("scalars", "layers", "filters"):
        put(f"{table}.csv", getattr(store, table)(run_id).to_csv(index=False))
    for table in store.tables(run_id):
        put(f"table_{table}.csv", store.rows(run_id, table).to_csv(index=False))
    for name in ("weights.pt", "masks.pt", "kept_indices.pt"):
        src = store.run_dir(run_id, create=False) / name
        if src.exists():
            shutil.copy2(src, out / name)
            written.append(out / name)
    return written
