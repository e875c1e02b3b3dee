"""FLOPs, parameter counts and sparsity, against hand counts and torch.utils.flop_counter."""

import torch
import torch.nn as nn

from pruneviz.masks import Layer
from pruneviz.metrics import (
    count_flops,
    effective_flops,
    flops_by_module,
    layer_stats,
    param_counts,
    prunable_sparsity,
)
from pruneviz.models import build_model


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_flops_of_a_known_conv_linear_stack():
    model = Stack()
    conv_macs = 3 * 8 * 3 * 3 * 4 * 4   # in * out * k * k * H * W
    fc_macs = 8 * 4 * 4 * 10
    per = flops_by_module(model, (3, 4, 4))
    assert per["conv"] == 2 * conv_macs
    assert per["fc"] == 2 * fc_macs
    assert count_flops(model, (3, 4, 4)) == 2 * (conv_macs + fc_macs)


def _hooked_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """2 x multiply-adds of every conv and linear, from the output shapes forward hooks see: an
    oracle that shares nothing with flop_counter, which count_flops is built on."""
    total = 0

    def count(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            total += 2 * k * out.numel()
        else:
            total += 2 * m.in_features * out.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    model(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    return total


def test_flops_match_an_independent_count_on_resnet20():
    model = build_model("resnet20", (3, 32, 32), 10).eval()
    assert count_flops(model, (3, 32, 32)) == _hooked_flops(model, (3, 32, 32))
    # He et al.'s ResNet-20 is 40.6 M multiply-adds with option-A shortcuts; our option-B
    # projections add two 1x1 convs (16x32 at 16x16, 32x64 at 8x8) = 0.26 M.
    assert count_flops(model, (3, 32, 32)) / 2 == 40_550_400 + 16 * 32 * 256 + 32 * 64 * 64 + 640


def test_effective_flops_scale_with_weight_density():
    model = Stack()
    with torch.no_grad():
        model.conv.weight[:4] = 0        # half the conv's filters
    per = flops_by_module(model, (3, 4, 4))
    assert effective_flops(model, (3, 4, 4)) == per[""] - per["conv"] // 2


def test_param_counts_and_sparsity():
    model = Stack()
    with torch.no_grad():
        model.fc.weight[:, :64] = 0
    total, nonzero = param_counts(model)
    assert total == sum(p.numel() for p in model.parameters())
    assert nonzero == total - 640
    layers = [Layer("conv", model.conv), Layer("fc", model.fc)]
    assert prunable_sparsity(layers) == 640 / (216 + 1280)
    stats = layer_stats(Layer("fc", model.fc))
    assert stats["sparsity"] == 0.5 and stats["keep_rate"] == 1.0


def test_shrunk_and_masked_filter_pruning_report_the_same_sparsity():
    from pruneviz.masks import apply_masks, filter_param_masks, prunable_layers
    from pruneviz.surgery import remove_filters

    torch.manual_seed(0)
    masked = build_model("tiny_cnn", (1, 8, 8), 10)
    shrunk = build_model("tiny_cnn", (1, 8, 8), 10)
    shrunk.load_state_dict(masked.state_dict())
    layers = prunable_layers(masked, linears=False)
    dense = {l.name: l.module.weight.shape for l in layers}
    plan = {"conv1": [0, 1, 2, 3], "conv2": list(range(0, 32, 2))}
    zeroed = {"conv2": [1, 3], "conv3": [5]}     # zeroed, not removed (a soft reset)
    masks = {}
    for l in layers:
        fmask = torch.ones(l.module.out_channels)
        fmask[plan.get(l.name, []) + zeroed.get(l.name, [])] = 0
        masks.update(filter_param_masks(l, fmask))
    apply_masks(masked, masks)
    with torch.no_grad():
        for name, idx in zeroed.items():
            shrunk.get_submodule(name).weight[idx] = 0
    remove_filters(shrunk, torch.zeros(1, 1, 8, 8), plan)
    small = prunable_layers(shrunk, linears=False)
    # conv2 and conv3 lost input channels too; only removed or zeroed filters count as pruned
    expected = (4 * 9 + 18 * 16 * 9 + 32 * 9) / (16 * 9 + 32 * 16 * 9 + 64 * 32 * 9)
    assert prunable_sparsity(layers) == prunable_sparsity(small, dense) == expected
    for a, b in zip(layers, small):
        ref, got = layer_stats(a), layer_stats(b, dense[b.name])
        assert (ref["sparsity"], ref["keep_rate"]) == (got["sparsity"], got["keep_rate"])


def test_a_speed_verdict_is_named_only_outside_the_measured_noise():
    from pruneviz.panel_text import speed_verdict

    # the badge: "6.07x slower" for a compact model identical to the dense one
    assert speed_verdict({"speedup": 1 / 6.07, "spread": 3.0}, same_network=True) == \
        "same network"
    assert speed_verdict({"speedup": 1 / 1.3, "spread": 0.5}) == "same speed (within noise)"
    assert speed_verdict({"speedup": 1.05, "spread": 0.01}) == "same speed (within noise)"
    assert speed_verdict({"speedup": 1.42, "spread": 0.05}) == "1.42x faster"
    assert speed_verdict({"speedup": 1 / 1.3, "spread": 0.05}) == "1.30x slower"
