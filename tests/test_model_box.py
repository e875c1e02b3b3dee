"""The forms' model box: a typed spec shows inline what pruneviz found in the model; a wrong
path, factory or weights file is an inline message naming the control, and Run stays off."""

import textwrap
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
NET = textwrap.dedent('''
    import torch.nn as nn

    def build(in_channels, num_classes):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8),
                             nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
''')


@pytest.fixture
def live(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEVIZ_STORE", str(tmp_path / "runs"))
    (tmp_path / "net.py").write_text(NET)
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)


def _type_model(at, spec: str) -> None:
    """Open the page with a spec typed into the model box (AppTest's set_value takes only
    listed options; the box lists a typed value its state holds, as after typing it)."""
    at.session_state["live.model"] = spec
    at.run()


def _errors(at) -> str:
    return " ".join(e.value for e in at.error)


def test_a_typed_spec_shows_what_was_found_and_enables_run(live, tmp_path):
    at = live
    _type_model(at, f"{tmp_path / 'net.py'}:build")
    assert not at.exception and not at.error, _errors(at)
    found = " ".join(i.value for i in at.info)
    assert "parameters" in found and "coupled channel groups" in found
    assert "removing filters must keep every group" in found     # what stays dense, and why
    assert not at.button(key="live.run").disabled


@pytest.mark.parametrize("spec,needle", [
    ("{tmp}/absent.py:build", "no such file"),
    ("{tmp}/net.py:nosuch", "defines no 'nosuch'"),
    ("torchvision:resnet9000", "torchvision has no"),
])
def test_a_wrong_spec_names_the_model_box_and_disables_run(live, tmp_path, spec, needle):
    at = live
    _type_model(at, spec.format(tmp=tmp_path))
    assert not at.exception
    assert "**model**" in _errors(at) and needle in _errors(at), _errors(at)
    assert at.button(key="live.run").disabled


def test_a_wrong_weights_file_names_the_weights_field_and_disables_run(live, tmp_path):
    at = live
    torch.save({"nope": torch.ones(1)}, tmp_path / "bad.pt")
    _type_model(at, f"{tmp_path / 'net.py'}:build")
    at.text_input(key="live.weights").input(str(tmp_path / "bad.pt")).run()
    assert not at.exception
    assert "**weights**" in _errors(at) and "nope" in _errors(at), _errors(at)
    assert at.button(key="live.run").disabled
