"""Forms generated from dataclass fields: SessionConfig's and each method's Params.

A widget per field from its type and metadata (help text, min/max/step, choices); values live in
session state under "<prefix>.<field>" (method parameters under "<prefix>.<method>.<field>") and
are remembered across page switches. Bad input becomes an inline st.error, never a traceback.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import Any

import streamlit as st

from ..config import ConfigError, SessionConfig, coerce, nm_rate, parse_layer_rates, parse_nm
from ..data import DATASETS, dataset_modality, folder_problem, input_shape, missing_files
from ..methods import apply_preset, get_method, load_all, make_params
from ..methods.base import takes_pattern
from ..methods.roundto import round_to_problem
from ..models import MODELS, model_modality
from ..modelspec import layer_names
from ..plots import schedule_figure
from ..session import check, check_modality
from ..text import text_problem
from ..transformers import TRANSFORMERS
from . import model_box
from .text import plain

MAIN_FIELDS = ("model", "dataset", "rate", "epochs", "seed")
SKIP = {"method", "params"}          # drawn by the form itself
NO_PRESET = "(defaults)"
MEMORY = "_form_memory"             # survives page switches (widget state does not)
# Grouped: image models and datasets first, the text ones (language models) after them; the
# selectbox labels say which is which, and a mismatch is said inline (problems).
_OPTIONS = {"model": tuple(sorted(MODELS, key=lambda m: model_modality(m) == "text")),
            "dataset": tuple(sorted(DATASETS, key=lambda d: dataset_modality(d) == "text"))}
_GROUP = {"model": model_modality, "dataset": dataset_modality}
TYPED = ("dataset", "model")          # boxes that also take a typed value
TRAINING = "Training and data"       # the expander of the less common session fields
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


def field_widget(f: dataclasses.Field, key: str, default: Any, fixed: str | None = None) -> Any:
    """Draw one widget for a dataclass field (`fixed`: disabled, this saying why); returns the
    widget's value."""
    memory = st.session_state.setdefault(MEMORY, {})
    if key not in st.session_state:
        st.session_state[key] = memory.get(key, _shown(default))
    meta, label = f.metadata, label_of(f.name)
    kw = dict(key=key, help=fixed or no_flags(meta.get("help") or "") or None,
              disabled=fixed is not None)
    lo, hi = meta.get("min"), meta.get("max")
    # Number boxes take any number and the form says inline what is out of range (check_range):
    # with min/max the browser silently clamps what was typed, and a value loaded from a run
    # or a preset outside them would raise instead of drawing the form.
    if isinstance(default, bool):
        value = st.checkbox(label, **kw)
    elif "choices" in meta or f.name in _OPTIONS:
        options = list(meta.get("choices") or _OPTIONS[f.name])
        # Datasets also take folder:PATH, models any spec (torchvision:NAME, PATH.py:FACTORY),
        # typed into the box; one typed before (or loaded from a run) is listed, so the box
        # shows it as its value.
        typed = st.session_state.get(key)
        if f.name in TYPED and isinstance(typed, str) and typed not in options:
            options.append(typed)
        group = _GROUP.get(f.name)
        value = st.selectbox(label, options, accept_new_options=f.name in TYPED,
                             format_func=(lambda o: f"{o}  ({group(o)})") if group else str,
                             **kw)
    elif isinstance(default, int):
        value = st.number_input(label, step=1, **kw)
    elif isinstance(default, float) and None not in (lo, hi) and "step" in meta:
        value = st.slider(label, float(lo), float(hi), step=float(meta["step"]), **kw)
    elif isinstance(default, float):
        value = st.number_input(label, step=float(meta.get("step") or _step(default)),
                                format="%g", **kw)
    else:
        value = st.text_input(label, **kw)
    memory[key] = value
    return value


_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z-]*)")


def no_flags(text: str) -> str:
    """Help or a message shared with the CLI, naming the form's controls instead of its flags
    (--rate -> **rate**); a flag with no control of that name stays."""
    fields = _fields(SessionConfig)

    def control(m: re.Match) -> str:
        name = m.group(1).replace("-", "_")
        return f"**{label_of(name)}**" if name in fields else m.group(0)

    return _FLAG.sub(control, text)


def label_of(name: str) -> str:
    """A field's widget label (messages name the control by it)."""
    return name.replace("_", " ")


def check_range(f: dataclasses.Field, value: Any, where: str = "") -> str | None:
    """Inline message when a number is outside its field's declared [min, max], or a value its
    field's own check rejects."""
    if "check" in f.metadata:
        try:
            f.metadata["check"](value)
        except ConfigError as e:
            return f"**{label_of(f.name)}**{where}: {plain(e)}"
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return f"**{label_of(f.name)}**{where} must be a finite number; got {value}."
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = (f"between {_num(lo)} and {_num(hi)}" if None not in (lo, hi) else
                f"at least {_num(lo)}" if lo is not None else f"at most {_num(hi)}")
        return f"**{label_of(f.name)}**{where} must be {span}; got {_num(value)}."
    return None


def _num(v: float) -> str:
    """A bound as a person writes it: 2,147,483,647, not 2.14748e+09."""
    if isinstance(v, int) or (float(v).is_integer() and abs(v) >= 1e4):
        return f"{int(v):,}"
    return f"{v:g}"


def _step(default: float) -> float:
    """A spin-button step about a tenth of the default's magnitude (0.01 for lr 0.1)."""
    if default == 0:
        return 0.01
    return 10.0 ** (math.floor(math.log10(abs(default))) - 1)


def dataclass_widgets(cls: type, prefix: str, names: Iterable[str],
                      defaults: dict[str, Any] | None = None, where: str = "",
                      fixed: dict[str, str] | None = None) -> tuple[dict, list[str]]:
    """Widgets for `names` of dataclass `cls` (initial values from `defaults`, else the field
    defaults; those in `fixed` disabled, its value saying why); returns parsed values and the
    errors of values that do not parse or are out of range (`where` says which part of the
    form, e.g. " (gmp parameters)")."""
    fields, values, errors = _fields(cls), {}, []
    for name in names:
        f = fields[name]
        default = (defaults or {}).get(name, _default(f))
        raw = field_widget(f, f"{prefix}.{name}", default, (fixed or {}).get(name))
        try:
            values[name] = _parse(raw, _default(f), label_of(name))
        except ConfigError as e:
            errors.append(f"**{label_of(name)}**{where}: {plain(e)}")
            continue
        problem = check_range(f, values[name], where)
        if problem:
            errors.append(problem)
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
    memory = st.session_state.setdefault(MEMORY, {})
    for name, value in get_method(method).presets[preset].items():
        key = f"{prefix}.{name}" if name in _fields(SessionConfig) else f"{prefix}.{method}.{name}"
        value = getattr(config, name) if name in _fields(SessionConfig) else config.params[name]
        st.session_state[key] = memory[key] = _shown(value)


def _method_changed(prefix: str) -> None:
    # A preset names one method's settings: another method starts from its own defaults.
    st.session_state[f"{prefix}.preset"] = NO_PRESET
    st.session_state.pop(f"{prefix}.preset_error", None)


def load_config(prefix: str, config: SessionConfig) -> None:
    """Fill the form with a run's config (Edit and re-run): its method and every parameter of
    it, every session field but the name, and the preset it ran with (preset_of). Call it from a
    widget callback (or before the form is drawn)."""
    cls = get_method(config.method)
    try:
        params = make_params(cls, dict(config.params))
    except ConfigError:        # an old run's parameters this build no longer takes
        params = cls.Params()
    values: dict[str, Any] = {_method_key(prefix): cls.name,
                              f"{prefix}.preset": preset_of(config, params)}
    for name, f in _fields(SessionConfig).items():
        if name not in SKIP | {"name"}:
            values[f"{prefix}.{name}"] = _widget_value(f, getattr(config, name))
    for name, f in _fields(cls.Params).items():
        values[f"{prefix}.{cls.name}.{name}"] = _widget_value(f, getattr(params, name))
    memory = st.session_state.setdefault(MEMORY, {})
    for key, value in values.items():
        st.session_state[key] = memory[key] = value
    st.session_state.pop(f"{prefix}.preset_error", None)


def preset_of(config: SessionConfig, params: Any) -> str:
    """The preset `config` ran with: the first of its method's presets whose every value it
    holds (session fields and parameters, `params` its parsed Params), else NO_PRESET."""
    for name, preset in get_method(config.method).presets.items():
        try:
            wanted = apply_preset(SessionConfig(method=config.method), name)
            wanted_params = make_params(get_method(config.method), wanted.params)
        except ConfigError:
            continue
        if all((getattr(config, k) == getattr(wanted, k)) if k in _fields(SessionConfig)
               else getattr(params, k, None) == getattr(wanted_params, k) for k in preset):
            return name
    return NO_PRESET


def _widget_value(f: dataclasses.Field, value: Any) -> Any:
    """`value` as the field's widget holds it: float fields as floats (a JSON config may hold
    1 for 1.0, and a float number box rejects an int)."""
    if isinstance(_default(f), float) and not isinstance(value, bool):
        return float(value)
    return _shown(value)


def method_picker(prefix: str, default: str = "gmp") -> type:
    """Method selectbox with its summary and presets; returns the method class."""
    registry = load_all()
    names = sorted(registry)
    key = _method_key(prefix)
    memory = st.session_state.setdefault(MEMORY, {})
    if key not in st.session_state:
        st.session_state[key] = memory.get(key, default if default in names else names[0])
    name = st.selectbox("method", names, key=key, on_change=_method_changed, args=(prefix,),
                        help="The pruning method: its summary and kind are under the box, "
                             "its parameters in the expander below; the Learn pages explain "
                             "each family.")
    memory[key] = name
    cls = registry[name]
    st.caption(f"{cls.summary} ({cls.kind})")
    if cls.presets:
        # Remembered like the fields it fills: a page switch (to see the run end on Runs)
        # dropped the widget's state and showed "(defaults)" beside the preset's values.
        preset_key, options = f"{prefix}.preset", [NO_PRESET, *cls.presets]
        if st.session_state.get(preset_key) not in options:
            remembered = memory.get(preset_key)
            st.session_state[preset_key] = remembered if remembered in options else NO_PRESET
        memory[preset_key] = st.radio(
            "preset", options, key=preset_key, horizontal=True, on_change=_apply_preset,
            args=(prefix,), help="Fill the form with the paper's settings or a setting that "
                                 "shows the method's behaviour in a short run.")
    if f"{prefix}.preset_error" in st.session_state:
        st.error(no_flags(plain(st.session_state[f"{prefix}.preset_error"])))
    return cls


def per_layer_methods() -> list[str]:
    """Methods whose parameters take per-layer rates (a `layer_rates` field)."""
    return sorted(n for n, cls in load_all().items() if "layer_rates" in _fields(cls.Params))


PREFILL_FIELDS = ("model", "dataset", "image_size", "data_root")    # the scanned run's own
FILTER_TO_UNSTRUCTURED = (
    "This scan removed whole filters, but the methods that take per-layer rates (slr, admm) "
    "prune single weights: the rates carry each layer's sensitivity to losing filters, a "
    "cautious guide for weight pruning (a layer usually takes a higher weight rate). Scan with "
    "the unstructured criterion for rates measured the way these methods prune.")


def take_prefill(prefix: str) -> None:
    """Per-layer rates suggested on the Inspect page: write them, the global rate and a method
    that takes per-layer rates into the form (before its widgets are drawn), once."""
    fill = st.session_state.pop(PREFILL, None)
    memory = st.session_state.setdefault(MEMORY, {})
    if fill:
        method = memory.get(_method_key(prefix))
        methods = per_layer_methods()
        if method not in methods:
            method = "slr" if "slr" in methods else methods[0]
        values = {_method_key(prefix): method, f"{prefix}.rate": float(fill["rate"]),
                  f"{prefix}.{method}.layer_rates": fill["layer_rates"]}
        # The rates name the scanned model's layers: its model and data come with them.
        values.update({f"{prefix}.{k}": fill[k] for k in PREFILL_FIELDS if k in fill})
        for key, value in values.items():
            st.session_state[key] = memory[key] = value
        st.session_state[f"{prefix}.prefilled"] = (method, fill["layer_rates"],
                                                   fill.get("kind"))
    shown = st.session_state.get(f"{prefix}.prefilled")
    if shown and memory.get(f"{prefix}.{shown[0]}.layer_rates") == shown[1]:
        st.info(f"Per-layer rates from Inspect are filled in under *{shown[0]} parameters* "
                f"(layer_rates), with the scanned run's model and dataset; the rate field is "
                f"their size-weighted mean. Methods that take per-layer rates: "
                f"{', '.join(per_layer_methods())}.", icon=":material/tune:")
        if len(shown) > 2 and shown[2] == "filter":
            st.warning(FILTER_TO_UNSTRUCTURED, icon=":material/info:")


def session_form(prefix: str, *, main: Iterable[str] = MAIN_FIELDS,
                 hide: Iterable[str] = (), method: bool = True,
                 defaults: dict[str, Any] | None = None) -> tuple[SessionConfig | None, list[str]]:
    """A SessionConfig form: method (+ presets and parameters), the main fields, and the rest
    under "Training and data". Returns (config or None, error messages shown inline)."""
    main, hide = list(main), set(hide) | SKIP
    take_prefill(prefix)
    cls = method_picker(prefix, (defaults or {}).get("method", "gmp")) if method else None
    section = f"{cls.name} parameters" if cls is not None else ""
    values, errors = dataclass_widgets(SessionConfig, prefix, main, defaults,
                                       fixed=_pattern_fixes(prefix, cls, section))
    params: dict[str, Any] = {}
    if cls is not None and dataclasses.fields(cls.Params):
        with st.expander(section):
            params, perr = dataclass_widgets(cls.Params, f"{prefix}.{cls.name}",
                                             [f.name for f in dataclasses.fields(cls.Params)],
                                             where=f" (under *{section}*)")
            errors += perr
    rest = [f.name for f in dataclasses.fields(SessionConfig) if f.name not in hide | set(main)]
    with st.expander(TRAINING):
        more, merr = dataclass_widgets(SessionConfig, prefix, rest, defaults,
                                       where=f" (under *{TRAINING}*)")
        errors += merr
    config = None
    if not errors:
        try:
            config = SessionConfig(**values, **more, params=params,
                                   **({"method": cls.name} if cls is not None else {}))
            check(config)
        except ConfigError as e:
            errors.append(no_flags(model_box.named(str(e))))
            config = None
    if config is not None:
        errors += problems(config) + model_box.problems(config)
        if not errors:
            model_box.show(config)
        config = None if errors else config
    # Markdown that names the form's controls in bold; user text in it is escaped (plain).
    for message in errors:
        st.error(message, icon=":material/error:")
    return config, errors


def _pattern_fixes(prefix: str, cls: type | None, section: str) -> dict[str, str]:
    """An N:M pattern typed under the method's parameters fixes the rate at 1 - N/M: the rate
    box is set to it and disabled, saying why ({} without a valid pattern)."""
    if cls is None or not takes_pattern(cls):
        return {}
    try:
        pattern = parse_nm(st.session_state.get(f"{prefix}.{cls.name}.nm", ""))
    except ConfigError:
        return {}      # said inline under the parameters
    if pattern is None:
        return {}
    key, rate = f"{prefix}.rate", nm_rate(pattern)
    st.session_state[key] = st.session_state.setdefault(MEMORY, {})[key] = rate
    n, m = pattern
    return {"rate": f"Fixed at 1 - {n}/{m} = {rate:.4g} by nm={n}:{m} (under *{section}*): the "
                    f"pattern keeps {n} of every {m} weights in each pruned layer. Clear nm to "
                    f"set the rate."}


def problems(config: SessionConfig) -> list[str]:
    """What would make a valid-looking config fail after Run, found cheaply (a stat per data
    file, a model built on the meta device), in words that name the form's controls."""
    out = []
    name = config.dataset
    where = missing_files(name, config.data_root)
    if where is not None and not config.download:
        out.append(f"**dataset** {plain(name)}: its files are not in {plain(where)}. Tick "
                   f"**download** under *{TRAINING}* to fetch it (needs network), or set **data "
                   f"root** there to the folder that holds it.")
    problem = folder_problem(name)
    if problem:
        # The message loading the folder would raise: it names its own fix.
        out.append(f"**dataset** {plain(name)}: {plain(problem)}")
    problem = text_problem(name)
    if problem:
        out.append(f"**dataset** {plain(name)}: {plain(problem)}. Type text:PATH into the "
                   f"dataset box, PATH a UTF-8 .txt file or a folder of them.")
    try:
        check_modality(config.model, name)
    except ConfigError as e:
        out.append(f"**model** / **dataset**: {plain(e)}")
    if (model_modality(config.model) == "text" or config.model in TRANSFORMERS) and (
            config.method in load_all() and load_all()[config.method].kind == "filter"
            and not load_all()[config.method].structures):
        out.append(f"**method** {config.method} prunes conv filters; {config.model} is a "
                   f"transformer, whose heads and neurons it does not prune yet: pick "
                   f"l2_filter or an unstructured method.")
    problem = round_to_problem(config)
    if problem:
        out.append(f"**round to** (under *{config.method} parameters*): {plain(problem)}")
    rates = config.params.get("layer_rates")
    if rates:
        try:
            valid = layer_names(config.model, input_shape(name, config.image_size))
        except Exception:      # a model that cannot be built at this size says so after Run
            valid = None
        unknown = [n for n in parse_layer_rates(rates) if valid is not None and n not in valid]
        if unknown:
            out.append(f"**layer rates** (under *{config.method} parameters*) names "
                       f"{plain(', '.join(unknown))}, which {config.model} does not have; its "
                       f"layers are: {plain(', '.join(valid))}.")
    return out


_LAST_VALID = "_form_last_valid"
_CONTROL = re.compile(r"\*\*([^*]+)\*\*")


def schedule_preview(config: SessionConfig | None, errors: Iterable[str] = ()) -> None:
    """The method's schedule for this config, drawn before anything runs. While the form has
    errors (`errors`, drawn in red above Run, often below the fold) it says so here, at the
    top, naming the controls, and keeps the schedule of the last valid form in view."""
    errors = list(errors)
    if errors:
        named = list(dict.fromkeys(m.group(1) for e in errors for m in [_CONTROL.search(e)]
                                   if m))
        st.warning(f"**Run is off** until the form is fixed: {len(errors)} problem"
                   f"{'s' if len(errors) > 1 else ''} (in red above Run)"
                   + (f" with {', '.join(f'**{n}**' for n in named)}." if named else "."),
                   icon=":material/error:")
    if config is not None:
        st.session_state[_LAST_VALID] = config
    else:
        config = st.session_state.get(_LAST_VALID)
        if config is None:
            return
    shown = "the form" if not errors else "the last valid form"
    cls = get_method(config.method)
    try:
        preview = cls.preview(config, make_params(cls, config.params))
    except ConfigError as e:
        st.error(plain(e))
        return
    # Named as the form's, so it is not read as the schedule of the run shown beside it.
    st.plotly_chart(schedule_figure(preview, f"Schedule of {shown}: {cls.name} at rate "
                                             f"{config.rate:g}, {config.epochs} epochs"),
                    key="schedule_preview")
