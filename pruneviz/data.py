"""Datasets held in memory as uint8 tensors, batched by seeded permutations.

The embedded default is scikit-learn's digits (ships in the wheel, loads offline); cifar10_small
(5,000 + 2,000 CIFAR-10 images at 16x16, pruneviz/embedded/, built by
scripts/build_cifar_embedded.py) is the embedded real-image set, with its own test split. MNIST,
Fashion-MNIST, CIFAR-10/100 come through torchvision and download only when asked. Any
ImageFolder directory (one subfolder per class) works as `folder:PATH`, with a seeded stratified
held-out split, or with its own train/ and val/ (valid/, validation/ or test/) subfolders as the
split. Augmentation (random crop with padding 4, horizontal flip) runs on whole batches. Text
(`pydoc`, `text:PATH`) lives in text.py and comes back as a TextBundle with the same batching
methods.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ConfigError
from .text import CONTEXT, TEXT_DATASETS, TEXT_PREFIX, TextBundle, is_text, load_text

TORCHVISION_SETS = {
    "mnist": ("MNIST", "MNIST"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}
EMBEDDED_CIFAR = "cifar10_small"
DATASETS = ("digits", EMBEDDED_CIFAR, *TORCHVISION_SETS, *TEXT_DATASETS)
FOLDER_PREFIX = "folder:"


class DataError(ConfigError):
    """A dataset cannot be loaded as asked; the message names the folder and the flag to fix it."""


@dataclass
class DataBundle:
    """Train and held-out tensors (uint8, N x C x H x W) plus what batching needs."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    augment: bool
    # Files of an image folder that could not be used, as "PATH: why" (the run summary lists them).
    skipped: list[str] = field(default_factory=list)
    # What makes this data's numbers read differently than a user expects (a held-out split
    # missing a class): sentences added to a finished run's summary warnings.
    warnings: list[str] = field(default_factory=list)
    mean: torch.Tensor = field(init=False)
    std: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        x = self.train_x.float().div_(255)
        self.mean = x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
        self.std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).view(1, -1, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def steps_per_epoch(self, batch_size: int, cap: int = 0) -> int:
        steps = max(1, len(self.train_x) // batch_size)
        return min(steps, cap) if cap else steps

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] batch -> standardized float batch."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def train_batches(self, epoch: int, seed: int, batch_size: int, device: torch.device,
                      max_steps: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's minibatches; the order depends only on (seed, epoch), never on the method."""
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        n = len(self.train_x)
        perm = torch.randperm(n, generator=gen)
        bs = min(batch_size, n)
        for i in range(self.steps_per_epoch(batch_size, max_steps)):
            idx = perm[i * bs:(i + 1) * bs]
            x = self.train_x[idx].float().div_(255)
            if self.augment:
                x = crop_flip(x, pad=4, gen=gen)
            yield (self.normalize(x.to(device, non_blocking=True)),
                   self.train_y[idx].to(device, non_blocking=True))

    def test_batches(self, device: torch.device, batch_size: int = 500,
                     limit: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The held-out set in batches; with a `limit` below its size, the first `limit` of
        `classes_in_turn` (held-out sets are stored class by class: their first images would
        all be of the first classes). The same images for every run of the data."""
        if not limit or limit >= len(self.test_x):
            for i in range(0, len(self.test_x), batch_size):
                yield (self.normalize(self.test_x[i:i + batch_size].to(device)),
                       self.test_y[i:i + batch_size].to(device))
            return
        take = classes_in_turn(self.test_y)[:limit]
        for i in range(0, limit, batch_size):
            idx = take[i:i + batch_size]
            yield self.normalize(self.test_x[idx].to(device)), self.test_y[idx].to(device)


def classes_in_turn(y: torch.Tensor) -> torch.Tensor:
    """Indices of `y` taking the classes in turn (each class's first item, then each one's
    second, ...; within a class in stored order): every prefix is as close to class-balanced as
    the counts allow."""
    by_class = torch.argsort(y, stable=True)
    ys = y[by_class]
    counts = torch.bincount(ys)
    rank = torch.arange(len(y)) - (torch.cumsum(counts, 0) - counts)[ys]    # place in its class
    return by_class[torch.argsort(rank * len(counts) + ys, stable=True)]


def crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, then random horizontal flip, per image, on a whole batch."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    di = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dj = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = di[:, None] + torch.arange(h)
    cols = dj[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]


def _split(y: torch.Tensor, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified, seeded split: `holdout` of every class goes to the held-out set."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = max(1, round(len(idx) * holdout)) if len(idx) > 1 else 0
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def _digits() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """scikit-learn's 1797 8x8 digits, read from the CSV inside the wheel (importing
    sklearn.datasets would pull in SciPy and cost seconds of start-up for the same array)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded digits dataset needs scikit-learn; run the README's setup "
                        "command (it installs requirements.txt).")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = torch.from_numpy(np.loadtxt(path, delimiter=","))
    x = table[:, :64].mul(255 / 16).round().to(torch.uint8).view(-1, 1, 8, 8)
    return x, table[:, 64].long(), [str(i) for i in range(10)]


def _embedded_cifar() -> DataBundle:
    """The CIFAR-10 sample shipped in the package (uint8 .npz; CIFAR-10's own train/test)."""
    import numpy as np

    path = Path(__file__).with_name("embedded") / f"{EMBEDDED_CIFAR}.npz"
    if not path.is_file():
        raise DataError(f"the embedded {EMBEDDED_CIFAR} file {path} is missing; reinstall "
                        f"pruneviz or rebuild it with scripts/build_cifar_embedded.py.")
    with np.load(path) as z:
        x = {k: torch.from_numpy(z[k]) for k in ("train_x", "train_y", "test_x", "test_y")}
        classes = [str(c) for c in z["classes"]]
    return DataBundle(EMBEDDED_CIFAR, x["train_x"].permute(0, 3, 1, 2).contiguous(),
                      x["train_y"].long(), x["test_x"].permute(0, 3, 1, 2).contiguous(),
                      x["test_y"].long(), classes=classes, augment=False)


def _torchvision(name: str, root: Path, download: bool) -> DataBundle:
    import torchvision.datasets as tvd

    cls_name, folder = TORCHVISION_SETS[name]
    cls = getattr(tvd, cls_name)
    try:
        parts = [cls(str(root), train=train, download=download) for train in (True, False)]
    except RuntimeError as e:
        if download:
            raise DataError(f"could not download {cls_name} into {root}: {e}") from None
        raise DataError(f"{cls_name} is not under {root / folder}; pass --download to fetch it "
                        f"(needs network) or --data-root DIR pointing at the folder that holds "
                        f"it.") from None
    tensors = []
    for ds in parts:
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        tensors += [x.contiguous(), torch.as_tensor(ds.targets).long()]
    return DataBundle(name, *tensors, classes=list(parts[0].classes),
                      augment=name.startswith("cifar"))


# Per-image bound: a larger file is skipped before it is decoded (PIL's own decompression-bomb
# guard only starts at 89 megapixels, and a 92-megapixel JPEG decodes to ~280 MB).
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Held-out split folders, in order of preference: ImageNet / Imagenette write val/, Kaggle and
# Roboflow exports valid/ or validation/; any of them beside train/ is the held-out split, not a
# class (read as classes, train/ + valid/ trained a two-class "train vs valid" classifier).
SPLIT_TRAIN, SPLIT_HELDOUT = "train", ("val", "valid", "validation", "test")


def _class_dirs(root: Path) -> list[Path]:
    """Class subfolders of `root`, sorted; symlinked folders are not followed (a link back up the
    tree would list the same images again and again)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                  and not p.name.startswith("."))


def _has_image(folder: Path) -> bool:
    """Whether `folder` holds an image file anywhere below it (a listing that stops at the first;
    no file is read)."""
    return folder.is_dir() and any(
        name.lower().endswith(IMAGE_SUFFIXES)
        for _, _, names in os.walk(folder, followlinks=False) for name in names)


def _layout(path: Path) -> tuple[Path, Path | None]:
    """(the training root, the held-out split folder or None) of the image folder `path`:
    PATH/<class>, or PATH/train/<class> beside one of SPLIT_HELDOUT. A train/ or held-out folder
    of class folders missing its partner is a DataError: read as one class each, it would train
    a classifier of split names."""
    if not path.is_dir():
        raise DataError(f"image folder {path} does not exist; give folder:PATH with one "
                        f"subfolder per class.")
    train = path / SPLIT_TRAIN
    heldout = next((path / s for s in SPLIT_HELDOUT if (path / s).is_dir()), None)
    if train.is_dir() and heldout is not None:
        return train, heldout
    # A split folder holds class folders; a class that happens to be called "train" or "test"
    # holds images.
    if train.is_dir() and _class_dirs(train):
        others = [p.name + "/" for p in _class_dirs(path) if p != train]
        beside = f" (beside it: {', '.join(others[:5])})" if others else ""
        raise DataError(f"{path} has a train/ folder of class folders but no held-out split "
                        f"beside it{beside}; name the held-out folder val, valid, validation or "
                        f"test, or give folder:{train} to hold out a fraction of train/ "
                        f"(holdout).")
    if heldout is not None and _class_dirs(heldout):
        raise DataError(f"{path} has a {heldout.name}/ folder of class folders but no train/ "
                        f"beside it; name the training folder train.")
    return path, None


def _classes(root: Path) -> list[str]:
    classes = [p.name for p in _class_dirs(root)]
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folder(s); a classifier needs at "
                        f"least 2 subfolders, one per class, holding its images.")
    return classes


def _check_heldout_classes(root: Path, heldout: Path, classes: list[str]) -> None:
    extra = sorted({p.name for p in _class_dirs(heldout)} - set(classes))
    if extra:
        raise DataError(f"{heldout} has class folder(s) {', '.join(extra)} that {root} "
                        f"lacks; the held-out classes must be training classes.")


def _untrained(root: Path, heldout: Path, names: list[str]) -> DataError:
    """Classes with held-out images and no training image: the model can never predict them,
    so every held-out image of theirs would count as wrong."""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return DataError(f"class(es) {shown} have held-out images in {heldout} but no readable "
                     f"training image in {root} (e.g. {root / names[0]}); a class never trained "
                     f"can never be predicted. Add training images to {root / names[0]}, or "
                     f"remove the class from both {root.name}/ and {heldout.name}/.")


def _image_files(folder: Path, seen: set[tuple[int, int]],
                 linked: list[Path] | None = None) -> list[Path]:
    """Image files under `folder`, each physical file once (by device and inode, across `seen`;
    a file already seen goes to `linked`); symlinked subfolders are never entered."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            try:
                st = p.stat()
            except OSError:
                continue                      # a dangling link
            key = (st.st_dev, st.st_ino)
            if key in seen:
                if linked is not None:
                    linked.append(p)
                continue
            seen.add(key)
            out.append(p)
    return out


def _read_image(p: Path, image_size: int) -> torch.Tensor:
    """One image as uint8 C x H x W at image_size; raises OSError/ValueError for files PIL cannot
    read and ValueError above MAX_IMAGE_PIXELS."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    with Image.open(p) as im:
        w, h = im.size
        if w * h > MAX_IMAGE_PIXELS:
            raise ValueError(f"{w} x {h} pixels is above the {MAX_IMAGE_PIXELS / 1e6:.1f}-"
                             f"megapixel limit per image; downscale it")
        im.draft("RGB", (image_size, image_size))     # JPEGs decode at a reduced scale
        x = TF.pil_to_tensor(im.convert("RGB"))
    return TF.resize(x, [image_size, image_size], antialias=True)


def _read_split(root: Path, classes: list[str], image_size: int, seen: set[tuple[int, int]],
                skipped: list[str], linked: list[Path] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    xs, ys = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        if not folder.is_dir():
            continue
        for p in _image_files(folder, seen, linked):
            try:
                xs.append(_read_image(p, image_size))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                skipped.append(f"{p}: {e}")
                continue
            ys.append(label)
    if not xs:
        return torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8), torch.zeros(0).long()
    return torch.stack(xs), torch.tensor(ys)


def _folder(path: Path, image_size: int, holdout: float) -> DataBundle:
    """An ImageFolder tree: PATH/<class>/*.jpg split by `holdout`, or PATH/train/<class> with
    PATH/val/<class> (else valid/, validation/, test/) as the held-out split."""
    root, heldout = _layout(path)
    classes = _classes(root)
    if heldout is not None:
        _check_heldout_classes(root, heldout, classes)
    seen: set[tuple[int, int]] = set()
    skipped: list[str] = []
    warnings: list[str] = []
    x, y = _read_split(root, classes, image_size, seen, skipped)
    if len(x) == 0:
        raise DataError(f"no readable images under {root} (skipped {len(skipped)}"
                        f"{': ' + skipped[0] if skipped else ''}); put .jpg or .png files in "
                        f"one subfolder per class.")
    if heldout is None:
        tr, te = _split(y, holdout, seed=0)
        x, y, test_x, test_y = x[tr], y[tr], x[te], y[te]
        if len(test_x) == 0:
            raise DataError(f"no readable held-out images in {path}; add images or raise "
                            f"--holdout.")
    else:
        # `seen` already holds the training files: a file linked into both splits stays in
        # train, and is counted in `linked`.
        linked: list[Path] = []
        test_x, test_y = _read_split(heldout, classes, image_size, seen, skipped, linked)
        if len(test_x) == 0:
            why = (f"its {len(linked)} image file(s) are training images linked again (hard "
                   f"links or symlinks of files in {root}), which stay in training"
                   if linked else "it holds no readable image in a class folder")
            raise DataError(f"no held-out images in {heldout}: {why}. Put images distinct from "
                            f"the training ones in {heldout}/<class> (holdout does not apply "
                            f"to a {root.name}/ + {heldout.name}/ layout).")
        trained, measured = set(y.tolist()), set(test_y.tolist())
        untrained = [c for i, c in enumerate(classes) if i in measured and i not in trained]
        if untrained:
            raise _untrained(root, heldout, untrained)
        # Training a class the held-out split lacks is sound, but the accuracy then averages
        # over fewer classes than the model predicts: said in the run's warnings, not refused
        # (a rare class missing from val/ is common and the run is still worth having).
        unmeasured = [c for i, c in enumerate(classes) if i in trained and i not in measured]
        if unmeasured:
            warnings.append(
                f"the held-out split {heldout} has no images of class(es) "
                f"{', '.join(unmeasured[:5])}{' and more' if len(unmeasured) > 5 else ''}: "
                f"held-out accuracy measures {len(classes) - len(unmeasured)} of "
                f"{len(classes)} classes. Add images to {heldout}/<class> to measure them all.")
    return DataBundle(f"folder:{path}", x, y, test_x, test_y, classes=classes, augment=False,
                      skipped=skipped, warnings=warnings)


@functools.lru_cache(maxsize=4)
def _load(name: str, root: str, download: bool, holdout: float, image_size: int) -> DataBundle:
    if name == "digits":
        x, y, classes = _digits()
        tr, te = _split(y, holdout, seed=0)
        return DataBundle(name, x[tr], y[tr], x[te], y[te], classes=classes, augment=False)
    if name == EMBEDDED_CIFAR:
        return _embedded_cifar()
    if name in TORCHVISION_SETS:
        return _torchvision(name, Path(root).expanduser(), download)
    if name.startswith(FOLDER_PREFIX):
        return _folder(folder_path(name), image_size, holdout)
    raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)} or "
                    f"folder:PATH for your own images.")


INPUT_SHAPES = {"digits": (1, 8, 8), EMBEDDED_CIFAR: (3, 16, 16), "mnist": (1, 28, 28),
                "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}


def input_shape(name: str, image_size: int = 32) -> tuple[int, ...]:
    """(C, H, W) of a dataset's images without loading it (folders: RGB at image_size); text:
    (context,)."""
    if is_text(name):
        return (CONTEXT,)
    return INPUT_SHAPES.get(name, (3, image_size, image_size))


def missing_files(name: str, root: str) -> Path | None:
    """The folder a torchvision dataset's files belong in when one of them is missing under
    `root` (a stat per file, nothing read); None when all are there or `name` is not one."""
    if name not in TORCHVISION_SETS:
        return None
    import torchvision.datasets as tvd

    cls_name, folder = TORCHVISION_SETS[name]
    cls, base = getattr(tvd, cls_name), Path(root).expanduser()
    if hasattr(cls, "resources"):           # MNIST and Fashion-MNIST: <root>/<Class>/raw
        where = base / cls_name / "raw"
        files = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    else:                                   # CIFAR-10/100: <root>/<base_folder>
        where = base / folder
        files = [f for f, _ in (*cls.train_list, *cls.test_list)]
    return None if all((where / f).is_file() for f in files) else where


def folder_path(name: str) -> Path:
    """The directory of a folder:PATH dataset; an empty PATH is a DataError (it would read the
    server's working directory as a dataset)."""
    raw = name[len(FOLDER_PREFIX):].strip()
    if not raw:
        raise DataError("folder: needs the path of your image folder after the colon, e.g. "
                        "folder:/data/flowers (one subfolder per class).")
    return Path(raw).expanduser()


def folder_problem(name: str) -> str | None:
    """What is wrong with a folder:PATH dataset, from a directory listing (no image read): the
    messages loading it would raise, each naming its fix."""
    if not name.startswith(FOLDER_PREFIX):
        return None
    try:
        path = folder_path(name)
        root, heldout = _layout(path)
        classes = _classes(root)
        if heldout is not None:
            _check_heldout_classes(root, heldout, classes)
            untrained = [c for c in classes
                         if _has_image(heldout / c) and not _has_image(root / c)]
            if untrained:
                raise _untrained(root, heldout, untrained)
    except DataError as e:
        return str(e)
    return None


def check_dataset_name(name: str) -> None:
    if name not in DATASETS and not name.startswith((FOLDER_PREFIX, TEXT_PREFIX)):
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}, "
                        f"folder:PATH for your own images or text:PATH for your own text.")
    if name.startswith(FOLDER_PREFIX):
        folder_path(name)


def dataset_modality(name: str) -> str:
    """"text" (token ids, a language model's data) or "image"."""
    return "text" if is_text(name) else "image"


_load_text = functools.lru_cache(maxsize=4)(load_text)


def load_dataset(name: str = "digits", root: str = "./data", *, download: bool = False,
                 augment: str = "auto", holdout: float = 0.2, image_size: int = 32,
                 seed: int = 0) -> DataBundle | TextBundle:
    """Load (and cache in memory) a dataset; `augment` is auto, on or off. `seed` splits text
    into training and held-out topics or files (image splits do not depend on it)."""
    check_dataset_name(name)
    if is_text(name):
        return _load_text(name, holdout, seed)
    base = _load(name, str(root), download, holdout, image_size)
    want = base.augment if augment == "auto" else augment == "on"
    if want == base.augment:
        return base
    return dataclasses.replace(base, augment=want)
