"""Work done once per request: the CLI prepares a session (data, model, checks) once per run."""

import json

from pruneviz import session
from pruneviz.cli.main import main


def test_the_cli_prepares_a_run_once(tmp_path, capsys, monkeypatch):
    calls = []
    real = session.prepare

    def counted(config):
        calls.append(config)
        return real(config)

    monkeypatch.setattr(session, "prepare", counted)
    assert main(["run", "--store", str(tmp_path / "runs"), "--json", "--start", "scratch",
                 "--epochs", "1", "--max-steps-per-epoch", "2", "--device", "cpu",
                 "--method", "l1", "--rate", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert len(calls) == 1


def test_a_prepared_session_for_another_config_is_not_used(tmp_path, fast_config):
    from pruneviz.store import Store

    store = Store(tmp_path / "runs")
    config = fast_config(start="scratch", epochs=1, max_steps_per_epoch=2, method="l1", rate=0.5)
    other = session.prepare(config.replace(rate=0.25))
    summary = session.run_session(config, store)
    with session.trained(config, store, prepared=other) as again:
        pass
    assert summary["sparsity"] == again["sparsity"] == 0.5


def _count(monkeypatch, *names):
    """Count calls of `session.<name>` (and of the Live form's own import of `check`)."""
    from pruneviz.ui import forms

    calls = {name: [] for name in names}
    for name in names:
        real = getattr(session, name)

        def counted(config, _real=real, _name=name):
            calls[_name].append(config)
            return _real(config)

        monkeypatch.setattr(session, name, counted)
        if hasattr(forms, name):
            monkeypatch.setattr(forms, name, counted)
    return calls


def test_a_cli_sweep_prepares_each_run_once(tmp_path, capsys, monkeypatch):
    calls = _count(monkeypatch, "prepare", "check")
    assert main(["sweep", "--store", str(tmp_path / "runs"), "--json", "--start", "scratch",
                 "--epochs", "1", "--max-steps-per-epoch", "2", "--device", "cpu",
                 "--methods", "l1", "--rates", "0.25,0.5", "--seeds", "0"]) == 0
    summaries = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["sparsity"] for s in summaries] == [0.25, 0.5]
    assert sorted(c.rate for c in calls["prepare"]) == [0.25, 0.5]     # once per run
    # the first run's check is its prepare's; the second is checked before anything is
    # stored, and again when it is prepared
    assert sorted(c.rate for c in calls["check"]) == [0.25, 0.5, 0.5]


def test_a_queued_cli_run_is_checked_once(tmp_path, capsys, monkeypatch):
    calls = _count(monkeypatch, "prepare", "check")
    assert main(["run", "--queue", "--store", str(tmp_path / "runs"), "--json",
                 "--method", "l1", "--rate", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    assert len(calls["prepare"]) == len(calls["check"]) == 1


def test_a_run_click_checks_the_config_once_in_the_dashboard(tmp_path, monkeypatch):
    """The form checks the config it builds; the click queues that config without checking it
    again (the worker prepares it when it trains it)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from pruneviz.store import Store
    from tests.helpers import wait_done

    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=60).run()
    at.number_input(key="live.epochs").set_value(1)
    at.number_input(key="live.dense_epochs").set_value(1)
    at.number_input(key="live.max_steps_per_epoch").set_value(2).run()
    calls = _count(monkeypatch, "check")
    at.button(key="live.run").click().run()
    store = Store(tmp_path / "runs")
    runs = store.runs().run_id.tolist()
    try:
        assert not at.exception and len(runs) == 1
        assert len(calls["check"]) == 1
    finally:
        for r in runs:
            store.request_cancel(r)
        wait_done(store, runs)
