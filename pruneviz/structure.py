"""What a model lets a method prune, found by tracing it once (Torch-Pruning's DependencyGraph).

From one forward on an example input: the conv and linear layers the trace saw, the norm that
consumes each one's output (BatchNorm, LayerNorm, GroupNorm, through permutes), coupled channel
groups (residual adds, concatenations, splits, depthwise convs tied to their producer), the input
layers (no layer upstream) and the classifier (no layer downstream). What cannot be pruned
safely is named with its reason (`dense`, `filter_dense`), never guessed.

Models that are not built in are registered by modelspec (`remember`) with their input shape;
masks.prunable_layers asks `lookup` and uses the traced answer for them. Built-in models keep
the name rules of masks.py, which give the same layers on them (tests/test_structure.py).
"""

from __future__ import annotations

import fnmatch
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn as nn

NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
LAYERS = (nn.Conv2d, nn.Linear)
# Layer kinds pruneviz's masks do not handle (their weights stay dense, named).
UNSUPPORTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
               nn.Embedding, nn.LSTM, nn.GRU, nn.RNN)


@dataclass
class Structure:
    """The traced answer for one model (module names throughout)."""

    layers: list[str]                                   # traced convs and linears, module order
    norms: dict[str, str] = field(default_factory=dict)  # layer -> norm consuming its output
    groups: list[list[str]] = field(default_factory=list)  # coupled convs (output channels)
    inputs: list[str] = field(default_factory=list)     # layers reading the model's input
    classifier: str | None = None                       # the layer producing the logits
    shortcuts: set[str] = field(default_factory=set)    # 1x1 projections joining a residual add
    dense: dict[str, str] = field(default_factory=dict)  # stays dense for every method: why
    filter_dense: dict[str, str] = field(default_factory=dict)  # convs filter methods skip: why
    error: str = ""     # why the trace failed (then layers are in module order, no groups)

    def unpruned(self, kind: str) -> dict[str, str]:
        """What stays dense for a method of `kind` ("filter" or "unstructured"), with why."""
        return {**self.dense, **(self.filter_dense if kind == "filter" else {})}


@dataclass
class _Entry:
    input_shape: tuple[int, ...]
    ignore: tuple[str, ...] = ()
    structure: Structure | None = None


_REGISTRY: weakref.WeakKeyDictionary[nn.Module, _Entry] = weakref.WeakKeyDictionary()


def remember(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Mark `model` as traced-structure: prunable_layers traces it (once) on this input shape."""
    _REGISTRY[model] = _Entry(tuple(input_shape))


def set_ignore(model: nn.Module, patterns: tuple[str, ...]) -> None:
    """Layers matching `patterns` (ignore=...) stay dense on `model`, built in or not."""
    entry = _REGISTRY.get(model)
    if entry is None:
        _REGISTRY[model] = entry = _Entry((), structure=None)
    entry.ignore = tuple(patterns)


def ignored(model: nn.Module) -> tuple[str, ...]:
    entry = _REGISTRY.get(model)
    return entry.ignore if entry is not None else ()


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether a module name matches an ignore pattern: a glob (`features.*`), the exact name,
    or a module holding it (`layer1` matches `layer1.0.conv1`)."""
    return any(fnmatch.fnmatchcase(name, p) or name == p or name.startswith(p + ".")
               for p in patterns)


def lookup(model: nn.Module) -> Structure | None:
    """The traced structure of a registered model (traced on first use); None otherwise."""
    entry = _REGISTRY.get(model)
    if entry is None or not entry.input_shape:
        return None
    if entry.structure is None:
        device = next(model.parameters()).device
        try:
            entry.structure = trace(model, torch.zeros(1, *entry.input_shape, device=device))
        except Exception as e:      # Torch-Pruning's tracer fails on some graphs: say so
            entry.structure = untraced(model, f"{type(e).__name__}: {e}")
    return entry.structure


def untraced(model: nn.Module, error: str) -> Structure:
    """What is known without a trace: every conv and linear in module order, the first the
    input layer and the last the classifier; no norms, no groups (filter methods refuse it)."""
    layers = [n for n, m in model.named_modules() if isinstance(m, LAYERS)]
    return Structure(layers, inputs=layers[:1], classifier=layers[-1] if layers else None,
                     error=error)


def dependency_graph(model: nn.Module, example_input: torch.Tensor):
    """Torch-Pruning's dependency graph of `model` on one example input, the model's modes
    kept."""
    import torch_pruning as tp

    # Torch-Pruning traces in eval mode and leaves the model there; a method that shrinks the
    # network mid-training would silently go on training with frozen BatchNorm statistics.
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.enable_grad():     # the graph is traced through autograd
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_input,
                                                         verbose=False)
    finally:
        for m, mode in modes.items():
            m.training = mode


def _walk(node, attr: str, seen: set) -> list:
    """Nodes reachable from `node` along `attr` ("inputs" or "outputs"), stopping at layers."""
    out, stack = [], list(getattr(node, attr))
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n.module, LAYERS):
            out.append(n)
            continue
        stack.extend(getattr(n, attr))
    return out


def _norm_of(node, width: int):
    """The norm consuming a layer's output directly (through permutes/reshapes only)."""
    import torch_pruning as tp

    passthrough = (tp.ops.OPTYPE.RESHAPE,)
    stack = list(node.outputs)
    while stack:
        n = stack.pop()
        if isinstance(n.module, NORMS):
            m = n.module
            size = (m.num_features if hasattr(m, "num_features") else
                    m.num_channels if isinstance(m, nn.GroupNorm) else m.normalized_shape[-1])
            return n if size == width and len(node.outputs) == 1 else None
        if n.type in passthrough or type(n.module).__name__ == "_PermuteOp":
            stack.extend(n.outputs)
    return None


def trace(model: nn.Module, example: torch.Tensor) -> Structure:
    """Trace `model` on `example` (a batch) and derive its structure."""
    graph = dependency_graph(model, example)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    nodes = graph.module2node
    modules = dict(model.named_modules())
    layers, dense = _reached_layers(model, nodes)
    norms = {}
    for name in layers:
        m = modules[name]
        width = m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        norm = _norm_of(nodes[m], width)
        if norm is not None:
            norms[name] = names[norm.module]
    dense.update(_unwrapped(model, layers, dense))
    inputs, outputs = [], []
    for name in layers:
        node = nodes[modules[name]]
        if not _walk(node, "inputs", set()):
            inputs.append(name)
        if not _walk(node, "outputs", set()):
            outputs.append(name)
    classifier = max(outputs, key=order.get) if outputs else None
    groups, filter_dense = _filter_groups(graph, model, layers, order)
    shortcuts = set()
    for group in groups:
        if len(group) < 2:
            continue
        for name in group:
            m, node = modules[name], nodes[modules[name]]
            branch = any(len(n.outputs) > 1 for n in node.inputs)
            if tuple(m.kernel_size) == (1, 1) and branch:
                shortcuts.add(name)
    return Structure(layers, norms, groups, inputs, classifier, shortcuts, dense, filter_dense)


def _reached_layers(model: nn.Module, nodes: dict) -> tuple[list[str], dict[str, str]]:
    """The conv/linear layers the trace reached, in module order, and the modules that stay
    dense with why (not reached, or a layer kind pruneviz does not prune)."""
    dense: dict[str, str] = {}
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, LAYERS):
            if m in nodes:
                layers.append(name)
            else:
                dense[name] = ("not reached as a module by the forward on the example input "
                               "(the trace cannot see it, e.g. its weight is used functionally)")
        elif isinstance(m, UNSUPPORTED):
            dense[name] = f"{type(m).__name__}: a layer kind pruneviz does not prune"
    return layers, dense


def _unwrapped(model: nn.Module, layers: list[str], dense: dict[str, str]) -> dict[str, str]:
    """Parameters that are no traced layer's or norm's weight (and not inside a dense module)."""
    known = set()
    for name in layers:
        known.update({f"{name}.weight", f"{name}.bias"})
    for nname, m in model.named_modules():
        if isinstance(m, NORMS):
            known.update({f"{nname}.weight", f"{nname}.bias"})
    return {pname: ("unwrapped parameter (not a conv, linear or norm weight): "
                    "Torch-Pruning would prune it along a guessed dimension")
            for pname, _ in model.named_parameters()
            if pname not in known and not any(pname.startswith(d + ".") for d in dense)}


def _filter_groups(graph, model: nn.Module, layers: list[str], order: dict[str, int]
                   ) -> tuple[list[list[str]], dict[str, str]]:
    """The convs' coupled groups (Torch-Pruning's pruning groups of their output channels) and
    the convs whose filters stay dense with why (grouped convs, channels coupled to a linear,
    a LayerNorm or GroupNorm, or an unwrapped parameter)."""
    import torch_pruning as tp

    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    filter_dense: dict[str, str] = {}
    groups: list[list[str]] = []
    seen: set[str] = set()
    for name in [n for n in layers if isinstance(modules[n], nn.Conv2d)]:
        m = modules[name]
        if m.groups > 1:
            what = ("depthwise conv: its channels follow the layer producing its input"
                    if m.groups == m.in_channels == m.out_channels else
                    f"grouped conv (groups={m.groups}): removing filters must keep every group "
                    f"equally wide, which per-filter masks do not")
            filter_dense[name] = what
        if name in seen:
            continue
        group = graph.get_pruning_group(m, tp.prune_conv_out_channels, [0])
        members, blockers = [], []
        for dep, _ in group:
            target = dep.target.module
            tname = names.get(target)
            out = graph.is_out_channel_pruning_fn(dep.handler)
            grouped = (isinstance(target, nn.Conv2d) and target.groups > 1
                       and not target.groups == target.in_channels == target.out_channels)
            if grouped and target is not m:
                blockers.append(f"grouped conv {tname} (groups={target.groups}), whose groups "
                                f"must stay equally wide")
            elif isinstance(target, nn.Conv2d) and out and tname is not None:
                members.append(tname)
            elif isinstance(target, nn.Linear) and out:
                blockers.append(f"the outputs of linear {tname}")
            elif isinstance(target, (nn.LayerNorm, nn.GroupNorm)):
                blockers.append(f"{type(target).__name__} {tname}, which normalises across "
                                f"channels (a removed channel would change the others)")
            elif dep.target.type == tp.ops.OPTYPE.PARAMETER:
                blockers.append("an unwrapped parameter")
        members = sorted(set(members), key=order.get)
        seen.update(members)
        groups.append(members)
        if blockers:
            kinds = sorted(set(blockers))
            more = f" and {len(kinds) - 2} more" if len(kinds) > 2 else ""
            why = f"its output channels are coupled to {'; '.join(kinds[:2])}{more}"
            for member in members:
                filter_dense.setdefault(member, why)
    return groups, filter_dense


def unpruned_layers(model: nn.Module, kind: str) -> list[str]:
    """The run summary's `unpruned_layers`: "name: why" for each layer or parameter that stays
    dense on `model` for a method of `kind` (empty for a built-in model without ignore=)."""
    st = lookup(model)
    out = [f"{k}: {v}" for k, v in st.unpruned(kind).items()] if st is not None else []
    patterns = ignored(model)
    if patterns:
        names = st.layers if st is not None else [n for n, m in model.named_modules()
                                                   if isinstance(m, LAYERS)]
        out += [f"{n}: matched ignore={','.join(patterns)}" for n in names
                if matches(n, patterns)]
    return out

