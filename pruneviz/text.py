"""Text for language models, without downloading: bytes in, next byte out.

- `pydoc`: the documentation topics the standard library ships (`pydoc_data.topics`, 79 topics,
  ~465k characters on Python 3.11), split by whole topics with the session's seed, so held-out
  text is unseen.
- `text:PATH`: a UTF-8 `.txt` file (its last `holdout` of bytes held out) or a folder of them
  (whole files held out, seeded).

Training draws random windows of CONTEXT bytes (seeded by seed and epoch, never by the method);
an "epoch" is EPOCH_WINDOWS windows, so a session's budget does not grow with the text. The
held-out set is at most EVAL_WINDOWS non-overlapping windows spread evenly over the held-out
text: the same for every run of the data, cheap enough to evaluate every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from .config import ConfigError

PYDOC = "pydoc"
TEXT_PREFIX = "text:"
TEXT_DATASETS = (PYDOC,)
CONTEXT = 64            # bytes per window: gpt_tiny's context
VOCAB = 256             # bytes
EPOCH_WINDOWS = 512     # windows per epoch (8 steps of 64): a default session fits a minute
EVAL_WINDOWS = 128      # held-out windows per evaluation (8k bytes)
MAX_BYTES = 64 * 2**20  # a text this large would not train in a session anyway


class TextError(ConfigError):
    """Bad text input: the message names the file and what to do."""


def is_text(name: str) -> bool:
    return name in TEXT_DATASETS or name.startswith(TEXT_PREFIX)


@dataclass
class TextBundle:
    """Training bytes and held-out windows, batched like DataBundle (same method names)."""

    name: str
    train_x: torch.Tensor          # uint8, the training text as one stream of bytes
    test_x: torch.Tensor           # int64 [N, CONTEXT + 1]: held-out windows (input + next)
    units: tuple[int, int]         # (training, held-out) topics or files
    context: int = CONTEXT
    augment: bool = False
    skipped: list[str] = field(default_factory=list)
    modality: ClassVar[str] = "text"

    @property
    def classes(self) -> list[str]:
        return [repr(bytes([i]))[2:-1] for i in range(VOCAB)]

    @property
    def num_classes(self) -> int:
        return VOCAB

    @property
    def input_shape(self) -> tuple[int]:
        return (self.context,)

    @property
    def test_y(self) -> torch.Tensor:
        return self.test_x[:, 1:]

    def steps_per_epoch(self, batch_size: int, cap: int = 0) -> int:
        steps = max(1, EPOCH_WINDOWS // batch_size)
        return min(steps, cap) if cap else steps

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def train_batches(self, epoch: int, seed: int, batch_size: int, device: torch.device,
                      max_steps: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Random windows: inputs x[B, T] and targets y[B, T] (x shifted by one byte)."""
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        offsets = torch.arange(self.context + 1)
        for _ in range(self.steps_per_epoch(batch_size, max_steps)):
            starts = torch.randint(0, len(self.train_x) - self.context, (batch_size,),
                                   generator=gen)
            w = self.train_x[starts[:, None] + offsets].long()
            yield w[:, :-1].to(device), w[:, 1:].to(device)

    def test_batches(self, device: torch.device, batch_size: int = 128,
                     limit: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The held-out windows (the first `limit` of them with a limit)."""
        n = min(limit, len(self.test_x)) if limit else len(self.test_x)
        for i in range(0, n, batch_size):
            w = self.test_x[i:min(i + batch_size, n)]
            yield w[:, :-1].to(device), w[:, 1:].to(device)


def _windows(stream: torch.Tensor, context: int, count: int) -> torch.Tensor:
    """Up to `count` non-overlapping windows of context + 1 bytes, evenly spread over `stream`."""
    n = (len(stream) - 1) // context
    picks = torch.linspace(0, n - 1, min(n, count)).round().long().unique()
    offsets = torch.arange(context + 1)
    return stream[(picks * context)[:, None] + offsets].long()


def _decode(raw: bytes, where: str) -> str:
    if not raw.strip():
        raise TextError(f"{where} is empty; give a UTF-8 .txt file with text in it.")
    if b"\x00" in raw[:65536]:
        raise TextError(f"{where} looks binary (it holds NUL bytes), not text; give a UTF-8 "
                        f".txt file.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextError(f"{where} is not UTF-8 text (byte {e.start} cannot be decoded); save "
                        f"it as UTF-8 or give another file.") from None


def _bundle(name: str, train: list[str], held: list[str], context: int) -> TextBundle:
    sep = "\n\n"
    tr = torch.frombuffer(bytearray(sep.join(train).encode()), dtype=torch.uint8)
    te = torch.frombuffer(bytearray(sep.join(held).encode()), dtype=torch.uint8)
    for part, data in (("training", tr), ("held-out", te)):
        if len(data) < 2 * (context + 1):
            raise TextError(f"{name}: the {part} text is {len(data)} bytes, shorter than two "
                            f"windows of {context + 1}; give more text (or a lower --holdout "
                            f"if the training part is short).")
    return TextBundle(name, tr, _windows(te, context, EVAL_WINDOWS), (len(train), len(held)),
                      context)


def split_units(units: list[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """Whole units (topics, files) in a seeded order: held-out ones until they hold `holdout`
    of the characters (at least one), the rest for training, each side in original order."""
    order = torch.randperm(len(units), generator=torch.Generator().manual_seed(seed)).tolist()
    total, held, size = sum(len(u) for u in units), set(), 0
    for i in order[:-1]:
        if size >= holdout * total:
            break
        held.add(i)
        size += len(units[i])
    return ([u for i, u in enumerate(units) if i not in held],
            [u for i, u in enumerate(units) if i in held])


def pydoc_topics() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def load_text(name: str, holdout: float = 0.2, seed: int = 0,
              context: int = CONTEXT) -> TextBundle:
    """`pydoc` or `text:PATH` as a TextBundle; TextError for anything a user must fix."""
    if name == PYDOC:
        return _bundle(name, *split_units(pydoc_topics(), holdout, seed), context)
    if not name.startswith(TEXT_PREFIX):
        raise TextError(f"unknown text dataset {name!r}; use pydoc or text:PATH.")
    path = Path(name[len(TEXT_PREFIX):]).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise TextError(f"text folder {path} holds no .txt file; put UTF-8 .txt files in "
                            f"it or give text:FILE.")
    else:
        raise TextError(f"text file or folder {path} does not exist; give text:PATH to a "
                        f"UTF-8 .txt file or a folder of them.")
    texts, size = [], 0
    for p in files:
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise TextError(f"cannot read {p}: {e.strerror}.") from None
        size += len(raw)
        if size > MAX_BYTES:
            raise TextError(f"the text under {path} is over {MAX_BYTES >> 20} MB; give a "
                            f"smaller part of it.")
        texts.append(_decode(raw, str(p)))
    if len(texts) == 1:     # one text: its tail is held out (unseen, contiguous)
        cut = int(len(texts[0]) * (1 - holdout))
        return _bundle(name, [texts[0][:cut]], [texts[0][cut:]], context)
    return _bundle(name, *split_units(texts, holdout, seed), context)


def text_problem(name: str) -> str | None:
    """What is wrong with a text:PATH dataset, from the file system only (nothing decoded)."""
    if not name.startswith(TEXT_PREFIX):
        return None
    path = Path(name[len(TEXT_PREFIX):]).expanduser()
    if path.is_file():
        return None
    if not path.is_dir():
        return f"text file or folder {path} does not exist"
    if not any(path.rglob("*.txt")):
        return f"text folder {path} holds no .txt file"
    return None
