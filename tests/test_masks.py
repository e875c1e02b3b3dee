"""Our masks against torch.nn.utils.prune, and the helpers' invariants."""

import pytest
import torch
import torch.fx
import torch.nn as nn
import torch.nn.utils.prune as prune

from pruneviz.masks import (
    apply_masks,
    conv_bn_pairs,
    erk_densities,
    filter_mask,
    filter_norms,
    global_magnitude,
    layerwise_magnitude,
    n_prune,
    prunable_layers,
)
from pruneviz.models import MODELS, TORCHVISION, build_model, model_modality


def _weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(16, 8, 3, 3, generator=g),
            "b.weight": torch.randn(10, 40, generator=g)}


def test_layerwise_mask_equals_l1_unstructured():
    for rate in (0.0, 0.3, 0.5, 0.9):
        for name, w in _weights().items():
            m = nn.Linear(1, 1)
            m.weight = nn.Parameter(w.clone())
            prune.l1_unstructured(m, "weight", amount=rate)
            ours = layerwise_magnitude({name: w}, rate)[name]
            assert torch.equal(ours, m.weight_mask), (name, rate)


def test_global_mask_equals_global_unstructured():
    ws = _weights(1)
    mods = []
    for w in ws.values():
        m = nn.Linear(1, 1)
        m.weight = nn.Parameter(w.clone())
        mods.append(m)
    prune.global_unstructured([(m, "weight") for m in mods], prune.L1Unstructured, amount=0.7)
    ours = global_magnitude({k: w.abs() for k, w in ws.items()}, 0.7)
    for m, k in zip(mods, ws):
        assert torch.equal(ours[k], m.weight_mask)


def test_filter_mask_equals_ln_structured():
    w = _weights(2)["a.weight"]
    for rate in (0.25, 0.5, 0.75):
        conv = nn.Conv2d(8, 16, 3)
        conv.weight = nn.Parameter(w.clone())
        prune.ln_structured(conv, "weight", amount=rate, n=2, dim=0)
        fmask = filter_mask(filter_norms(w), n_prune(16, rate))
        assert torch.equal(fmask.view(-1, 1, 1, 1).expand_as(w), conv.weight_mask)


def test_apply_masks_zeroes_in_place_and_keeps_parameter_identity():
    model = nn.Sequential(nn.Linear(4, 3))
    before = id(model[0].weight)
    mask = torch.tensor([[1.0, 0, 1, 0]] * 3)
    apply_masks(model, {"0.weight": mask})
    assert id(model[0].weight) == before
    assert torch.all(model[0].weight[:, [1, 3]] == 0)
    assert torch.all(model[0].weight[:, [0, 2]] != 0)


def test_prunable_layers_rules_on_a_resnet():
    model = build_model("resnet20", (3, 32, 32), 10)
    filt = prunable_layers(model, linears=False, first_conv=True)
    names = [l.name for l in filt]
    assert names[0] == "conv1"
    assert not any("shortcut" in n for n in names)
    assert len(names) == 19                    # 1 stem conv + 18 block convs
    assert all(l.bn is not None for l in filt)  # every conv has its BN found
    unstr = prunable_layers(model, first_conv=False, last_linear=False)
    assert "conv1" not in [l.name for l in unstr] and "fc" not in [l.name for l in unstr]
    assert "fc" in [l.name for l in prunable_layers(model, last_linear=True)]


def _traced_pairs(model):
    """Oracle: convs whose only consumer in the FX graph is a BatchNorm2d."""
    graph, modules = torch.fx.symbolic_trace(model).graph, dict(model.named_modules())
    return {n.target: next(iter(n.users)).target for n in graph.nodes
            if n.op == "call_module" and isinstance(modules[n.target], torch.nn.Conv2d)
            and len(n.users) == 1 and next(iter(n.users)).op == "call_module"
            and isinstance(modules[next(iter(n.users)).target], torch.nn.BatchNorm2d)}


# every image model (a language model takes token ids, not an image)
@pytest.mark.parametrize("name", [n for n in MODELS if model_modality(n) == "image"])
def test_conv_bn_pairs_equal_the_traced_graph_for_every_model(name):
    shape = (3, 64, 64) if name in TORCHVISION else (3, 32, 32)
    model = build_model(name, shape, 10)
    assert conv_bn_pairs(model) == _traced_pairs(model)


def test_conv_bn_pairs_follow_the_graph():
    pairs = conv_bn_pairs(build_model("resnet20", (3, 32, 32), 10))
    assert pairs["layer2.0.conv1"] == "layer2.0.bn1"
    assert pairs["layer2.0.shortcut.0"] == "layer2.0.shortcut.1"


def test_pairing_does_not_disturb_forward_passes_in_other_threads():
    """FX tracing patches nn.Module.__call__ for every thread; pairing must not trace."""
    import threading
    model, x = build_model("tiny_cnn", (1, 8, 8), 10), torch.zeros(2, 1, 8, 8)
    errors, stop = [], threading.Event()

    def forward_loop():
        while not stop.is_set():
            try:
                model(x)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return
    worker = threading.Thread(target=forward_loop)
    worker.start()
    try:
        for _ in range(30):
            conv_bn_pairs(build_model("resnet20", (3, 32, 32), 10))
    finally:
        stop.set()
        worker.join()
    assert not errors


def test_erk_densities_hit_global_density_and_follow_erk_proportions():
    shapes = {"c1": torch.Size([32, 16, 3, 3]), "c2": torch.Size([64, 32, 3, 3]),
              "fc": torch.Size([10, 64])}
    d = erk_densities(shapes, 0.5)
    total = sum(s.numel() for s in shapes.values())
    assert abs(sum(d[k] * shapes[k].numel() for k in shapes) / total - 0.5) < 1e-9
    ratio = lambda k: sum(shapes[k]) / shapes[k].numel()  # noqa: E731
    dense = [k for k in d if d[k] >= 1.0]
    rest = [k for k in d if k not in dense]
    for a in rest:
        for b in rest:
            assert abs(d[a] / d[b] - ratio(a) / ratio(b)) < 1e-9
