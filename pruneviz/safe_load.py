"""Loading files a user hands us (checkpoints, masks, run cards, compact models) without running
code from them.

- `.pt` files go through `torch.load(weights_only=True)`, which rebuilds only tensors, containers
  and primitive types; a pickle that names any other callable (the way a malicious checkpoint runs
  code) is refused with `UnsafeFileError` before anything runs.
- Run cards are JSON and CSV: data, never code (configs are rebuilt field by field by
  `SessionConfig.from_dict`, never evaluated).
- `.pt2` archives (torch.export) are read by `torch.export.load`, which falls back to full pickle
  for tensor subclasses, opaque objects and sample inputs and can carry compiled libraries
  (AOTInductor). `load_program` opens the zip first and accepts only the plain payloads
  `torch.export.save` writes for an ordinary module: JSON program and configs, raw weight bytes,
  and sample inputs that load under `weights_only=True`.

Every place pruneviz reads a `.pt` file goes through `load_tensors`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError

# Entries of a .pt2 archive (below its root folder) that carry no code: the serialized program
# and configs (JSON), raw tensor bytes, sample inputs (checked with weights_only) and metadata.
_PT2_PLAIN = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[^/]+\.json|data/weights/weight_\d+|data/weights/[^/]+_weights_config\.json"
    r"|data/constants/tensor_\d+|data/constants/[^/]+_constants_config\.json"
    r"|data/sample_inputs/[^/]+\.pt|extra/[^/]+)")


class UnsafeFileError(ConfigError):
    """A file would run code (or load a compiled library) if loaded; it was not loaded."""


def _refuse(path: str | Path, why: str) -> UnsafeFileError:
    return UnsafeFileError(
        f"refused to load {path}: {why}. Loading it could run code from the file. pruneviz reads "
        f"only plain tensors (torch.save(model.state_dict(), path) or a dict of tensors); if you "
        f"trust the file, re-save its state_dict and load that.")


def load_tensors(path: str | Path, *, map_location: str | torch.device = "cpu") -> Any:
    """A `.pt` file holding tensors, dicts, lists and numbers (`torch.load(weights_only=True)`);
    raises UnsafeFileError for a pickle that would construct anything else."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no such file: {path}.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"its pickle calls {found.group(1)}" if found else "it is not a plain-tensor file"
        raise _refuse(path, what) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        # a truncated zip (a kill or a full disk during torch.save) raises OSError EINVAL
        raise ConfigError(f"{path} is not a readable PyTorch tensor file (truncated or "
                          f"damaged: {e}).") from None


def partial_name(path: Path) -> Path:
    """Where a file is written before it is renamed into place (same folder and suffix)."""
    return path.with_name(f".partial-{path.name}")


def save_tensors(obj: Any, path: str | Path) -> None:
    """`torch.save` to a temporary name, then rename: a kill or a full disk leaves no truncated
    file under the real name. Raises OSError (the partial file removed) when the write fails."""
    path = Path(path)
    tmp = partial_name(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise
        # torch's zip writer reports a full disk as a RuntimeError ("unexpected pos ...").
        raise OSError(f"could not write {path} (disk full?): {e}") from None


def load_json(path: str | Path) -> Any:
    """A JSON file (data only)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}).") from None


def check_program(path: str | Path) -> None:
    """Raise UnsafeFileError unless the `.pt2` archive holds only payloads that load as data."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}.") from None
    except zipfile.BadZipFile:
        raise ConfigError(f"{path} is not a .pt2 archive (torch.export.save writes a zip).") \
            from None
    with archive:
        for name in archive.namelist():
            if name.endswith("/"):
                continue
            root, _, rel = name.partition("/")
            if not rel or not _PT2_PLAIN.fullmatch(rel):
                raise _refuse(path, f"the archive holds {name!r}, which is not a plain program, "
                                    f"weight or config entry (pickled objects and compiled "
                                    f"libraries are not accepted)")
            if rel.endswith("_config.json"):
                config = json.loads(archive.read(name)).get("config", {})
                for key, meta in config.items():
                    if meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(
                            ("weight_", "tensor_")):
                        raise _refuse(path, f"{key!r} in {rel} is stored as a pickle")
            elif rel.startswith("data/sample_inputs/"):
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except pickle.UnpicklingError:
                    raise _refuse(path, f"its sample inputs ({rel}) are not plain tensors") \
                        from None


def load_program(path: str | Path) -> torch.export.ExportedProgram:
    """A `.pt2` file written by `torch.export.save`, after `check_program` found no code in it.

    `load_program(path).module()` is the runnable module.
    """
    check_program(path)
    return torch.export.load(str(path))
