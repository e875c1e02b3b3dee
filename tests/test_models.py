"""Every model builds for digits-sized and CIFAR-sized inputs and adapts its head."""

import pytest
import torch

from pruneviz.config import ConfigError
from pruneviz.models import MODELS, build_model, model_modality


@pytest.mark.parametrize("name", sorted(n for n in MODELS if model_modality(n) == "image"))
@pytest.mark.parametrize("shape,classes", [((1, 8, 8), 10), ((3, 32, 32), 100)])
def test_model_adapts_to_input_and_classes(name, shape, classes):
    model = build_model(name, shape, classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(n for n in MODELS if model_modality(n) == "text"))
def test_language_model_adapts_to_context_and_vocabulary(name):
    model = build_model(name, (32,), 100).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 100, (2, 32)))
    assert out.shape == (2, 32, 100)
    assert torch.isfinite(out).all()


def test_resnet_depths_and_parameter_counts():
    # He et al. 2016, table 6: 0.27M / 0.46M / 0.85M / 1.7M parameters
    for depth, params in ((20, 0.27e6), (32, 0.46e6), (56, 0.85e6), (110, 1.7e6)):
        model = build_model(f"resnet{depth}", (3, 32, 32), 10)
        n = sum(p.numel() for p in model.parameters())
        assert abs(n - params) / params < 0.03, (depth, n)


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="tiny_cnn"):
        build_model("resnet9000", (3, 32, 32), 10)
