"""`sweep --param` reaches every listed method that has the parameter, or the sweep is refused
before anything is queued; `--param-for METHOD:NAME=VALUE` scopes one to a method."""

import json

import pytest

from pruneviz import workers
from pruneviz.cli import main
from pruneviz.config import ConfigError, SessionConfig
from pruneviz.methods.base import get_method, takes_pattern
from pruneviz.store import Store

FAST = ["--dense-epochs", "3", "--epochs", "1", "--device", "cpu", "--max-steps-per-epoch", "4"]


def _queued_params(root, printed: str) -> dict[str, dict]:
    ids = json.loads(printed.strip().splitlines()[-1])["run_ids"]
    store = Store(root)
    return {store.run(r)["method"]: store.run(r)["config"].params for r in ids}


def _one_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pruneviz: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def test_a_sweep_param_is_stored_for_every_listed_method(tmp_path, capsys):
    assert main(["sweep", "--queue", "--json", "--store", str(tmp_path), "--methods",
                 "l2_filter,pgmpf", "--rates", "0.4", "--param", "round_to=8"]) == 0
    params = _queued_params(tmp_path, capsys.readouterr().out)
    assert params == {"l2_filter": {"round_to": "8"}, "pgmpf": {"round_to": "8"}}


def test_a_foreground_sweep_trains_every_method_with_the_param(tmp_path, capsys):
    assert main(["sweep", "--json", "--store", str(tmp_path), "--methods", "l2_filter,sfp",
                 "--rates", "0.4", "--param", "round_to=8", *FAST]) == 0
    summaries = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {s["method"] for s in summaries} == {"l2_filter", "sfp"}
    store = Store(tmp_path)
    for s in summaries:
        assert s["round_to"] == 8, s
        assert store.run(s["run_id"])["config"].params == {"round_to": "8"}


def _nothing_stored(root) -> bool:
    return not (root / "pruneviz.sqlite").exists() or Store(root).runs(include_dense=True).empty


def test_a_param_no_listed_method_has_is_refused_before_anything_is_queued(tmp_path, capsys):
    assert main(["sweep", "--queue", "--store", str(tmp_path), "--methods", "l2_filter,pgmpf",
                 "--rates", "0.4", "--param", "nosuch=1"]) == 2
    _one_error(capsys, "nosuch", "l2_filter, pgmpf", "pruneviz methods")
    assert _nothing_stored(tmp_path)


def test_a_param_only_some_methods_have_names_which_and_is_refused(tmp_path, capsys):
    have = sorted(m for m in ("l1", "pgmpf") if takes_pattern(get_method(m)))
    assert have == ["l1"]          # the case the rule is about: one has nm, one has not
    assert main(["sweep", "--queue", "--store", str(tmp_path), "--methods", "l1,pgmpf",
                 "--rates", "0.5", "--param", "nm=2:4"]) == 2
    _one_error(capsys, "l1 has it", "pgmpf does not", "--param-for l1:nm=2:4")
    assert _nothing_stored(tmp_path)


def test_param_for_scopes_a_param_to_one_method(tmp_path, capsys):
    assert main(["sweep", "--queue", "--json", "--store", str(tmp_path), "--methods",
                 "l1,pgmpf", "--rates", "0.5", "--param-for", "l1:nm=2:4", "--param-for",
                 "pgmpf:round_to=8"]) == 0
    params = _queued_params(tmp_path, capsys.readouterr().out)
    assert params == {"l1": {"nm": "2:4"}, "pgmpf": {"round_to": "8"}}


def test_param_for_overrides_a_shared_param_for_its_method(tmp_path, capsys):
    assert main(["sweep", "--queue", "--json", "--store", str(tmp_path), "--methods",
                 "l2_filter,pgmpf", "--rates", "0.4", "--param", "round_to=8", "--param-for",
                 "pgmpf:round_to=4"]) == 0
    params = _queued_params(tmp_path, capsys.readouterr().out)
    assert params == {"l2_filter": {"round_to": "8"}, "pgmpf": {"round_to": "4"}}


@pytest.mark.parametrize("args, needles", [
    (["--param-for", "nm=2:4"], ["METHOD:NAME=VALUE"]),
    (["--param-for", "gmp:nm=2:4"], ["'gmp' is not one of --methods"]),
    (["--param-for", "pgmpf:nm=2:4"], ["does not apply to pgmpf"]),
    (["--param-for", "pgmpf:nosuch=1"], ["pgmpf has no parameter nosuch"]),
    (["--param-for", "l1:nm=2:4", "--rates", "0.5,0.9"], ["cannot train at rate 0.9"]),
])
def test_bad_param_for_is_one_line_and_nothing_is_queued(tmp_path, capsys, args, needles):
    rates = [] if "--rates" in args else ["--rates", "0.5"]
    assert main(["sweep", "--queue", "--store", str(tmp_path), "--methods", "l1,pgmpf",
                 *rates, *args]) == 2
    _one_error(capsys, *needles)
    assert _nothing_stored(tmp_path)


def test_grid_never_drops_a_base_param_for_a_method():
    base = SessionConfig(method="l1", params={"round_to": "8"})
    configs = workers.grid(base, ["l2_filter", "pgmpf"], [0.4], [0, 1])
    assert [c.params for c in configs] == [{"round_to": "8"}] * 4
    with pytest.raises(ConfigError, match="only some"):
        workers.grid(base, ["l2_filter", "l1"], [0.4], [0])
