"""Forms generated from dataclass fields: SessionConfig's and each method's Params.

A widget per field from its type and metadata (help text, min/max/step, choices); values live in
session state under "<prefix>.<field>" (method parameters under "<prefix>.<method>.<field>") and
are remembered across page switches. Bad input becomes an inline st.error, never a traceback.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import streamlit as st

from ..config import ConfigError, SessionConfig, coerce
from ..data import DATASETS
from ..methods import apply_preset, get_method, load_all, make_params
from ..models import MODELS
from ..plots import schedule_figure
from ..session import check

MAIN_FIELDS = ("model", "dataset", "rate", "epochs", "seed")
SKIP = {"method", "params"}          # drawn by the form itself
NO_PRESET = "(defaults)"
_MEMORY = "_form_memory"             # survives page switches (widget state does not)
_OPTIONS = {"model": tuple(MODELS), "dataset": DATASETS}
PREFILL = "prefill"                  # set by Inspect: {"layer_rates": "a=0.3, b=0.7", "rate": 0.5}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _shown(value: Any) -> Any:
    """A field value as its widget holds it (tuples are edited as comma-separated text)."""
    if isinstance(value, tuple):
        return ", ".join(f"{v:g}" for v in value)
    return value


def _parse(value: Any, default: Any, name: str) -> Any:
    if isinstance(default, tuple):
        return coerce(str(value), default, name)
    if isinstance(default, float) and not isinstance(value, bool):
        return float(value)
    return value


def field_widget(f: dataclasses.Field, key: str, default: Any) -> Any:
    """Draw one widget for a dataclass field; returns the widget's value."""
    memory = st.session_state.setdefault(_MEMORY, {})
    if key not in st.session_state:
        st.session_state[key] = memory.get(key, _shown(default))
    meta, label = f.metadata, f.name.replace("_", " ")
    kw = dict(key=key, help=meta.get("help"))
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(default, bool):
        value = st.checkbox(label, **kw)
    elif "choices" in meta or f.name in _OPTIONS:
        options = list(meta.get("choices") or _OPTIONS[f.name])
        # Datasets also take folder:PATH, typed into the box.
        value = st.selectbox(label, options, accept_new_options=f.name == "dataset", **kw)
    elif isinstance(default, int):
        value = st.number_input(label, min_value=None if lo is None else int(lo),
                                max_value=None if hi is None else int(hi), step=1, **kw)
    elif isinstance(default, float) and None not in (lo, hi) and "step" in meta:
        value = st.slider(label, float(lo), float(hi), step=float(meta["step"]), **kw)
    elif isinstance(default, float):
        value = st.number_input(label, min_value=None if lo is None else float(lo),
                                max_value=None if hi is None else float(hi),
                                step=float(meta.get("step") or _step(default)), format="%g",
                                **kw)
    else:
        value = st.text_input(label, **kw)
    memory[key] = value
    return value


def _step(default: float) -> float:
    """A spin-button step about a tenth of the default's magnitude (0.01 for lr 0.1)."""
    if default == 0:
        return 0.01
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1)


def dataclass_widgets(cls: type, prefix: str, names: Iterable[str],
                      defaults: dict[str, Any] | None = None) -> tuple[dict, list[str]]:
    """Widgets for `names` of dataclass `cls` (initial values from `defaults`, else the field
    defaults); returns parsed values and parse errors."""
    fields, values, errors = _fields(cls), {}, []
    for name in names:
        f = fields[name]
        default = (defaults or {}).get(name, _default(f))
        raw = field_widget(f, f"{prefix}.{name}", default)
        try:
            values[name] = _parse(raw, _default(f), name.replace("_", " "))
        except ConfigError as e:
            errors.append(str(e))
    return values, errors


def _method_key(prefix: str) -> str:
    return f"{prefix}.method"


def _apply_preset(prefix: str) -> None:
    """Preset picked: write its session fields and method parameters into the widgets."""
    preset = st.session_state[f"{prefix}.preset"]
    method = st.session_state[_method_key(prefix)]
    st.session_state.pop(f"{prefix}.preset_error", None)
    if preset == NO_PRESET:
        return
    try:
        config = apply_preset(SessionConfig(method=method), preset)
    except ConfigError as e:
        st.session_state[f"{prefix}.preset_error"] = str(e)
        return
    memory = st.session_state.setdefault(_MEMORY, {})
    for name, value in get_method(method).presets[preset].items():
        key = f"{prefix}.{name}" if name in _fields(SessionConfig) else f"{prefix}.{method}.{name}"
        value = getattr(config, name) if name in _fields(SessionConfig) else config.params[name]
        st.session_state[key] = memory[key] = _shown(value)


def method_picker(prefix: str, default: str = "gmp") -> type:
    """Method selectbox with its summary and presets; returns the method class."""
    registry = load_all()
    names = sorted(registry)
    key = _method_key(prefix)
    memory = st.session_state.setdefault(_MEMORY, {})
    if key not in st.session_state:
        st.session_state[key] = memory.get(key, default if default in names else names[0])
    name = st.selectbox("method", names, key=key,
                        help=_fields(SessionConfig)["method"].metadata["help"])
    memory[key] = name
    cls = registry[name]
    st.caption(f"{cls.summary} ({cls.kind})")
    if cls.presets:
        st.radio("preset", [NO_PRESET, *cls.presets], key=f"{prefix}.preset", horizontal=True,
                 on_change=_apply_preset, args=(prefix,),
                 help="Fill the form with the paper's settings or a setting that shows the "
                      "method's behaviour in a short run.")
    if f"{prefix}.preset_error" in st.session_state:
        st.error(st.session_state[f"{prefix}.preset_error"])
    return cls


def per_layer_methods() -> list[str]:
    """Methods whose parameters take per-layer rates (a `layer_rates` field)."""
    return sorted(n for n, cls in load_all().items() if "layer_rates" in _fields(cls.Params))


def take_prefill(prefix: str) -> None:
    """Per-layer rates suggested on the Inspect page: write them, the global rate and a method
    that takes per-layer rates into the form (before its widgets are drawn), once."""
    fill = st.session_state.pop(PREFILL, None)
    memory = st.session_state.setdefault(_MEMORY, {})
    if fill:
        method = memory.get(_method_key(prefix))
        methods = per_layer_methods()
        if method not in methods:
            method = "slr" if "slr" in methods else methods[0]
        for key, value in {_method_key(prefix): method, f"{prefix}.rate": float(fill["rate"]),
                           f"{prefix}.{method}.layer_rates": fill["layer_rates"]}.items():
            st.session_state[key] = memory[key] = value
        st.session_state[f"{prefix}.prefilled"] = (method, fill["layer_rates"])
    shown = st.session_state.get(f"{prefix}.prefilled")
    if shown and memory.get(f"{prefix}.{shown[0]}.layer_rates") == shown[1]:
        st.info(f"Per-layer rates from Inspect are filled in under *{shown[0]} parameters* "
                f"(layer_rates); the rate field is their size-weighted mean. Methods that take "
                f"per-layer rates: {', '.join(per_layer_methods())}.", icon=":material/tune:")


def session_form(prefix: str, *, main: Iterable[str] = MAIN_FIELDS,
                 hide: Iterable[str] = (), method: bool = True,
                 defaults: dict[str, Any] | None = None) -> tuple[SessionConfig | None, list[str]]:
    """A SessionConfig form: method (+ presets and parameters), the main fields, and the rest
    under "Training and data". Returns (config or None, error messages shown inline)."""
    main, hide = list(main), set(hide) | SKIP
    take_prefill(prefix)
    cls = method_picker(prefix, (defaults or {}).get("method", "gmp")) if method else None
    values, errors = dataclass_widgets(SessionConfig, prefix, main, defaults)
    params: dict[str, Any] = {}
    if cls is not None and dataclasses.fields(cls.Params):
        with st.expander(f"{cls.name} parameters"):
            params, perr = dataclass_widgets(cls.Params, f"{prefix}.{cls.name}",
                                             [f.name for f in dataclasses.fields(cls.Params)])
            errors += perr
    rest = [f.name for f in dataclasses.fields(SessionConfig) if f.name not in hide | set(main)]
    with st.expander("Training and data"):
        more, merr = dataclass_widgets(SessionConfig, prefix, rest, defaults)
        errors += merr
    config = None
    if not errors:
        try:
            config = SessionConfig(**values, **more, params=params,
                                   **({"method": cls.name} if cls is not None else {}))
            check(config)
        except ConfigError as e:
            errors.append(str(e))
            config = None
    for message in errors:
        st.error(message, icon=":material/error:")
    return config, errors


def schedule_preview(config: SessionConfig | None) -> None:
    """The method's schedule for this config, drawn before anything runs."""
    if config is None:
        return
    cls = get_method(config.method)
    try:
        preview = cls.preview(config, make_params(cls, config.params))
    except ConfigError as e:
        st.error(str(e))
        return
    st.plotly_chart(schedule_figure(preview, f"{cls.name} schedule at rate {config.rate:g}"),
                    key="schedule_preview")
