"""The model zoo: torchvision classifiers and a small VisionTransformer, each with l1, gmp,
l2_filter, pgmpf, pgp and slr, a step each on 32x32 images: the run completes, the rate holds on
what is prunable, what stays dense is named, the compact model equals the masked one, and the
classifier never loses an output to a filter method. A pair that cannot run says why."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from pruneviz.config import ConfigError, SessionConfig
from pruneviz.safe_load import load_tensors
from pruneviz.session import run_session
from pruneviz.store import Store

ZOO = ["torchvision:mobilenet_v3_small", "torchvision:efficientnet_b0",
       "torchvision:regnet_x_400mf", "torchvision:convnext_tiny",
       "torchvision:shufflenet_v2_x0_5", "torchvision:densenet121", "torchvision:squeezenet1_0",
       "vit"]
METHODS = ["l1", "gmp", "l2_filter", "pgmpf", "pgp", "slr"]
FILTER = {"l2_filter", "pgmpf", "pgp"}
# Filter methods need the traced groups, which Torch-Pruning cannot build through
# shufflenet's channel shuffle; on the ViT the only conv is the patch embedding (input conv).
UNSUPPORTED = {("torchvision:shufflenet_v2_x0_5", m): "could not trace" for m in FILTER}
UNSUPPORTED.update({("vit", m): "no conv of this model" for m in FILTER})
# ConvNeXt's convs are depthwise or feed LayerNorms over channels: none can lose filters.
UNSUPPORTED.update({("torchvision:convnext_tiny", m): "no conv of this model" for m in FILTER})
CLASSIFIER = {"torchvision:mobilenet_v3_small": "classifier.3", "torchvision:efficientnet_b0":
              "classifier.1", "torchvision:regnet_x_400mf": "fc", "torchvision:convnext_tiny":
              "classifier.2", "torchvision:shufflenet_v2_x0_5": "fc",
              "torchvision:densenet121": "classifier", "torchvision:squeezenet1_0":
              "classifier.1", "vit": "heads.head"}
GROUPED = ("torchvision:mobilenet_v3_small", "torchvision:efficientnet_b0",
           "torchvision:regnet_x_400mf")
VIT = """
from torchvision.models import VisionTransformer

def build(image_size, num_classes):
    return VisionTransformer(image_size=image_size, patch_size=8, num_layers=1, num_heads=2,
                             hidden_dim=16, mlp_dim=32, num_classes=num_classes)
"""


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A 32x32 two-class image folder, a ViT factory file and a store."""
    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "images" / c).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / c / f"{i}.png")
    (root / "vit.py").write_text(VIT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # 2 shared cores: one thread is several times faster here
    yield root
    torch.set_num_threads(threads)


# Every pair takes 1-60 s on 2 shared cores; by default a subset that covers each model and
# each method, PRUNEVIZ_ZOO=full for all 48.
QUICK = {"torchvision:mobilenet_v3_small": METHODS, "torchvision:regnet_x_400mf": METHODS,
         "torchvision:squeezenet1_0": METHODS, "vit": ["l1", "gmp", "slr", "l2_filter"],
         "torchvision:shufflenet_v2_x0_5": ["l1", "gmp", "pgp"],
         "torchvision:efficientnet_b0": ["l1", "pgmpf"],
         "torchvision:densenet121": ["l1", "l2_filter"],
         "torchvision:convnext_tiny": ["gmp", "l2_filter"]}
PAIRS = [(m, k) for m in ZOO for k in METHODS
         if os.environ.get("PRUNEVIZ_ZOO") == "full" or k in QUICK[m]]
# One step leaves BatchNorm's running statistics near their initial values, which some deep
# nets blow up to inf in eval mode; compact() then says so instead of comparing.
NOT_FINITE = "outputs are not finite"


@pytest.mark.parametrize("model,method", PAIRS)
def test_zoo_model_prunes_or_says_why(zoo, model, method):
    spec = f"{zoo / 'vit.py'}:build" if model == "vit" else model
    config = SessionConfig(method=method, rate=0.5, model=spec, dataset=f"folder:{zoo / 'images'}",
                           image_size=32, epochs=1, start="scratch", batch_size=4,
                           max_steps_per_epoch=1, eval_limit=4, device="cpu")
    store = Store(zoo / "runs")
    if (model, method) in UNSUPPORTED:
        with pytest.raises(ConfigError, match=UNSUPPORTED[model, method]):
            run_session(config, store)
        return
    summary = run_session(config, store)
    assert summary["status"] == "completed", summary.get("error")
    if method == "pgp":       # its schedule removes filters over epochs; one epoch is a start
        assert 0 < summary["sparsity"] <= 0.5 + 1e-6
    else:
        assert summary["sparsity"] == pytest.approx(0.5, abs=0.03)
    # compact() raises unless the compact model's outputs equal the masked model's
    assert NOT_FINITE in summary.get("compact_error", NOT_FINITE), summary["compact_error"]
    lines = summary.get("unpruned_layers", [])
    if method in FILTER and model in GROUPED:     # depthwise or grouped convs, named
        assert any("depthwise" in line or "grouped" in line for line in lines), lines
    if model in ("torchvision:convnext_tiny", "vit"):
        assert any("unwrapped parameter" in line for line in lines)
    folder = store.run_dir(summary["run_id"])
    head = f"{CLASSIFIER[model]}.weight"
    assert load_tensors(folder / "weights.pt")[head].shape[0] == 2
    masks = load_tensors(folder / "masks.pt") if (folder / "masks.pt").exists() else {}
    if method in FILTER:     # a filter method never removes the classifier's outputs
        assert head not in masks or bool(masks[head].all())
