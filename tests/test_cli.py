"""The CLI: a run end to end, list/show/export, and one clear exit-2 error per bad input."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from pruneviz.cli import main
from pruneviz.store import Store

FAST = ["--dense-epochs", "3", "--epochs", "2", "--device", "cpu"]
REQUIRED = {"run_id", "status", "method", "model", "dataset", "rate", "dense_accuracy",
            "final_accuracy", "sparsity", "params_total", "params_nonzero", "flops_dense",
            "flops_effective", "wall_s"}


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    """A store holding one completed run (and its dense baseline)."""
    root = tmp_path_factory.mktemp("cli") / "runs"
    assert main(["run", "--store", str(root), "--json", *FAST]) == 0
    return root


def _state(root):
    """Everything stored: runs and record counts (to check bad input changes nothing)."""
    s = Store(root)
    runs = s.runs(include_dense=True)
    counts = {r: len(s.scalars(r)) for r in runs.run_id}
    return runs.drop(columns=["step"]), counts


def test_run_json_last_line_has_the_summary(cli_store, capsys):
    assert main(["run", "--store", str(cli_store), "--json", "--method", "global_l1",
                 "--rate", "0.9", *FAST]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert REQUIRED <= set(summary)
    assert summary["status"] == "completed" and summary["method"] == "global_l1"
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_list_show_export(cli_store, capsys, tmp_path):
    assert main(["list", "--store", str(cli_store), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    run_id = runs[-1]["run_id"]
    assert main(["show", run_id, "--store", str(cli_store)]) == 0
    assert "final_accuracy" in capsys.readouterr().out
    out = tmp_path / "export"
    assert main(["export", run_id, "--store", str(cli_store), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["method"] == "l1"
    scalars = pd.read_csv(out / "scalars.csv")
    assert {"step", "epoch", "key", "value"} <= set(scalars.columns) and len(scalars) > 10
    weights = torch.load(out / "weights.pt", weights_only=True)
    masks = torch.load(out / "masks.pt", weights_only=True)
    for name, mask in masks.items():
        assert mask.dtype == torch.bool and torch.all(weights[name][~mask] == 0)


def test_sweep_runs_share_one_sweep_id(cli_store, capsys):
    assert main(["sweep", "--store", str(cli_store), "--methods", "l1,random", "--rates",
                 "0.5", "--json", *FAST]) == 0
    ids = {s["run_id"] for s in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    runs = Store(cli_store).runs().set_index("run_id").loc[list(ids)]
    assert runs.sweep_id.nunique() == 1 and runs.sweep_id.iloc[0].startswith("sweep-")


def test_methods_lists_parameters(capsys):
    assert main(["methods", "--json"]) == 0
    methods = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"random", "l1", "global_l1", "l2_filter", "gmp", "dense"} <= set(methods)
    assert any(p["name"] == "end" for p in methods["gmp"]["params"])


BAD = [
    (["--rate", "-0.1"], "rate"),
    (["--rate", "1"], "rate"),
    (["--rate", "1.5"], "rate"),
    (["--rate", "nan"], "rate"),
    (["--rate", "abc"], "--rate"),
    (["--method", "magic"], "unknown method"),
    (["--model", "resnet9000"], "unknown model"),
    (["--dataset", "imagenet99"], "unknown dataset"),
    (["--method", "l2_filter", "--model", "mlp"], "no convolutions"),
    (["--param", "every"], "NAME=VALUE"),
    (["--method", "gmp", "--param", "nonsense=1"], "no parameter"),
    (["--method", "gmp", "--param", "end=lots"], "end"),
    (["--method", "gmp", "--param", "end=7"], "end"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/pruneviz-data"], "--download"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_clear_line_and_changes_nothing(cli_store, capsys, args,
                                                                   needle):
    before = _state(cli_store)
    assert main(["run", "--store", str(cli_store), *FAST, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:") and needle in err[0], err
    after = _state(cli_store)
    assert before[0].equals(after[0]) and before[1] == after[1]


def test_unwritable_store_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["run", "--store", str(tmp_path / "file" / "runs"), *FAST]) == 2
    assert "cannot write to the store folder" in capsys.readouterr().err


def test_corrupt_store_exits_2_and_keeps_the_file(tmp_path, capsys):
    db = tmp_path / "pruneviz.sqlite"
    db.write_bytes(b"garbage" * 50)
    assert main(["list", "--store", str(tmp_path)]) == 2
    assert "not a readable pruneviz store" in capsys.readouterr().err
    assert db.read_bytes() == b"garbage" * 50


def test_exit_code_from_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pruneviz", "run", "--store", str(tmp_path),
                           "--rate", "2"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("pruneviz: error: rate")
