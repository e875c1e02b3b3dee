"""Every registered method honours the session contract (a new method is tested the day it is
registered): it completes a short digits session, records every step, ends at its target
sparsity with the weights its held masks prune exactly zero, writes only the tables its family
declares, and its presets and schedule preview are valid."""

import pytest

from pruneviz.methods import load_all
from tests.helpers import (
    TRANSFORMER_DATA,
    check_declarations,
    check_session_contract,
    check_transformer_contract,
)

METHODS = sorted(load_all())


@pytest.mark.parametrize("name", METHODS)
def test_method_runs_a_session_to_its_target(name, shared_store, fast_config, monkeypatch):
    check_session_contract(name, shared_store, fast_config, monkeypatch)


@pytest.mark.parametrize("name", METHODS)
def test_method_declares_params_presets_and_a_schedule(name):
    check_declarations(name)


@pytest.mark.parametrize("model", sorted(TRANSFORMER_DATA))
@pytest.mark.parametrize("name", METHODS)
def test_method_runs_a_session_on_each_transformer(name, model, shared_store):
    check_transformer_contract(name, model, shared_store)
