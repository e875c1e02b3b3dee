"""The 13 built-in models give bit-identical final weights and masks to main's code (recorded
from the branch point with scripts/builtin_hashes.py into fixtures/builtin_hashes.json): any
model spec work must leave the built-in path exactly as it was."""

import json
import os
from pathlib import Path

import pytest
import torch

from scripts.builtin_hashes import session_hash

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "builtin_hashes.json").read_text())
# The deep ones cost most of the file's time on 2 cores; PRUNEVIZ_HASHES=full checks them too.
SLOW = ("resnet56", "resnet110", "resnet50", "vgg16", "vgg19")
CASES = [k for k in RECORDED
         if os.environ.get("PRUNEVIZ_HASHES") == "full" or k.split("/")[0] not in SLOW]


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # the hashes were recorded on one thread
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", CASES)
def test_builtin_model_weights_and_masks_equal_mains(case, one_thread, tmp_path):
    model, method = case.split("/")
    assert session_hash(model, method, str(tmp_path / "runs")) == RECORDED[case]
