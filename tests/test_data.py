"""Datasets: the embedded digits, seeded splits, augmentation, folders, offline errors."""

import numpy as np
import pytest
import torch

from pruneviz.data import DataError, crop_flip, load_dataset


def test_digits_equal_scikit_learn():
    from sklearn.datasets import load_digits

    ref = load_digits()
    b = load_dataset("digits")
    x = torch.cat([b.train_x, b.test_x]).float().mul(16 / 255).round()
    y = torch.cat([b.train_y, b.test_y])
    assert len(x) == len(ref.target) == 1797
    # same multiset of (image, label) pairs
    ours = sorted(map(tuple, torch.cat([x.flatten(1), y[:, None].float()], 1).tolist()))
    theirs = sorted(map(tuple, np.c_[ref.data, ref.target].tolist()))
    assert ours == theirs


def test_split_is_stratified_and_deterministic():
    a = load_dataset("digits", holdout=0.2)
    counts = torch.bincount(a.test_y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38        # ~20% of ~180 per class
    b = load_dataset("digits", holdout=0.3)
    assert len(b.test_x) > len(a.test_x)
    c = load_dataset("digits", holdout=0.2)
    assert torch.equal(a.test_x, c.test_x)


def test_batches_depend_only_on_seed_and_epoch():
    d = load_dataset("digits")
    cpu = torch.device("cpu")
    first = [y for _, y in d.train_batches(3, 7, 64, cpu)]
    again = [y for _, y in d.train_batches(3, 7, 64, cpu)]
    other = [y for _, y in d.train_batches(4, 7, 64, cpu)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert len(first) == len(d.train_x) // 64


def test_crop_flip_is_a_shifted_or_flipped_copy():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float).view(2, 1, 6, 6) + 1
    out = crop_flip(x, pad=2, gen=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):
        vals = set(out[i].flatten().tolist()) - {0.0}
        assert vals <= set(x[i].flatten().tolist())


def test_missing_torchvision_dataset_names_folder_and_flag(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path) in msg and "--download" in msg


def test_unknown_dataset_lists_choices():
    with pytest.raises(DataError, match="folder:PATH"):
        load_dataset("imagenet22k")


def test_image_folder_with_holdout(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs", "owls"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            arr = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    b = load_dataset(f"folder:{tmp_path}", image_size=16, holdout=0.2)
    assert b.classes == ["cats", "dogs", "owls"]
    assert b.input_shape == (3, 16, 16)
    assert len(b.test_x) == 6 and len(b.train_x) == 24
    assert torch.bincount(b.test_y).tolist() == [2, 2, 2]


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError):
        load_dataset(f"folder:{tmp_path}")
