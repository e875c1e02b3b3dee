"""The language models' dense recipe (session.py): its content keys the cached baseline, so a
changed transformer recipe trains a new gpt_tiny / vit_tiny baseline instead of silently reusing
the old one, while every CNN baseline keeps its key (and its cache)."""

from pruneviz import session
from pruneviz.config import SessionConfig
from pruneviz.session import dense_config, dense_key


def _key(model: str, dataset: str) -> str:
    return dense_key(dense_config(SessionConfig(model=model, dataset=dataset, method="l1")))


def test_gpt_tiny_dense_recipe_is_the_text_one():
    dense = dense_config(SessionConfig(model="gpt_tiny", dataset="pydoc", method="gmp"))
    assert (dense.optimizer, dense.lr, dense.weight_decay) == ("adam", 3e-3, 0.0)
    assert dense.batch_size == session.TEXT_DENSE_BATCH == 16
    assert dense.epochs == session.DENSE_EPOCHS["pydoc"] == 16


def test_a_changed_transformer_recipe_changes_the_transformer_dense_keys_only(monkeypatch):
    before = {m: _key(m, d) for m, d in (("gpt_tiny", "pydoc"), ("vit_tiny", "digits"),
                                         ("tiny_cnn", "digits"), ("resnet20", "cifar10_small"))}
    monkeypatch.setattr(session, "TRANSFORMER_RECIPE", {**session.TRANSFORMER_RECIPE, "lr": 1e-3})
    after = {m: _key(m, d) for m, d in (("gpt_tiny", "pydoc"), ("vit_tiny", "digits"),
                                        ("tiny_cnn", "digits"), ("resnet20", "cifar10_small"))}
    assert after["gpt_tiny"] != before["gpt_tiny"] and after["vit_tiny"] != before["vit_tiny"]
    assert after["tiny_cnn"] == before["tiny_cnn"] and after["resnet20"] == before["resnet20"]


def test_cnn_dense_keys_are_the_ones_main_cached_under():
    """The key main computed (no transformer field) for a CNN: its cached baselines are found."""
    import hashlib
    import json
    from pathlib import Path

    dense = dense_config(SessionConfig(model="tiny_cnn", dataset="digits", method="l1"))
    fields = ("model", "dataset", "seed", "epochs", "max_steps_per_epoch", "augment", "holdout",
              "image_size", "pretrained", "batch_size")
    d = {k: getattr(dense, k) for k in fields}
    d["data_root"] = str(Path(dense.data_root).expanduser().resolve())
    d["recipe"] = session.DENSE_RECIPE_VERSION
    old = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert dense_key(dense) == old
