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
