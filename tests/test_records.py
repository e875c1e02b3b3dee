"""Every record key is declared once with what it holds: an undeclared scalar, layer, filter or
summary key raises under tests (and warns once for users), the error says where to declare it,
and the glossaries are the declarations."""

import warnings

import pytest

from pruneviz.loop import train
from pruneviz.methods import load_all
from pruneviz.methods.oneshot import Dense
from pruneviz.records import (
    STRICT_ENV,
    Recorder,
    RuleBroken,
    Summary,
    UndeclaredKey,
    check_key,
    declare,
    declared,
    glossary,
    where_to_declare,
)
from pruneviz.session import prepare

TINY = dict(start="scratch", epochs=1, max_steps_per_epoch=2)


def run_with(method, fast_config, store) -> dict:
    """A two-step session of `method` (an instance) from scratch; returns its summary."""
    config = fast_config(**TINY)
    prep = prepare(config)
    prep.method = method
    return train(prep, store, store.create_run(config))


@pytest.mark.parametrize("write", [
    lambda rec: rec.scalar("no_such_scalar", 1.0),
    lambda rec: rec.scalars({"loss": 1.0, "no_such_scalar": 1.0}),
    lambda rec: rec.layer("conv1", "no_such_layer_key", 1.0),
    lambda rec: rec.filters("conv1", "no_such_filter_key", [1.0, 2.0]),
])
def test_an_undeclared_record_key_raises_under_tests(write):
    with pytest.raises(UndeclaredKey, match="declared nowhere"):
        write(Recorder())


def test_declared_keys_record(monkeypatch):
    rec = Recorder()
    rec.scalars({"loss": 1.0, "dense_accuracy": 0.5, "pruned_accuracy": 0.4})
    rec.layer("conv1", "keep_rate", 1.0)
    assert [r.key for r in rec.take()] == ["loss", "dense_accuracy", "pruned_accuracy",
                                           "keep_rate"]


def test_an_undeclared_key_warns_once_outside_tests(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "0")
    rec = Recorder()
    with pytest.warns(UserWarning, match="not_declared_for_users"):
        rec.scalar("not_declared_for_users", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.scalar("not_declared_for_users", 2.0)     # once per key
    assert [r.value for r in rec.take()] == [1.0, 2.0]     # recorded all the same


def test_the_error_names_the_file_that_declares_the_key():
    assert where_to_declare("pruneviz.methods.pgp.engine").startswith(
        "pruneviz/methods/pgp/records.py")
    assert where_to_declare("pruneviz.methods.oneshot").startswith("pruneviz/methods/oneshot.py")
    with pytest.raises(UndeclaredKey, match=r"pruneviz/methods/slr/records.py.*"
                                            r"SCALARS = declare\('scalar'"):
        check_key("scalar", "no_such_scalar", "pruneviz.methods.slr.engine")


def test_declaring_a_key_is_one_entry():
    declare("scalar", {"test_records_new_key": "a key this test declares"})
    Recorder().scalar("test_records_new_key", 1.0)
    assert glossary("scalar")["test_records_new_key"] == "a key this test declares"
    with pytest.raises(ValueError, match="without saying what it holds"):
        declare("scalar", {"test_records_no_help": ""})
    with pytest.raises(ValueError, match="record kind"):
        declare("scalars", {"x": "y"})


def test_the_glossaries_are_the_declarations():
    from pruneviz.methods.pgmpf import records as pgmpf
    from pruneviz.methods.slr import records as slr

    load_all()
    assert set(slr.SCALARS) <= set(glossary("scalar"))
    assert set(pgmpf.FILTERS) <= set(glossary("filter"))
    assert glossary("layer")["keep_rate"].startswith("fraction of filters")
    # The drift issue 23 found: a summary number declared as a scalar, scalars not declared.
    assert "global_sparsity" not in declared("scalar")
    assert "global_sparsity" in declared("summary")
    assert {"dense_accuracy", "pruned_accuracy", "test_accuracy"} <= declared("scalar")


def test_a_method_writing_an_undeclared_key_fails_its_run(fast_config, store):
    class Loud(Dense):
        def after_step(self, ctx):
            ctx.record.scalar("loud_undeclared", 1.0)

    s = run_with(Loud(), fast_config, store)
    assert s["status"] == "failed"
    assert "scalar key 'loud_undeclared' is declared nowhere" in s["error"]


def test_an_undeclared_summary_key_raises():
    with pytest.raises(UndeclaredKey, match="summary key 'no_such_summary'"):
        Summary()["no_such_summary"] = 1
    with pytest.raises(UndeclaredKey):
        Summary().update(no_such_summary=1)
    with pytest.raises(UndeclaredKey):
        Summary().setdefault("no_such_summary", 1)


def test_a_method_summary_key_never_overwrites_the_sessions(fast_config, store):
    with pytest.raises(RuleBroken, match="'sparsity' is the session's own"):
        Summary()["sparsity"] = 0.0
    with pytest.raises(RuleBroken, match="'final_accuracy' is the session's own"):
        Summary().update(filters_pruned=1, final_accuracy=1.0)

    class Boastful(Dense):
        def before_training(self, ctx):
            ctx.summary["final_accuracy"] = 1.0

    s = run_with(Boastful(), fast_config, store)
    assert s["status"] == "failed" and "'final_accuracy' is the session's own" in s["error"]
    assert s.get("final_accuracy") != 1.0
