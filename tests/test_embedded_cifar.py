"""The embedded CIFAR-10 sample (cifar10_small): offline, its own test split, shipped as package
data, and its build script reproduces it from the JPEG subset."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pruneviz.data import EMBEDDED_CIFAR, load_dataset

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared/data/cifar10-subset"


def test_it_loads_offline_with_cifar10s_own_split():
    data = load_dataset(EMBEDDED_CIFAR, holdout=0.3)      # holdout does not apply
    assert data.train_x.shape == (5000, 3, 16, 16) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (2000, 3, 16, 16)
    assert data.classes[:2] == ["airplane", "automobile"] and data.num_classes == 10
    assert torch.bincount(data.train_y).tolist() == [500] * 10
    assert torch.bincount(data.test_y).tolist() == [200] * 10
    assert not data.augment


def test_it_is_package_data():
    tomllib = pytest.importorskip("tomllib")         # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["pruneviz"]
    assert any((ROOT / "pruneviz").glob(g) for g in globs)
    assert (ROOT / "pruneviz/embedded" / f"{EMBEDDED_CIFAR}.npz").stat().st_size < 8e6


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the JPEG subset is not on this machine")
def test_the_build_script_reproduces_the_shipped_file(tmp_path):
    out = tmp_path / "rebuilt.npz"
    subprocess.run([sys.executable, str(ROOT / "scripts/build_cifar_embedded.py"), "--source",
                    str(SOURCE), "--out", str(out)], check=True, capture_output=True)
    with np.load(out) as a, np.load(ROOT / "pruneviz/embedded" / f"{EMBEDDED_CIFAR}.npz") as b:
        for key in ("train_x", "train_y", "test_x", "test_y", "classes"):
            assert hashlib.sha256(a[key].tobytes()).digest() == \
                hashlib.sha256(b[key].tobytes()).digest(), key
