"""The four papers' comparisons, one click away on Compare (issue 27): each is the paper method
and its baselines from the same dense starts and seeds, every arm on its own `interactive`
preset where it has one, and which preset a run ran, read back from its config. No streamlit.

The regimes are the claims `benchmarks/bench_claims.py` checks, at the interactive presets'
budgets on the embedded `cifar10_small`: the session fields (epochs, optimizer, schedule) come
from the paper method's preset and are shared by every arm, so the runs pair by seed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError, SessionConfig
from .methods import get_method

PRESET = "interactive"
DATASET = "cifar10_small"
SEEDS = (0, 1, 2)           # three seeds: the paired verdict's interval needs at least two


@dataclass(frozen=True)
class PaperComparison:
    key: str
    title: str                      # the paper's claim, as the verdict is read against it
    method: str
    baselines: tuple[str, ...]
    rate: float
    params: dict[str, Any] = field(default_factory=dict)   # on every arm, over its preset
    note: str = ""

    @property
    def arms(self) -> tuple[str, ...]:
        return (self.method, *self.baselines)

    def configs(self, seeds: tuple[int, ...] = SEEDS, **base: Any) -> list[SessionConfig]:
        """Every arm x seed: the paper method's preset's session fields for all (same dense
        start, data order and budget), each arm's own preset parameters, then `params`."""
        session = _session_fields()
        lead = get_method(self.method).presets.get(PRESET, {})
        shared = {k: v for k, v in lead.items() if k in session and k != "rate"}
        config = SessionConfig(**{"dataset": DATASET, **base, **shared, "start": "dense",
                                  "rate": self.rate})
        out = []
        for seed in seeds:
            for arm in self.arms:
                own = get_method(arm).presets.get(PRESET, {})
                clash = {k for k, v in own.items() if k in session and k != "rate"
                         and shared.get(k, v) != v}
                if clash:
                    raise ConfigError(f"{arm}'s {PRESET} preset sets {', '.join(sorted(clash))} "
                                      f"unlike {self.method}'s: the arms would not pair.")
                params = {k: v for k, v in own.items() if k not in session}
                out.append(config.replace(method=arm, seed=seed,
                                          params={**params, **self.params}))
        return out


PAPER_COMPARISONS = {c.key: c for c in [
    PaperComparison("pgmpf", "PGMPF ≥ SFP and ASFP at an equal filter rate", "pgmpf",
                    ("sfp", "asfp"), 0.4),
    PaperComparison("fggp", "FGGP ≥ GMP and GraNet at 90 % sparsity", "fggp",
                    ("gmp", "granet"), 0.9),
    PaperComparison("pgp", "PGP ≥ PSFP at equal FLOPs (the same filter rate, both compacted)",
                    "pgp", ("psfp",), 0.5),
    PaperComparison("slr", "SLR > ADMM hard-pruned without retraining", "slr", ("admm",), 0.9,
                    params={"retrain_epochs": 0},
                    note="retrain_epochs=0 on both arms: the final accuracy is the "
                         "hard-pruned one, the paper's retrain-free headline."),
]}


def _session_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(SessionConfig)}


def matching(methods: set[str]) -> list[PaperComparison]:
    """The paper comparisons whose every arm is among `methods`."""
    return [c for c in PAPER_COMPARISONS.values() if set(c.arms) <= methods]


def preset_of(config: dict) -> str:
    """Which preset a run (its config dict) ran, in words: the preset whose every session field
    and parameter the run has ("interactive preset"), with the parameters it changed on top of
    it ("interactive preset, retrain_epochs=0"); else "defaults", with the parameters it set
    ("defaults, rho=1.0")."""
    method = get_method(config["method"])
    params = dict(config.get("params") or {})
    session = _session_fields()
    found = [("defaults", {})]
    for name, values in method.presets.items():
        if all(_same(config.get(k), v) for k, v in values.items()
               if k in session and k != "rate"):
            found.append((f"{name} preset", {k: v for k, v in values.items()
                                              if k not in session}))
    described = []
    for name, own in found:       # the fewest changes wins; a preset over the defaults on a tie
        ran = {k: params.get(k, _default(method, k)) for k in {*params, *own}}
        changed = {k: v for k, v in ran.items() if not _same(v, own.get(k, _default(method, k)))}
        described.append((len(changed), name == "defaults", name, changed))
    _, _, name, changed = min(described)
    return ", ".join([name, *(f"{k}={v}" for k, v in sorted(changed.items()))])


def _same(a: Any, b: Any) -> bool:
    """Equal, a stored list and a preset's tuple alike."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _default(method: Any, name: str) -> Any:
    return getattr(method.Params(), name, None)
