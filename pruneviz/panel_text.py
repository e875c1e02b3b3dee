"""The metrics panel in words: plain-language notes on where its numbers diverge, and the panel
as a table (the dashboard) and as text lines (the CLI). Reads the dict report.build_panel makes."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .metrics import NOISY

ATOL = 1e-5      # largest |masked - compact| output difference the panel accepts, relative


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def notes(p: dict[str, Any]) -> list[str]:
    """Plain-language lines for where the panel's numbers diverge."""
    out = []
    flops_gain = p["flops_dense"] / max(p["flops_compact"], 1)
    if p["sparsity"] >= 0.05 and flops_gain < 1.05:
        out.append(
            f"{_pct(p['sparsity'])} of the prunable weights are zero, but scattered: no whole "
            f"filter can be removed, so the compact model is the dense one. Dense kernels "
            f"multiply a zero as fast as any other number, so latency and the saved file stay "
            f"as they were; only compression ({_pct(p['bytes_dense_gzip'] / p['bytes_dense'])} "
            f"of the file gzipped) or sparse kernels (at best "
            f"{_pct(p['flops_effective'] / p['flops_dense'])} of the FLOPs touch a nonzero "
            f"weight) can use these zeros.")
    if p["filters_coupled"]:
        out.append(
            f"{p['filters_coupled']} filters are zero but coupled, not removable: a residual "
            f"addition sums each of them with a channel that is alive in another conv of its "
            f"group, so removing them would change the network; they still cost FLOPs and "
            f"time. Pruning the same channels in every conv of a residual stage makes them "
            f"removable.")
    constant = p["filters_zero"] - p["filters_dead"]
    if constant > 0:
        out.append(
            f"{constant} filters have zero weights but a nonzero BatchNorm gamma or beta: each "
            f"outputs a constant rather than zero, so it cannot be removed exactly (methods that "
            f"zero gamma and beta with the filter avoid this).")
    if p["kind"] == "filter" and abs(p["filter_sparsity"] - p["target"]) > 0.05:
        out.append(
            f"{_pct(p['filter_sparsity'])} of the prunable filters are zero against a nominal "
            f"{_pct(p['target'])}.")
    out += _latency_notes(p, flops_gain)
    if any(row["spread"] > NOISY for row in p["latency"]):
        out.append("Timings were noisy (interquartile range over 25% of the median): the machine "
                   "was busy. Compare the ratios, measured interleaved, not absolute times.")
    few = min((row["reps"] for row in p["latency"]), default=5)
    if few < 5:
        out.append(f"Only {few} repetition(s) fit the panel's time cap for some cells: those "
                   f"latencies are rough; `python -m pruneviz report RUN_ID --recompute` on a "
                   f"quiet machine measures again.")
    if p.get("semi_structured"):
        out += semi_structured_notes(p)
    dense = p.get("unpruned_layers") or []
    if dense:      # a traced model: what the method could not prune, and why (never guessed)
        more = f"; and {len(dense) - 5} more (the run summary's unpruned_layers)" \
            if len(dense) > 5 else ""
        out.append(f"{len(dense)} layer(s) or parameter(s) stayed dense: "
                   f"{'; '.join(dense[:5])}{more}.")
    return out


SAME_SPEED = 0.10     # a latency ratio within 10 % of 1 is never called a speed change


def speed_verdict(row: dict[str, Any], same_network: bool = False) -> str:
    """A latency cell's headline: "1.42x faster" / "1.30x slower" only when the paired ratio
    lies outside the measured noise (the larger side's interquartile range over its median,
    and at least SAME_SPEED); otherwise "same speed (within noise)", and for a compact model
    that is the dense network itself, "same network"."""
    gain = row["speedup"]
    if same_network:
        return "same network"
    noise = max(float(row.get("spread") or 0.0), SAME_SPEED)
    if gain <= 0 or 1 / (1 + noise) <= gain <= 1 + noise:
        return "same speed (within noise)"
    return f"{gain:.2f}x faster" if gain >= 1 else f"{1 / gain:.2f}x slower"


def semi_structured_notes(p: dict[str, Any]) -> list[str]:
    """What an N:M run's zeros buy on the 2:4 kernels, or why they buy nothing here."""
    ss, nm = p["semi_structured"], p["nm"]
    out = []
    if p.get("nm_dense_layers"):
        out.append(f"nm={nm}: {p['nm_dense_layers']}.")
    if ss.get("backend") is None:
        linears = ss.get("two_four_linears", [])
        where = (f" ({len(linears)} Linear layer(s) are 2:4 and would run on them on a GPU "
                 f"that has them)" if linears else "")
        out.append(f"nm={nm}: every pruned layer keeps its pattern, but {ss['reason']}{where}")
    elif "error" in ss:
        out.append(f"nm={nm}: the 2:4 kernels ({ss['backend']}) could not run this model: "
                   f"{ss['error']}")
    elif not ss["layers"]:
        reasons = "; ".join(f"{k}: {v}" for k, v in ss["skipped"].items())
        out.append(f"nm={nm}: this GPU has 2:4 kernels ({ss['backend']}), but no layer of this "
                   f"model fits them ({reasons}), so nothing was timed.")
    else:
        gains = ", ".join(f"{r['speedup']:.2f}x at batch {r['batch']}" for r in ss["rows"])
        convs = sum("convolution" in v for v in ss["skipped"].values())
        out.append(f"nm={nm}: with {len(ss['layers'])} Linear layer(s) on the 2:4 kernels "
                   f"({ss['backend']}, {ss['dtype']}), the speed-up over the same model dense in "
                   f"{ss['dtype']} was {gains} (below 1x: slower)"
                   + (f"; its {convs} convolutions stay dense (PyTorch's 2:4 tensors serve "
                      f"matrix multiplies only)" if convs else "") + ".")
    return out


def latency_frame(panel: dict[str, Any]) -> pd.DataFrame:
    """The panel's latency measurements: one row per (device, batch)."""
    return pd.DataFrame(panel.get("latency", []),
                        columns=["device", "batch", "threads", "dense_ms", "compact_ms",
                                 "speedup", "reps", "spread"])


def panel_frame(panel: dict[str, Any]) -> pd.DataFrame:
    """The panel as rows of (metric, dense, compact, note) for a table."""
    if "error" in panel:
        return pd.DataFrame({"metric": ["error"], "dense": [panel["error"]], "compact": [None],
                             "note": [None]})
    p = panel
    rows = [
        ("target", p["target"], None, f"fraction of the {p['target_of']}"),
        ("sparsity", p["sparsity"], None, "zeros over the prunable weights"),
        ("global sparsity", p["global_sparsity"], None, "zeros over all parameters"),
        ("filter sparsity", p["filter_sparsity"], None, "zero filters over the prunable convs"),
        ("parameters", p["params_dense"], p["params_compact"],
         f"{p['params_nonzero']} nonzero in the dense network"),
        ("FLOPs", p["flops_dense"], p["flops_compact"],
         f"{p['flops_effective']} touch a nonzero weight"),
        ("filters", p["filters"], p["filters"] - p["filters_removed"],
         f"{p['filters_zero']} zero, {p['filters_coupled']} zero but coupled (not removable)"),
        ("file bytes", p["bytes_dense"], p["bytes_compact"],
         f"{p['bytes_dense_gzip']} dense gzipped"),
    ]
    for r in p["latency"]:
        threads = f", {r['threads']} threads" if r["threads"] else ""
        rows.append((f"latency ms {r['device']} batch {r['batch']}", r["dense_ms"],
                     r["compact_ms"], f"{r['speedup']:.2f}x, median of {r['reps']}{threads}"))
    for r in p.get("semi_structured", {}).get("rows", []):
        rows.append((f"latency ms cuda 2:4 batch {r['batch']}", r["dense_ms"], r["sparse_ms"],
                     f"{r['speedup']:.2f}x, dense vs 2:4 kernels, median of {r['reps']}"))
    return pd.DataFrame(rows, columns=["metric", "dense", "compact", "note"])


def _si(n: float, unit: str) -> str:
    for prefix, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f} {prefix}{unit}"
    return f"{n:.0f} {unit}"


def format_panel(panel: dict[str, Any]) -> str:
    """The panel as text lines for the CLI (its warnings first)."""
    warned = format_warnings(panel.get("warnings", []))
    if "error" in panel:
        return "\n".join([*warned, f"metrics panel: not available ({panel['error']})"])
    p = panel
    ratio = lambda a, b: f"{a / b:.2f}x" if b else "n/a"  # noqa: E731
    lines = [
        *warned,
        f"metrics panel ({p['method']} {p['target']:g}, {p['model']} on {p['dataset']}):",
        f"  target          {p['target']:.2f} of the {p['target_of']}",
        f"  achieved        sparsity {p['sparsity']:.4f} of the prunable weights, "
        f"{p['global_sparsity']:.4f} of all parameters; {p['params_nonzero']:,} nonzero",
        f"  filters         {p['filters_zero']} of {p['filters']} zero, {p['filters_removed']} "
        f"removed, {p['filters_coupled']} zero but coupled (not removable)",
        f"  parameters      {p['params_dense']:,} dense -> {p['params_compact']:,} compact "
        f"({ratio(p['params_dense'], p['params_compact'])} smaller)",
        f"  FLOPs           {_si(p['flops_dense'], 'FLOPs')} dense -> "
        f"{_si(p['flops_compact'], 'FLOPs')} compact "
        f"({ratio(p['flops_dense'], p['flops_compact'])} fewer); "
        f"{_si(p['flops_effective'], 'FLOPs')} touch nonzero weights",
        f"  file size       {_si(p['bytes_dense'], 'B')} dense ({_si(p['bytes_dense_gzip'], 'B')} "
        f"gzipped) -> {_si(p['bytes_compact'], 'B')} compact",
    ]
    for r in p["latency"]:
        threads = f", {r['threads']} threads" if r["threads"] else ""
        lines.append(f"  latency {r['device']} b{r['batch']:<3} {r['dense_ms']:.3f} ms dense, "
                     f"{r['compact_ms']:.3f} ms compact ({r['speedup']:.2f}x; median of "
                     f"{r['reps']}{threads})")
    for r in p.get("semi_structured", {}).get("rows", []):
        lines.append(f"  latency 2:4 b{r['batch']:<3} {r['dense_ms']:.3f} ms dense fp16, "
                     f"{r['sparse_ms']:.3f} ms on 2:4 kernels ({r['speedup']:.2f}x; median of "
                     f"{r['reps']})")
    tol = ATOL * p.get("output_scale", 1.0)
    lines.append(f"  compact check   max |masked - compact| = {p['max_abs_diff']:.2g} "
                 f"(<= {tol:.2g}, eval mode)")
    lines += [f"  note: {n}" for n in p["notes"]]
    return "\n".join(lines)


def format_warnings(warnings: list[str]) -> list[str]:
    """A run's guard warnings as CLI lines (none: no lines)."""
    return [f"WARNING: {w}" for w in warnings]


def _latency_notes(p: dict[str, Any], flops_gain: float) -> list[str]:
    """Per latency cell: why the measured speedup is not the FLOPs gain (launch-bound, the
    layers that do not shrink, the CPU's channel blocks, caches) or is noise."""
    out = []
    per_image = {(r["device"], r["batch"]): r["compact_ms"] / r["batch"] for r in p["latency"]}
    for row in p["latency"]:
        where = f"at batch {row['batch']} on {row['device'].upper()}"
        gain = row["speedup"]
        # launch-bound: a bigger batch of the same device does each image far faster
        bigger = [v for (dev, b), v in per_image.items()
                  if dev == row["device"] and b > row["batch"]]
        amortized = (row["compact_ms"] / row["batch"]) / min(bigger) if bigger else 1.0
        if flops_gain >= 1.05:
            ratio = gain / flops_gain
            if ratio < 0.8:
                if amortized > 2:
                    out.append(
                        f"{where}, {flops_gain:.2f}x fewer FLOPs gave {gain:.2f}x the speed: "
                        f"the forward pass is launch-bound (per image it takes {amortized:.0f}x "
                        f"longer than in a bigger batch: fixed costs per layer, such as "
                        f"dispatch, kernel launch and memory allocation, dominate), so "
                        f"shrinking the arithmetic barely shows.")
                else:
                    line = (f"{where}, {flops_gain:.2f}x fewer FLOPs gave {gain:.2f}x the "
                            f"speed: BatchNorm, ReLU, additions and memory traffic shrink less "
                            f"than the conv arithmetic")
                    if row["device"] == "cpu" and p.get("convs_unaligned"):
                        block = p["vector_block"]
                        line += (f"; and this CPU's convolution kernels ({p['cpu_capability']}) "
                                 f"work in blocks of {block} channels, so the "
                                 f"{p['convs_unaligned']} of {p['convs']} compact convs whose "
                                 f"filter counts are not multiples of {block} run as if padded "
                                 f"to the next multiple (10 filters cost what 16 do)")
                    out.append(line + ".")
            elif ratio > 1.25:
                out.append(
                    f"{where}, the compact model is faster ({gain:.2f}x) than its FLOPs predict "
                    f"({flops_gain:.2f}x): a smaller working set fits the caches better.")
        elif abs(gain - 1) > 0.1:
            out.append(
                f"{where}, dense and compact are the same network; their {_pct(abs(gain - 1))} "
                f"difference in latency is measurement noise.")
    return out
