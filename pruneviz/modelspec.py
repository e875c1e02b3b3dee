"""One model spec string -> an nn.Module adapted to the dataset, with its weights.

A spec is one of:
- a built-in name (`resnet20`, see models.MODELS);
- `torchvision:NAME`: any classifier of `torchvision.models.list_models(module=torchvision.models)`,
  its stem adapted to the dataset's channels and its classifier to the dataset's classes;
- `MODULE:FACTORY` (importable, `mypkg.models:build`) or `PATH.py:FACTORY` (a file): a callable
  returning an nn.Module, called with those of num_classes, in_channels, image_size it accepts.

Importing a user's module runs its code, as running their script would. Weights (`--weights`)
are a state_dict read without unpickling code (safe_load.load_tensors, or `.safetensors`), loaded
strictly. Every bad spec or weights file is a ConfigError saying what was wrong and how to fix it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from . import models as builtin
from .config import ConfigError

TORCHVISION_PREFIX = "torchvision:"
FACTORY_ARGS = ("num_classes", "in_channels", "image_size")
SPEC_FORMS = ("a built-in name, torchvision:NAME (a torchvision classifier), MODULE:FACTORY (an "
              "importable callable) or PATH.py:FACTORY (a callable in a file)")


@dataclass(frozen=True)
class Spec:
    """A parsed model spec: kind is builtin, torchvision, module or file."""

    kind: str
    target: str                 # the built-in or torchvision name, the module, or the file path
    factory: str = ""

    @property
    def short(self) -> str:
        """A short name for legends: `resnet20`, `tv:mobilenet_v3_small`, `net.py:build`."""
        if self.kind == "builtin":
            return self.target
        if self.kind == "torchvision":
            return f"tv:{self.target}"
        return f"{Path(self.target).name if self.kind == 'file' else self.target}:{self.factory}"


def short_name(text: str) -> str:
    """Spec.short of a spec string without checking it (a stored run's file may live on
    another machine): `/home/u/nets.py:build` -> `nets.py:build`, `torchvision:vgg11` ->
    `tv:vgg11`; anything else as given."""
    text = str(text).strip()
    if text.startswith(TORCHVISION_PREFIX):
        return Spec("torchvision", text[len(TORCHVISION_PREFIX):].strip()).short
    target, sep, factory = text.rpartition(":")
    if not sep or not target.strip():
        return text
    target = target.strip()
    kind = "file" if target.endswith(".py") or "/" in target or "\\" in target else "module"
    if kind == "file":
        target = target.replace("\\", "/")
    return Spec(kind, target, factory.strip()).short


def builtin_names() -> tuple[str, ...]:
    return tuple(builtin.MODELS)


def check_model_name(name: str) -> None:
    """ConfigError unless `name` is a valid model spec (parse_spec: a built-in name,
    torchvision:NAME, MODULE:FACTORY or PATH.py:FACTORY); nothing is imported or built."""
    if name not in builtin.MODELS:
        check_spec(name)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, *,
                pretrained: bool = False) -> nn.Module:
    """Build any model spec (a built-in name through models.build_model) for inputs of shape
    (C, H, W) (text: (context,)) and `num_classes` outputs."""
    if name in builtin.MODELS:
        return builtin.build_model(name, input_shape, num_classes, pretrained=pretrained)
    return build_spec(name, input_shape, num_classes, pretrained=pretrained)


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


def parse_spec(text: str) -> Spec:
    """The spec's kind and parts; ConfigError for a malformed one or an unknown name (a file
    spec's file must exist and be a .py; nothing is imported here)."""
    text = str(text).strip()
    if text in builtin_names():
        return Spec("builtin", text)
    if text.startswith(TORCHVISION_PREFIX):
        name = text[len(TORCHVISION_PREFIX):].strip()
        if name not in torchvision_names():
            near = [n for n in torchvision_names() if name and (name in n or n in name)][:8]
            hint = f" Close: {', '.join(near)}." if near else ""
            raise ConfigError(f"model {text!r}: torchvision has no classification model {name!r}."
                              f"{hint} `python -c \"import torchvision.models as m; "
                              f"print(m.list_models(module=m))\"` lists them.")
        return Spec("torchvision", name)
    target, sep, factory = text.rpartition(":")
    if not sep:
        if text.endswith(".py"):
            raise ConfigError(f"model {text!r}: say which function in the file builds the model, "
                              f"as PATH.py:FACTORY (for example {text}:build).")
        raise ConfigError(f"unknown model {text!r}; use {SPEC_FORMS}. Built-in: "
                          f"{', '.join(builtin_names())}.")
    factory = factory.strip()
    if not factory.isidentifier() or not target.strip():
        raise ConfigError(f"model {text!r}: expected MODULE:FACTORY or PATH.py:FACTORY with "
                          f"FACTORY a function name, for example mymodels.py:build.")
    target = target.strip()
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.exists():
            # named with the host: a Ray task reads the spec on its node, not the driver's
            raise ConfigError(f"model {text!r}: no such file {path} on {socket.gethostname()}; "
                              f"give the path of the .py file that defines {factory} "
                              f"(relative to {Path.cwd()}), present on every machine that "
                              f"trains it.")
        if path.is_dir() or path.suffix != ".py":
            raise ConfigError(f"model {text!r}: {path} is not a .py file; PATH.py:FACTORY takes "
                              f"a Python source file defining {factory}.")
        return Spec("file", str(path), factory)
    if not all(part.isidentifier() for part in target.split(".")):
        raise ConfigError(f"model {text!r}: {target!r} is not a module name; use MODULE:FACTORY "
                          f"(mypkg.models:build) or PATH.py:FACTORY.")
    return Spec("module", target, factory)


def check_spec(text: str) -> Spec:
    """parse_spec plus, for MODULE:FACTORY, that the module can be found (not imported)."""
    spec = parse_spec(text)
    if spec.kind == "module":
        try:
            found = importlib.util.find_spec(spec.target)
        except (ImportError, ValueError) as e:
            found, why = None, f" ({e})"
        else:
            why = ""
        if found is None:
            raise ConfigError(f"model {text!r}: no module named {spec.target!r} on the Python "
                              f"path{why}; install it, run from the folder that holds it, or "
                              f"give its file as PATH.py:{spec.factory}.")
    return spec


def _load_factory(spec: Spec, text: str) -> Callable:
    try:
        if spec.kind == "file":
            path = Path(spec.target).resolve()
            name = "pruneviz_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            loader = importlib.util.spec_from_file_location(name, path)
            assert loader is not None and loader.loader is not None
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module      # dataclasses and pickling look classes up here
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(spec.target)
    except Exception as e:
        raise ConfigError(f"model {text!r}: importing {spec.target} failed: "
                          f"{type(e).__name__}: {e}. Fix the module so it imports.") from None
    factory = getattr(module, spec.factory, None)
    if factory is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
        raise ConfigError(f"model {text!r}: {spec.target} defines no {spec.factory!r}; its "
                          f"callables are: {', '.join(names) or 'none'}.")
    if not callable(factory):
        raise ConfigError(f"model {text!r}: {spec.factory} in {spec.target} is a "
                          f"{type(factory).__name__}, not a callable that builds a model.")
    return factory


def _factory_kwargs(factory: Callable, text: str, given: dict[str, int]) -> dict[str, int]:
    """Those of `given` the factory's signature accepts; ConfigError if it requires another."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return dict(given)
    out = {k: v for k, v in given.items() if k in sig.parameters
           and sig.parameters[k].kind is not inspect.Parameter.POSITIONAL_ONLY}
    needed = [p.name for p in params if p.default is p.empty and p.name not in out
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if needed:
        raise ConfigError(f"model {text!r}: the factory requires {', '.join(needed)}, which "
                          f"pruneviz cannot give; it passes only {', '.join(FACTORY_ARGS)} (those "
                          f"the signature names). Give the others defaults, or wrap the factory.")
    return out


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def adapt_torchvision(model: nn.Module, in_channels: int, num_classes: int) -> nn.Module:
    """Stem to `in_channels` (the first conv reading 3 channels), classifier to `num_classes`
    (the last conv or linear with 1000 outputs), as models._torchvision does for resnets."""
    if in_channels != 3:
        stem = next(((n, m) for n, m in model.named_modules()
                     if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)
        if stem is not None:
            n, old = stem
            _replace(model, n, nn.Conv2d(in_channels, old.out_channels, old.kernel_size,
                                         old.stride, old.padding, bias=old.bias is not None))
    heads = [(n, m) for n, m in model.named_modules()
             if (isinstance(m, nn.Linear) and m.out_features == 1000)
             or (isinstance(m, nn.Conv2d) and m.out_channels == 1000)]
    if heads and num_classes != 1000:
        n, old = heads[-1]
        new = (nn.Linear(old.in_features, num_classes) if isinstance(old, nn.Linear) else
               nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding))
        _replace(model, n, new)
    return model


def _build_torchvision(name: str, input_shape: tuple[int, int, int], num_classes: int,
                       pretrained: bool) -> nn.Module:
    import torchvision.models as tvm

    c, h, _ = input_shape
    extra: dict = {}
    if name in ("googlenet", "inception_v3"):
        extra["aux_logits"] = False     # one output tensor, as the loss expects
        extra["init_weights"] = True
    if name.startswith("vit_"):
        extra["image_size"] = h
    if pretrained:
        model = tvm.get_model(name, weights="DEFAULT", **({} if name.startswith("vit_") else
                                                           {k: v for k, v in extra.items()
                                                            if k != "aux_logits"}))
        if hasattr(model, "aux_logits"):
            model.aux_logits = False
            for aux in ("AuxLogits", "aux1", "aux2"):
                if hasattr(model, aux):
                    setattr(model, aux, None)
        return adapt_torchvision(model, c, num_classes)
    model = tvm.get_model(name, weights=None, num_classes=num_classes, **extra)
    return adapt_torchvision(model, c, num_classes)


def _build(text: str, input_shape: tuple[int, int, int], num_classes: int, *,
           pretrained: bool = False) -> nn.Module:
    spec = check_spec(text)
    c, h, _ = input_shape
    if spec.kind == "builtin":
        return builtin.build_model(text, input_shape, num_classes, pretrained=pretrained)
    if spec.kind == "torchvision":
        try:
            return _build_torchvision(spec.target, input_shape, num_classes, pretrained)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"model {text!r}: torchvision could not build it for "
                              f"{c}x{h}x{h} inputs and {num_classes} classes: "
                              f"{type(e).__name__}: {e}.") from None
    if pretrained:
        raise ConfigError(f"model {text!r}: --pretrained downloads torchvision's weights; for "
                          f"your own model give a state_dict file with --weights instead.")
    factory = _load_factory(spec, text)
    kwargs = _factory_kwargs(factory, text, {"num_classes": num_classes, "in_channels": c,
                                             "image_size": h})
    try:
        model = factory(**kwargs)
    except Exception as e:
        call = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        raise ConfigError(f"model {text!r}: {spec.factory}({call}) raised "
                          f"{type(e).__name__}: {e}.") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {text!r}: {spec.factory} returned a {type(model).__name__}, "
                          f"not a torch.nn.Module; return the model itself.")
    return model


def build_spec(text: str, input_shape: tuple[int, int, int], num_classes: int, *,
               pretrained: bool = False) -> nn.Module:
    """The module a spec names, built for inputs (C, H, W) and `num_classes`; a model that is
    not built in is registered for tracing (structure.remember): its prunable layers, norms and
    groups come from its graph, not from names."""
    from .structure import remember

    model = _build(text, input_shape, num_classes, pretrained=pretrained)
    if parse_spec(text).kind != "builtin":
        remember(model, input_shape)
    return model


def check_forward(model: nn.Module, text: str, example: torch.Tensor, num_classes: int) -> None:
    """ConfigError unless the model maps the dataset's example batch to (batch, num_classes)
    logits. Runs in eval mode without gradients: no BatchNorm statistic and no RNG is touched."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    shape = "x".join(map(str, example.shape))
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as e:
        raise ConfigError(f"model {text!r}: its forward fails on the dataset's input of shape "
                          f"{shape}: {type(e).__name__}: {e}. Build it for this input size (the "
                          f"factory may take in_channels and image_size).") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"model {text!r}: its forward returns a {type(out).__name__}; pruneviz "
                          f"trains classifiers whose forward returns one tensor of logits.")
    if out.shape != (example.shape[0], num_classes):
        raise ConfigError(f"model {text!r}: its forward returns shape "
                          f"{tuple(out.shape)} on a batch of {example.shape[0]}; the dataset has "
                          f"{num_classes} classes, so ({example.shape[0]}, {num_classes}) was "
                          f"expected. The factory may take num_classes.")


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state_dict file: `.safetensors` (when the package is installed) or a torch.save'd dict
    of tensors read with weights_only=True; a pickled whole model is refused, saying why."""
    from .safe_load import load_tensors

    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"weights: no such file {p}; give a state_dict saved with "
                          f"torch.save(model.state_dict(), path).")
    if p.is_dir():
        raise ConfigError(f"weights: {p} is a folder; give a state_dict file.")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(f"weights: {p} is a .safetensors file, but the safetensors package "
                              f"is not installed; pip install safetensors, or save the "
                              f"state_dict with torch.save.") from None
        try:
            return load_file(str(p))
        except Exception as e:
            raise ConfigError(f"weights: {p} is not a readable safetensors file "
                              f"({type(e).__name__}: {e}).") from None
    try:
        state = load_tensors(p)
    except ConfigError as e:
        raise ConfigError(f"weights: {e} A whole pickled model is refused because unpickling "
                          f"runs code; save torch.save(model.state_dict(), path) instead."
                          ) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ConfigError(f"weights: {p} holds a {type(state).__name__}, not a state_dict (a "
                          f"dict of parameter name -> tensor); save "
                          f"torch.save(model.state_dict(), path).")
    return state


def load_weights(model: nn.Module, path: str) -> None:
    """Load a state_dict file into `model` strictly; ConfigError naming missing, unexpected and
    mis-shaped keys."""
    state = read_weights(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {tuple(state[k].shape)} vs the model's {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                       ("mis-shaped", shaped)):
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            problems.append(f"{what}: {', '.join(keys[:5])}{more}")
    if problems:
        raise ConfigError(f"weights: {path} does not fit the model ({'; '.join(problems)}). Save "
                          f"the state_dict of the same architecture built for this dataset's "
                          f"channels and classes.")
    model.load_state_dict(state, strict=True)


def file_hash(path: str) -> str:
    """sha256 of a file's bytes (the dense-baseline cache keys on the weights' content)."""
    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_model(text: str, input_shape: tuple[int, int, int], num_classes: int, *,
               example: torch.Tensor | None = None, weights: str = "",
               pretrained: bool = False) -> nn.Module:
    """Build the spec's model, load `weights` strictly, and check its forward on `example` (a
    normalized batch from the dataset) for anything but a built-in model."""
    model = build_model(text, input_shape, num_classes, pretrained=pretrained)
    if weights:
        load_weights(model, weights)
    if example is not None and parse_spec(text).kind != "builtin":
        check_forward(model, text, example, num_classes)
    return model


def describe(text: str, input_shape: tuple[int, int, int], num_classes: int, *,
             weights: str = "") -> dict:
    """What pruneviz finds in a model, for the form's model box: parameters, FLOPs, prunable
    layers and coupled groups, and what stays dense and why. ConfigError as a run would raise."""
    from .masks import prunable_layers
    from .metrics import count_flops
    from .structure import lookup

    example = torch.zeros(2, *input_shape)
    model = make_model(text, input_shape, num_classes, example=example, weights=weights)
    st = lookup(model)
    out = {"params": sum(p.numel() for p in model.parameters()),
           "flops": count_flops(model, input_shape),
           "layers": len(prunable_layers(model, first_conv=True, last_linear=True,
                                         shortcuts=True)),
           "filter_layers": len(prunable_layers(model, linears=False, first_conv=True)),
           "groups": 0, "dense": {}, "filter_dense": {}, "trace_error": ""}
    if st is not None:
        out.update(groups=sum(len(g) > 1 for g in st.groups), dense=dict(st.dense),
                   filter_dense=dict(st.filter_dense), trace_error=st.error,
                   input_layers=list(st.inputs), classifier=st.classifier)
    return out


@functools.lru_cache(maxsize=64)
def layer_names(name: str, input_shape: tuple[int, ...], num_classes: int = 10
                ) -> tuple[str, ...]:
    """Names of the model's conv and linear layers, from a model built on the meta device (no
    memory, no weights initialised: cheap enough to check a form on every redraw)."""
    with torch.device("meta"):
        model = build_model(name, input_shape, num_classes)
    return tuple(n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
