"""Datasets: the embedded digits, seeded splits, augmentation, folders, offline errors."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pruneviz.data import DataError, crop_flip, folder_problem, load_dataset


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


# -- bad files and folders ----------------------------------------------------------------------
def _png_folder(root, classes=("cats", "dogs", "owls"), n=6, size=(12, 12)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")


def _bomb_png(path, width=30_000, height=30_000):
    """A valid PNG header claiming width x height pixels (PIL refuses it at open as a bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_unreadable_images_are_skipped_and_named(tmp_path):
    _png_folder(tmp_path)
    (tmp_path / "cats" / "notes.jpg").write_text("this is text, not a JPEG")
    (tmp_path / "dogs" / "empty.jpg").write_bytes(b"")
    _bomb_png(tmp_path / "owls" / "bomb.png")
    b = load_dataset(f"folder:{tmp_path}", image_size=8, holdout=0.5)
    assert len(b.train_x) + len(b.test_x) == 18            # every good image, no bad one
    named = "\n".join(b.skipped)
    assert len(b.skipped) == 3
    for bad in ("notes.jpg", "empty.jpg", "bomb.png"):
        assert bad in named


def test_images_above_the_pixel_bound_are_skipped_before_decoding(tmp_path, monkeypatch):
    import pruneviz.data as data

    _png_folder(tmp_path, n=4)
    _png_folder(tmp_path / "big", classes=("cats",), n=1, size=(40, 40))
    (tmp_path / "big" / "cats" / "0.png").rename(tmp_path / "cats" / "big.png")
    (tmp_path / "big" / "cats").rmdir()
    (tmp_path / "big").rmdir()
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 20 * 20)
    b = load_dataset(f"folder:{tmp_path}", image_size=9, holdout=0.5)
    assert len(b.train_x) + len(b.test_x) == 12
    assert len(b.skipped) == 1 and "big.png" in b.skipped[0] and "megapixel" in b.skipped[0]


def test_a_folder_of_only_bad_files_is_one_clear_error(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        (tmp_path / cls / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no readable images"):
        load_dataset(f"folder:{tmp_path}", image_size=10)


def test_symlink_loops_are_not_followed_and_nothing_leaks_into_the_held_out_split(tmp_path):
    _png_folder(tmp_path)
    for cls in ("cats", "dogs", "owls"):
        (tmp_path / cls / "loop").symlink_to(tmp_path / cls, target_is_directory=True)
        (tmp_path / cls / "again.png").symlink_to(tmp_path / cls / "0.png")
    b = load_dataset(f"folder:{tmp_path}", image_size=11, holdout=0.5)
    assert len(b.train_x) + len(b.test_x) == 18
    train = {bytes(x.flatten().tolist()) for x in b.train_x}
    assert not any(bytes(x.flatten().tolist()) in train for x in b.test_x)


# -- train/ and val/ or test/ folders -----------------------------------------------------------
# The team's shared folder beside the checkout (CI lays a copy there too).
CIFAR_SUBSET = Path(__file__).resolve().parents[2] / "shared/data/cifar10-subset"
needs_subset = pytest.mark.skipif(not CIFAR_SUBSET.is_dir(),
                                  reason="no CIFAR-10 JPEG subset in ../shared")


def _cifar_sample(root, per_class_train=3, per_class_test=2, heldout="test"):
    """A few real CIFAR-10 JPEGs per class copied into root/train and root/<heldout>."""
    import shutil

    src = CIFAR_SUBSET
    for split, dst, n in (("train", "train", per_class_train), ("test", heldout, per_class_test)):
        for cls in sorted(p.name for p in (src / split).iterdir()):
            (root / dst / cls).mkdir(parents=True)
            for f in sorted((src / split / cls).glob("*.jpg"))[:n]:
                shutil.copy(f, root / dst / cls / f.name)


@needs_subset
@pytest.mark.parametrize("heldout", ["test", "val"])
def test_train_and_held_out_folders_are_the_split(tmp_path, heldout):
    from PIL import Image

    _cifar_sample(tmp_path, heldout=heldout)
    b = load_dataset(f"folder:{tmp_path}", image_size=32, holdout=0.5)
    assert b.classes == sorted(p.name for p in (tmp_path / "train").iterdir())
    assert len(b.classes) == 10 and b.input_shape == (3, 32, 32)
    assert len(b.train_x) == 30 and len(b.test_x) == 20          # --holdout does not apply
    assert torch.bincount(b.test_y).tolist() == [2] * 10
    # the held-out images are the held-out folder's files, decoded as PIL decodes them
    first = sorted((tmp_path / heldout / b.classes[0]).glob("*.jpg"))[0]
    expected = torch.from_numpy(np.array(Image.open(first).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(b.test_x[0], expected)


def test_held_out_class_missing_from_train_is_a_clear_error(tmp_path):
    _png_folder(tmp_path / "train", classes=("a", "b"), n=2)
    _png_folder(tmp_path / "test", classes=("a", "zebra"), n=1)
    with pytest.raises(DataError, match="zebra"):
        load_dataset(f"folder:{tmp_path}", image_size=12)


@pytest.mark.parametrize("heldout", ["valid", "validation"])
def test_valid_and_validation_beside_train_are_the_held_out_split(tmp_path, heldout):
    _png_folder(tmp_path / "train", classes=("a", "b"), n=3)
    _png_folder(tmp_path / heldout, classes=("a", "b"), n=2)
    b = load_dataset(f"folder:{tmp_path}", image_size=12, holdout=0.5)
    assert b.classes == ["a", "b"]                  # not "train" and "valid"
    assert len(b.train_x) == 6 and len(b.test_x) == 4 and b.warnings == []
    assert folder_problem(f"folder:{tmp_path}") is None


def _raises_and_form_says(name: str, *words: str) -> str:
    """Loading `name` is one DataError holding `words`; the form's listing check says the same."""
    with pytest.raises(DataError) as e:
        load_dataset(name, image_size=12)
    for word in words:
        assert word in str(e.value)
    assert folder_problem(name) == str(e.value)
    return str(e.value)


def test_a_train_folder_of_classes_without_a_held_out_split_is_refused(tmp_path):
    _png_folder(tmp_path / "train", classes=("a", "b"), n=2)
    _png_folder(tmp_path / "holdout", classes=("a", "b"), n=1)
    message = _raises_and_form_says(f"folder:{tmp_path}", "no held-out split", "holdout/",
                                    "valid", f"folder:{tmp_path / 'train'}")
    assert "2 class" not in message


def test_a_held_out_folder_of_classes_without_train_is_refused(tmp_path):
    _png_folder(tmp_path / "training", classes=("a", "b"), n=2)
    _png_folder(tmp_path / "val", classes=("a", "b"), n=1)
    _raises_and_form_says(f"folder:{tmp_path}", "val/", "no train/", "name the training folder")


def test_a_class_named_train_that_holds_images_is_still_a_class(tmp_path):
    _png_folder(tmp_path, classes=("bus", "car", "train"), n=4)
    b = load_dataset(f"folder:{tmp_path}", image_size=12, holdout=0.5)
    assert b.classes == ["bus", "car", "train"]


def test_a_class_with_held_out_images_and_no_training_image_is_refused(tmp_path):
    _png_folder(tmp_path / "train", classes=("a", "b"), n=2)
    _png_folder(tmp_path / "train", classes=("c",), n=0)
    _png_folder(tmp_path / "test", classes=("a", "b", "c"), n=1)
    _raises_and_form_says(f"folder:{tmp_path}", "class(es) c ", str(tmp_path / "train" / "c"),
                          "Add training images")


def test_a_held_out_split_missing_a_class_is_named_in_the_warnings(tmp_path):
    _png_folder(tmp_path / "train", classes=("a", "b", "c"), n=2)
    _png_folder(tmp_path / "test", classes=("a", "b"), n=1)
    b = load_dataset(f"folder:{tmp_path}", image_size=12)
    assert b.classes == ["a", "b", "c"] and len(b.test_x) == 2
    assert len(b.warnings) == 1 and "class(es) c:" in b.warnings[0]
    assert "2 of 3 classes" in b.warnings[0]
    assert folder_problem(f"folder:{tmp_path}") is None        # a caveat, not a refusal


def test_held_out_files_that_are_links_to_training_files_name_the_cause(tmp_path):
    import os

    _png_folder(tmp_path / "train", classes=("a", "b"), n=2)
    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        os.link(tmp_path / "train" / cls / "0.png", tmp_path / "val" / cls / "0.png")
    with pytest.raises(DataError) as e:
        load_dataset(f"folder:{tmp_path}", image_size=12)
    message = str(e.value)
    assert "2 image file(s) are training images linked again" in message
    assert "--holdout" not in message and "holdout does not apply" in message


def test_a_held_out_split_missing_a_class_reaches_the_run_summary(tmp_path, fast_config):
    from pruneviz.session import run_session
    from pruneviz.store import Store

    _png_folder(tmp_path / "data" / "train", classes=("a", "b", "c"), n=4)
    _png_folder(tmp_path / "data" / "val", classes=("a", "b"), n=2)
    config = fast_config(dataset=f"folder:{tmp_path / 'data'}", image_size=8, method="l1",
                         rate=0.5, dense_epochs=1, epochs=1, batch_size=4)
    summary = run_session(config, Store(tmp_path / "runs"))
    assert summary["status"] == "completed"
    assert any("2 of 3 classes" in w for w in summary["warnings"])


@needs_subset
def test_session_summary_carries_train_and_test_sizes(tmp_path, fast_config):
    from pruneviz.session import run_session
    from pruneviz.store import Store

    _cifar_sample(tmp_path / "data", per_class_train=4, per_class_test=1)
    config = fast_config(dataset=f"folder:{tmp_path / 'data'}", image_size=8, method="l1",
                         rate=0.5, dense_epochs=1, epochs=1, batch_size=20)
    summary = run_session(config, Store(tmp_path / "runs"))
    assert summary["status"] == "completed"
    assert summary["train_size"] == 40 and summary["test_size"] == 10


@pytest.mark.parametrize("seed", range(5))
def test_classes_in_turn_every_prefix_is_as_balanced_as_the_counts_allow(seed):
    from pruneviz.data import classes_in_turn

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 7, (300,), generator=g)
    y = y[torch.randperm(300, generator=g)] if seed % 2 else y.sort().values  # stored by class
    order = classes_in_turn(y)
    assert sorted(order.tolist()) == list(range(300))           # a permutation
    total = torch.bincount(y, minlength=7)
    for n in range(1, 301):
        got = torch.bincount(y[order[:n]], minlength=7)
        # oracle: taking one per class per round, a class is short only once it is exhausted
        short = got < got.max() - 1
        assert (got[short] == total[short]).all(), (n, got.tolist(), total.tolist())
    for c in range(7):                                          # within a class: stored order
        mine = order[y[order] == c]
        assert torch.equal(mine, mine.sort().values)


def test_an_eval_limit_measures_every_class_not_the_first_ones():
    from pruneviz.data import DataBundle
    from pruneviz.metrics import evaluate

    digits = load_dataset("digits", holdout=0.2)
    by_class = digits.test_y.argsort(stable=True)     # as image folders store it
    d = DataBundle("sorted", digits.train_x, digits.train_y, digits.test_x[by_class],
                   digits.test_y[by_class], digits.classes, False)

    class Always(torch.nn.Module):            # predicts class 0 for every image
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 10) * 9.

    seen = torch.cat([y for _, y in d.test_batches(torch.device("cpu"), batch_size=7,
                                                   limit=50)])
    assert torch.equal(torch.bincount(seen, minlength=10), torch.full((10,), 5))
    acc = evaluate(Always(), d, torch.device("cpu"), limit=50)["accuracy"]
    assert acc == pytest.approx(0.1)                    # 1.0 when the cap took class 0 alone
    full = evaluate(Always(), d, torch.device("cpu"), limit=0)["accuracy"]
    assert full == pytest.approx((d.test_y == 0).float().mean().item())


def test_the_summary_says_how_many_held_out_images_each_evaluation_sees(tmp_path, fast_config):
    from pruneviz.session import run_session
    from pruneviz.store import Store

    store = Store(tmp_path / "runs")
    capped = run_session(fast_config(eval_limit=50), store)
    assert capped["eval_size"] == 50 and capped["test_size"] > 50
    assert "eval_size" not in run_session(fast_config(eval_limit=10**6), store)


@pytest.mark.parametrize("name", ["folder:", "folder:  "])
def test_a_folder_dataset_with_an_empty_path_is_refused_not_read_from_the_working_directory(
        name, tmp_path, monkeypatch):
    from pruneviz.config import SessionConfig
    from pruneviz.data import folder_problem
    from pruneviz.session import check

    for cls in ("a", "b"):          # a working directory that would pass as a dataset
        (tmp_path / cls).mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="needs the path"):
        load_dataset(name)
    with pytest.raises(DataError, match="needs the path"):
        check(SessionConfig(dataset=name, epochs=1))
    assert "needs the path" in folder_problem(name)
