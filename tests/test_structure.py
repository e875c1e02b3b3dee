"""The structure found by tracing: on the built-in models it equals the name rules; on other
models what stays dense is named with its reason, and filter methods skip it."""

import pytest
import torch
import torch.nn as nn

from pruneviz.config import ConfigError, SessionConfig
from pruneviz.masks import check_method, conv_bn_pairs, is_shortcut, prunable_layers
from pruneviz.models import MODELS, build_model
from pruneviz.modelspec import build_spec
from pruneviz.session import run_session, set_ignore_patterns
from pruneviz.store import Store
from pruneviz.structure import lookup, remember, trace, unpruned_layers
from pruneviz.transformers import TRANSFORMERS

SMALL = {"tiny_cnn": (1, 8, 8), "mlp": (1, 8, 8), "lenet5": (1, 8, 8)}
# The deeper variants trace in seconds on 2 cores and are built by the same code as these (all
# 13 were checked once when the traced rules were written).
# The transformers' structures are heads and neurons (transformers.py), not traced channels.
TRACED = [n for n in MODELS if n not in ("resnet56", "resnet110", "vgg16", "vgg19", "resnet50",
                                         *TRANSFORMERS)]


@pytest.mark.parametrize("name", TRACED)
def test_trace_of_a_builtin_model_equals_its_name_rules(name):
    shape = SMALL.get(name, (3, 32, 32))
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    st = trace(model, torch.zeros(1, *shape))
    modules = dict(model.named_modules())
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    assert st.layers == [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert {k: v for k, v in st.norms.items() if k in convs} == conv_bn_pairs(model)
    assert st.shortcuts == {n for n in convs if is_shortcut(n)}
    assert st.classifier == linears[-1]
    assert st.inputs == (convs[:1] or linears[:1])
    assert not st.dense and not st.filter_dense
    # the same layers, norms and order for every selection the methods make
    remember(model, shape)
    for kw in (dict(), dict(linears=False, first_conv=True), dict(first_conv=False),
               dict(linears=False, first_conv=True, shortcuts=True),
               dict(first_conv=True, last_linear=True, shortcuts=True)):
        traced = [(l.name, l.bn_name) for l in prunable_layers(model, **kw)]
        fresh = build_model(name, shape, 10)
        assert traced == [(l.name, l.bn_name) for l in prunable_layers(fresh, **kw)], kw


class Odd(nn.Module):
    """A grouped conv, a conv feeding it, a LayerNorm over channels, a free parameter, a conv
    the forward never calls, and a 1-D conv."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.feed = nn.Conv2d(8, 8, 1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.ln_conv = nn.Conv2d(8, 8, 1)
        self.ln = nn.GroupNorm(1, 8)
        self.scale = nn.Parameter(torch.ones(8))
        self.unused = nn.Conv2d(8, 8, 1)
        self.seq = nn.Conv1d(8, 8, 1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.bn(self.stem(x)).relu()
        x = self.grouped(self.feed(x)).relu()
        x = self.ln(self.ln_conv(x)) * self.scale.view(1, -1, 1, 1)
        return self.head(x.mean((2, 3)))


def test_what_cannot_be_pruned_is_named_with_its_reason():
    model = Odd()
    remember(model, (1, 8, 8))
    st = lookup(model)
    assert st.inputs == ["stem"] and st.classifier == "head" and st.norms["stem"] == "bn"
    assert "not reached" in st.dense["unused"] and "Conv1d" in st.dense["seq"]
    assert "unwrapped parameter" in st.dense["scale"]
    assert "grouped conv (groups=2)" in st.filter_dense["grouped"]
    assert "grouped conv grouped" in st.filter_dense["feed"]
    assert "GroupNorm ln" in st.filter_dense["ln_conv"]
    filters = [l.name for l in prunable_layers(model, linears=False, first_conv=True)]
    assert filters == ["stem"]
    weights = [l.name for l in prunable_layers(model, first_conv=False)]
    assert weights == ["feed", "grouped", "ln_conv"]     # input conv and classifier kept
    lines = unpruned_layers(model, "filter")
    assert any(line.startswith("grouped: grouped conv") for line in lines)
    assert len(unpruned_layers(model, "unstructured")) == len(st.dense)


def test_ignore_leaves_matching_layers_dense_and_rejects_a_pattern_matching_nothing():
    model = build_model("resnet20", (3, 32, 32), 10)
    set_ignore_patterns(model, "layer1,fc")
    names = [l.name for l in prunable_layers(model, first_conv=False, last_linear=True)]
    assert names and not any(n.startswith("layer1.") or n == "fc" for n in names)
    assert any("layer1.0.conv1: matched ignore=" in s for s in unpruned_layers(model, "filter"))
    with pytest.raises(ConfigError, match="matches no conv or linear"):
        set_ignore_patterns(build_model("resnet20", (3, 32, 32), 10), "layer9")


def test_filter_method_on_an_untraceable_model_says_why():
    model = build_spec("torchvision:shufflenet_v2_x0_5", (3, 32, 32), 10)
    assert lookup(model).error
    with pytest.raises(ConfigError, match="could not trace"):
        check_method(model, "l2_filter", "filter")
    check_method(model, "l1", "unstructured")     # masks need no trace


def test_run_summary_names_unpruned_layers(tmp_path, monkeypatch):
    path = tmp_path / "odd.py"
    path.write_text("import torch\nimport torch.nn as nn\n"
                    + __import__("inspect").getsource(Odd)
                    + "\ndef build(in_channels, num_classes):\n"
                      "    return Odd(in_channels, num_classes)\n")
    config = SessionConfig(method="l2_filter", rate=0.5, model=f"{path}:build", epochs=1,
                           start="scratch", max_steps_per_epoch=2, eval_limit=32, device="cpu",
                           params={"ignore": "head"})
    summary = run_session(config, Store(tmp_path / "runs"))
    assert summary["status"] == "completed"
    lines = summary["unpruned_layers"]
    assert any(s.startswith("feed: ") for s in lines) and any("ignore=head" in s for s in lines)


class Concat(nn.Module):
    """A linear reading a concatenation of two channel groups."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.wide = nn.Conv2d(16, 32, 1)
        self.head = nn.Linear(48, 10)

    def forward(self, x):
        x = self.stem(x).relu()
        return self.head(torch.cat([self.wide(x), x], 1).mean((2, 3)))


def test_a_surgery_cutting_one_tensor_twice_keeps_its_original_positions():
    from copy import deepcopy

    from pruneviz.surgery import expand_state_dict, remove_filters

    model = Concat()
    small = deepcopy(model)
    removal, _ = remove_filters(small, torch.zeros(1, 1, 8, 8), {"stem": [0, 1], "wide": [0, 1]})
    state = expand_state_dict(small.state_dict(), removal, model.state_dict())
    gone = [0, 1, 32, 33]          # wide's first two outputs, then stem's after the concat
    kept = [i for i in range(48) if i not in gone]
    assert torch.equal(state["head.weight"][:, kept], model.head.weight.detach()[:, kept])
    assert not state["head.weight"][:, gone].any()
