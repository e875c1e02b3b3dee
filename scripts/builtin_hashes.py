"""Hashes of the final weights and masks of short sessions on the built-in models, one per
(model, method) of tests/test_builtin_hashes.py's matrix; run against a checkout to record the
fixture that test compares with (`python scripts/builtin_hashes.py OUT.json`)."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile

import torch

from pruneviz.config import ConfigError, SessionConfig
from pruneviz.models import MODELS
from pruneviz.safe_load import load_tensors
from pruneviz.session import run_session
from pruneviz.store import Store

ALL = ("random", "l1", "global_l1", "l2_filter", "gmp", "fggp", "granet", "pgmpf", "asfp", "sfp",
       "pgp", "rpgp", "psfp", "slr", "admm")
MATRIX = [(m, k) for m in ("tiny_cnn", "resnet20") for k in ALL]
MATRIX += [(m, k) for m in MODELS if m not in ("tiny_cnn", "resnet20") for k in ("l1", "pgmpf")]


def digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def session_hash(model: str, method: str, root: str) -> str:
    config = SessionConfig(method=method, rate=0.5, model=model, dataset="digits", epochs=2,
                           start="scratch", batch_size=32, max_steps_per_epoch=2, eval_limit=32,
                           device="cpu", seed=0)
    store = Store(root)
    try:
        summary = run_session(config, store)
    except ConfigError as e:
        return "error: " + str(e)[:60]
    folder = store.run_dir(summary["run_id"])
    masks = load_tensors(folder / "masks.pt") if (folder / "masks.pt").exists() else {}
    return digest(load_tensors(folder / "weights.pt")) + " " + digest(masks)


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        out = {f"{m}/{k}": session_hash(m, k, root) for m, k in MATRIX}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
