"""Physical filter removal: the shrunk model computes what the masked model computes, and the
optimizer follows the surgery."""

import pytest
import torch
import torch.nn as nn

from pruneviz.masks import apply_masks, conv_bn_pairs, filter_param_masks, prunable_layers
from pruneviz.models import build_model
from pruneviz.surgery import channel_groups, compact, remove_filters
from tests.helpers import randomize_bn

SHAPES = {"tiny_cnn": (1, 8, 8), "vgg11": (3, 32, 32), "resnet20": (3, 32, 32),
          "lenet5": (1, 8, 8)}


def _uneven_plan(model, shape):
    """Per coupled group, remove a different number of channels (uneven per-layer keeps)."""
    plan = {}
    for i, group in enumerate(channel_groups(model, torch.zeros(1, *shape))):
        n = model.get_submodule(group[0]).out_channels
        k = (i % 3 + 1) * n // 8
        if k:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(i))[:k].tolist()
            for name in group:
                plan[name] = idx
    return plan


def _mask(model, plan):
    layers = {l.name: l for l in prunable_layers(model, linears=False, shortcuts=True)}
    masks = {}
    for name, idx in plan.items():
        fmask = torch.ones(model.get_submodule(name).out_channels)
        fmask[idx] = 0
        masks.update(filter_param_masks(layers[name], fmask))
    apply_masks(model, masks)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shrunk_model_equals_masked_model(name):
    shape = SHAPES[name]
    torch.manual_seed(0)
    model = build_model(name, shape, 10)
    randomize_bn(model)
    plan = _uneven_plan(model, shape)
    assert plan, "nothing to remove"
    _mask(model, plan)
    model.eval()
    x = torch.randn(4, *shape)
    expected = model(x)
    one_per_group = {}
    for group in channel_groups(model, x[:1]):
        if group[0] in plan:
            one_per_group[group[0]] = plan[group[0]]
    before = sum(p.numel() for p in model.parameters())
    remove_filters(model, x[:1], one_per_group)
    assert sum(p.numel() for p in model.parameters()) < before
    assert (model(x) - expected).abs().max().item() <= 1e-5


def test_residual_stage_convs_form_one_group():
    model = build_model("resnet20", (3, 32, 32), 10)
    groups = channel_groups(model, torch.zeros(1, 3, 32, 32))
    stage2 = next(g for g in groups if "layer2.0.conv2" in g)
    assert set(stage2) == {"layer2.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv2",
                           "layer2.2.conv2"}
    assert ["layer2.0.conv1"] in groups


def test_optimizer_follows_the_surgery():
    torch.manual_seed(0)
    model = build_model("resnet20", (3, 16, 16), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    old_buf = opt.state[model.layer1[0].conv1.weight]["momentum_buffer"].clone()
    removal, opt = remove_filters(model, x[:1], {"layer1.0.conv1": [1, 5, 7]}, opt)
    w = model.layer1[0].conv1.weight
    assert w.shape[0] == 13
    buf = opt.state[w]["momentum_buffer"]
    keep = [i for i in range(16) if i not in (1, 5, 7)]
    assert torch.equal(buf, old_buf[keep])
    consumer = model.layer1[0].conv2.weight
    assert opt.state[consumer]["momentum_buffer"].shape == consumer.shape == (16, 13, 3, 3)
    for p in model.parameters():
        if p in opt.state:
            assert opt.state[p]["momentum_buffer"].shape == p.shape
    g = opt.param_groups[0]
    assert (g["weight_decay"], g["momentum"], g["nesterov"]) == (5e-4, 0.9, True)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()   # a step runs on the shrunk model
    assert removal.kept["layer1.0.bn1.running_mean"][0].tolist() == keep


def test_compact_removes_dead_filters_and_keeps_outputs():
    torch.manual_seed(0)
    model = build_model("resnet20", (3, 32, 32), 10)
    randomize_bn(model)
    layers = prunable_layers(model, linears=False)
    masks = {}
    for l in layers:
        fmask = torch.ones(l.module.out_channels)
        fmask[: l.module.out_channels // 2] = 0     # every prunable conv loses half
        masks.update(filter_param_masks(l, fmask))
    apply_masks(model, masks)
    small, report = compact(model, (3, 32, 32))
    assert report["max_abs_diff"] <= 1e-5
    # block-internal convs shrink; block outputs are coupled to the (unpruned) shortcut convs,
    # so only the stem/stage-1 group (no shortcut) can lose its channels
    assert small.layer2[0].conv1.out_channels == 16
    assert small.layer1[0].conv2.out_channels == 8
    assert small.layer2[0].conv2.out_channels == 32
    assert report["filters_removed"] > 0
    assert conv_bn_pairs(small)     # still a well-formed model


def test_surgery_keeps_each_module_in_its_training_mode():
    model = build_model("resnet20", (3, 16, 16), 10)
    model.train()
    model.layer1[0].bn1.eval()                  # a deliberately frozen BatchNorm stays frozen
    modes = {n: m.training for n, m in model.named_modules()}
    x = torch.zeros(1, 3, 16, 16)
    channel_groups(model, x)
    remove_filters(model, x, {"layer1.0.conv1": [0, 3]})
    assert {n: m.training for n, m in model.named_modules()} == modes
