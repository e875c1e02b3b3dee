"""A session from config to stored run: validation, the shared dense baseline, then the loop
(loop.py) and the run's end."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, SessionConfig, check_name, split_list
from .data import load_dataset
from .loop import Cancelled, Prepared, Progress, Session, train
from .masks import check_method
from .methods import Method, get_method, make_params
from .methods.base import check_pattern
from .modelspec import check_model_name, file_hash, make_model
from .safe_load import load_tensors
from .store import FOREGROUND, RunSink
from .structure import matches, set_ignore
from .text import is_text

# Dense baselines share one recipe per dataset so every method of a comparison starts from the
# same weights; only the epochs (and data options) are the user's.
DENSE_EPOCHS = {"digits": 20, "cifar10_small": 10, "mnist": 3, "fashion_mnist": 5, "cifar10": 30,
                "cifar100": 30, "pydoc": 16}
DENSE_RECIPE = dict(method="dense", rate=0.0, start="scratch", optimizer="sgd", lr=0.05,
                    momentum=0.9, nesterov=True, weight_decay=5e-4, lr_schedule="cosine",
                    label_smoothing=0.0, params={}, name="")
DENSE_RECIPE_VERSION = 1
# Transformers barely move under SGD at the CNN recipe's rate in a few hundred steps; Adam at
# nanoGPT's small-model rate trains them (CNN baselines keep the recipe above, unchanged). Their
# dense key holds these fields' values, so a changed recipe trains a new baseline.
TRANSFORMER_RECIPE = dict(optimizer="adam", lr=3e-3, weight_decay=0.0)
# Language models: batch 16 (32 steps an epoch of text.EPOCH_WINDOWS) over 16 epochs, 512 Adam
# steps. At equal tokens (a standalone loop over the same data, seed 0), 512 steps of 16 windows
# reached a held-out perplexity of 10.4 on pydoc where 256 of 32 reached 14.7 and 128 of 32 17.9:
# the step count, not the batch, limits a model this small (lr 2e-3: 10.6; 6e-3 without warm-up:
# 14.7). Through the session loop: 10.69, where the former 8 epochs of 32 gave 15.31.
TEXT_DENSE_BATCH = 16
_dense_lock = threading.Lock()   # one dense baseline trains at a time, so a sweep trains it once


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available; use "
                          "--device cpu or --device auto.")
    return torch.device(name)


def check(config: SessionConfig) -> tuple[type[Method], Any]:
    """Cheap validation of names and method parameters (no data loaded)."""
    from .data import check_dataset_name

    if config.params.get("nm"):     # the N:M pattern against the method and the rate first
        check_pattern(config)
    method_cls = get_method(config.method)
    params = make_params(method_cls, config.params)
    check_name(config.name)
    check_model_name(config.model)
    if config.weights and not Path(config.weights).expanduser().is_file():
        raise ConfigError(f"weights: no such file {config.weights}; give a state_dict saved "
                          f"with torch.save(model.state_dict(), path).")
    check_dataset_name(config.dataset)
    check_modality(config.model, config.dataset)
    resolve_device(config.device)
    return method_cls, params


def check_modality(model: str, dataset: str) -> None:
    """ConfigError when a language model meets images or an image model meets text."""
    from .data import dataset_modality
    from .models import model_modality

    have, want = dataset_modality(dataset), model_modality(model)
    if have != want:
        fix = ("a text dataset (pydoc or text:PATH)" if want == "text"
               else "an image dataset (digits, cifar10_small, ...)")
        raise ConfigError(f"model {model} takes {want}s but dataset {dataset} is {have}; pick "
                          f"{fix} for it, or a model for {have}s.")


def prepare(config: SessionConfig) -> Prepared:
    """Validate the whole config: method, parameters, dataset files, model, device."""
    method_cls, params = check(config)
    data = load_dataset(config.dataset, config.data_root, download=config.download,
                        augment=config.augment, holdout=config.holdout,
                        image_size=config.image_size, seed=config.seed)
    torch.manual_seed(config.seed)
    model = build(config, data)
    set_ignore_patterns(model, config.params.get("ignore", ""))
    method = method_cls(params)
    method.check(model)
    check_method(model, method.name, method.kind)
    return Prepared(config, method, data, model, resolve_device(config.device))


def example_batch(data: Any, n: int = 2) -> torch.Tensor:
    """The first `n` training images, normalized: the input a model is checked and traced on."""
    return data.normalize(data.train_x[:n])


def build(config: SessionConfig, data: Any) -> torch.nn.Module:
    """The config's model for this dataset, with its weights file loaded and (for a model that
    is not built in) its forward checked on the dataset's input; ConfigError on any bad input."""
    return make_model(config.model, data.input_shape, data.num_classes,
                      example=example_batch(data), weights=config.weights,
                      pretrained=config.pretrained)


def set_ignore_patterns(model: torch.nn.Module, text: str) -> None:
    """`--param ignore=PATTERN,...`: the conv and linear layers it names stay dense on `model`;
    ConfigError for a pattern that matches no layer (a typo would otherwise prune everything)."""
    patterns = tuple(split_list(str(text)))
    if not patterns:
        return
    names = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d,
                                                                   torch.nn.Linear))]
    for p in patterns:
        if not any(matches(n, (p,)) for n in names):
            raise ConfigError(f"ignore: {p!r} matches no conv or linear layer of the model; "
                              f"give module names or globs (features.*), e.g. "
                              f"{', '.join(names[:4])}.")
    set_ignore(model, patterns)


def dense_config(config: SessionConfig) -> SessionConfig:
    """The dense baseline's own config: the shared recipe on the session's data and model."""
    epochs = config.dense_epochs or DENSE_EPOCHS.get(config.dataset, 20)
    from .transformers import TRANSFORMERS

    batch = (64 if config.dataset == "digits" else TEXT_DENSE_BATCH if is_text(config.dataset)
             else 128)
    recipe = {**DENSE_RECIPE, **(TRANSFORMER_RECIPE if config.model in TRANSFORMERS else {})}
    return config.replace(**recipe, epochs=epochs, dense_epochs=epochs, batch_size=batch)


def dense_key(dense: SessionConfig) -> str:
    fields = ("model", "dataset", "seed", "epochs", "max_steps_per_epoch", "augment", "holdout",
              "image_size", "pretrained", "batch_size")
    d = {k: getattr(dense, k) for k in fields}
    d["data_root"] = str(Path(dense.data_root).expanduser().resolve())
    if dense.weights:      # keyed on the content: a re-saved file trains a new baseline
        d["weights"] = file_hash(dense.weights)
    d["recipe"] = DENSE_RECIPE_VERSION
    from .transformers import TRANSFORMERS

    if dense.model in TRANSFORMERS:     # CNN keys unchanged; the transformer recipe's content
        d["transformer_recipe"] = {k: getattr(dense, k) for k in sorted(TRANSFORMER_RECIPE)}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def dense_start(prep: Prepared, store: RunSink, progress: Progress | None,
                cancel: threading.Event | None) -> tuple[dict[str, torch.Tensor], str]:
    """Weights of the trained dense baseline (trained once through this loop, then cached)."""
    dense = dense_config(prep.config)
    key = dense_key(dense)

    def cancelled() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled

    # The thread lock orders sessions of one process, the file lock those of several (workers,
    # CLI runs); whoever waited finds the baseline stored by the one that trained it.
    with _dense_lock, store.file_lock(f"dense-{key}", cancelled):
        return _dense_start(prep, dense, key, store, progress, cancel)


def _dense_start(prep: Prepared, dense: SessionConfig, key: str, store: RunSink,
                 progress: Progress | None, cancel: threading.Event | None
                 ) -> tuple[dict[str, torch.Tensor], str]:
    hit = store.dense_lookup(key)
    if hit is None:
        dense_prep = Prepared(dense, get_method("dense")(), prep.data,
                              build(dense, prep.data),
                              prep.device)
        torch.manual_seed(dense.seed)
        run_id = store.create_run(dense, kind="dense")
        summary = train(dense_prep, store, run_id, progress=progress, cancel=cancel,
                        phase="dense baseline")
        if summary["status"] == "interrupted" and cancel is not None and cancel.is_set():
            raise Cancelled
        if summary["status"] != "completed":
            raise RuntimeError(f"the dense baseline run {run_id} ended {summary['status']}: "
                               f"{summary.get('error', '')}")
        store.dense_save(key, run_id, store.run_dir(run_id) / "weights.pt",
                         summary["final_accuracy"])
        hit = store.dense_lookup(key)
        assert hit is not None
    run_id, path, _ = hit
    return load_tensors(path), run_id


@contextmanager
def trained(config: SessionConfig, store: RunSink, *, run_id: str | None = None,
            progress: Progress | None = None, cancel: threading.Event | None = None,
            sweep_id: str | None = None, prepared: Prepared | None = None
            ) -> Iterator[dict[str, Any]]:
    """Validate, get the dense start, train with the method's hooks and save; yields the run
    summary before the run's end is committed, then commits it.

    Whoever runs the session adds to the summary in the block (the metrics panel): a process
    stopped there leaves the run unfinished (reaped as interrupted), never completed without it.
    Bad input raises ConfigError before anything is stored (unless `run_id` names a queued run,
    which is then marked failed with the message). `prepared`: `prepare(config)`'s result, when
    the caller prepared it already (the CLI does, before it opens the store).
    """
    try:
        prep = prepared if prepared is not None and prepared.config == config \
            else prepare(config)
    except ConfigError as e:
        if run_id is not None:
            store.finish_run(run_id, "failed", error=str(e))
        raise
    if run_id is None:      # trained here: never a job for a worker to claim
        run_id = store.create_run(config, sweep_id=sweep_id, worker=FOREGROUND)
    dense_run, cancelled = None, False
    try:
        if config.start == "dense":
            state, dense_run = dense_start(prep, store, progress, cancel)
            prep.model.load_state_dict(state)
    except Cancelled:
        cancelled = True
    except Exception as e:
        store.finish_run(run_id, "failed", error=f"{type(e).__name__}: {e}")
        raise
    if cancelled:
        store.finish_run(run_id, "interrupted", error="cancelled while training the dense "
                                                      "baseline")
        yield {"run_id": run_id, "status": "interrupted"}
        return
    session = Session(prep, store, run_id, progress=progress, cancel=cancel,
                      dense_run=dense_run)
    summary = session.close(*session.loop())
    yield summary
    session.end(summary)


def run_session(config: SessionConfig, store: RunSink, *, run_id: str | None = None,
                progress: Progress | None = None, cancel: threading.Event | None = None,
                sweep_id: str | None = None, prepared: Prepared | None = None
                ) -> dict[str, Any]:
    """Train the session (see `trained`, also for `prepared`); returns the run summary once the
    run has ended in the store."""
    with trained(config, store, run_id=run_id, progress=progress, cancel=cancel,
                 sweep_id=sweep_id, prepared=prepared) as summary:
        pass
    return summary
