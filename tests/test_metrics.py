"""FLOPs, parameter counts and sparsity, against hand counts and torch.utils.flop_counter."""

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

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


def test_flops_match_flop_counter_on_resnet20():
    model = build_model("resnet20", (3, 32, 32), 10).eval()
    with FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, 32, 32))
    assert count_flops(model, (3, 32, 32)) == fc.get_total_flops()
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
