"""Build pruneviz/embedded/cifar10_small.npz, the embedded real-image dataset, from the JPEG sample.

Source: ../shared/data/cifar10-subset (CIFAR-10, Krizhevsky, "Learning Multiple Layers of Features
from Tiny Images", 2009): train/<class>/*.jpg (1,000 per class) and test/<class>/*.jpg (200 per
class). We keep the first `--per-class` training images of every class (sorted by file name) and
every test image, downscale each 32x32 image to `--size` pixels with a box filter (a 2x2 mean at
16 px) and store them as uint8 arrays, so the file is small enough to ship in the wheel.

    python scripts/build_cifar_embedded.py [--source DIR] [--size 16] [--per-class 500]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def load_split(folder: Path, size: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(N x size x size x 3 uint8, N int64) for one split, classes in CIFAR-10's order."""
    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((folder / name).glob("*.jpg"))
        if not files:
            raise SystemExit(f"no JPEGs in {folder / name}; pass --source pointing at the "
                             f"cifar10-subset folder (it holds train/ and test/).")
        for f in files[:per_class] if per_class else files:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BOX)
                xs.append(np.asarray(im, dtype=np.uint8))
                ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared/data/cifar10-subset")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--per-class", type=int, default=500, help="training images per class")
    ap.add_argument("--out", type=Path, default=ROOT / "pruneviz/embedded/cifar10_small.npz")
    args = ap.parse_args()
    train_x, train_y = load_split(args.source / "train", args.size, args.per_class)
    test_x, test_y = load_split(args.source / "test", args.size, 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, train_x=train_x, train_y=train_y, test_x=test_x,
                        test_y=test_y, classes=np.asarray(CLASSES))
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:16]
    print(f"{args.out}: train {train_x.shape}, test {test_x.shape}, "
          f"{args.out.stat().st_size / 1e6:.1f} MB, sha256 {digest}")


if __name__ == "__main__":
    main()
