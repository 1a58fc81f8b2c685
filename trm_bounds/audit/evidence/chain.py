"""Audit evidence from the chain DP engine (claims C01 and C11 of `trm_bounds.audit.claims`).

Reads the study's results `error_vs_horizon.json` from the audit's measurement folder
(`trm_bounds.audit.outputs`; written by `trm_bounds.studies.error_vs_horizon`, run by
`trm-bounds figures`) when present; otherwise computes a small version of the same measurements
(a few seconds). A file there that cannot be read raises (the claim is then "unchecked").
Every number is a measurement on exact DP values, not a proof.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...bounds import PUBLISHED_BOUNDS
from ...chain import chain_quantities_batch, last_k_transition, random_automaton_transition, random_chain_pair
from ...studies.error_vs_horizon import CHAIN_MECHANISM
from ...studies.error_vs_horizon import RESULTS_JSON as RESULTS
from ..outputs import describe, find_output, output_dirs

__all__ = ["c01_evidence", "c11_evidence", "RESULTS", "C11_FAMILIES"]


def _search_dirs() -> tuple[Path, ...]:
    """Where the study's JSON is looked for (`trm_bounds.audit.outputs`); tests replace this."""
    return output_dirs()


C11_FAMILIES = ("classical_kl", "pm_kl", "mix_kl", "coupling")


def _study() -> dict:
    """The study's summary JSON, or a small recomputation with the same keys used below."""
    path = find_output(RESULTS, _search_dirs())
    if path is None:
        return _recomputed()
    return _read_study(str(path), path.stat().st_mtime_ns, describe(path))


@lru_cache(maxsize=4)
def _read_study(path: str, mtime_ns: int, shown: str) -> dict:
    """The study's JSON at `path` (cached per file version); raises when it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
        data["source"] = f"{shown} ({data['random_pairs']['instances']} random pairs)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{shown} cannot be read: {type(exc).__name__}: {exc}") from exc
    return data


@lru_cache(maxsize=1)
def _recomputed() -> dict:
    """A small recomputation of the study, with the keys the evidence below uses."""
    rng = np.random.default_rng(2026)
    grid = [2**i for i in range(6, 11)]
    tr = last_k_transition(4, 2)
    sweep = {}
    # sparse: 0.2 of the 16 states flips 3 of them (0.05 would flip none: no mismatch at all)
    for kind, level in (("dense", 0.02), ("sparse", 0.2), ("stale", 0.02)):
        err, bnd = [], {b: [] for b in PUBLISHED_BOUNDS}
        for T in grid:
            d = chain_quantities_batch([random_chain_pair(tr, CHAIN_MECHANISM[kind], level, T, seed=100)])[0]
            err.append(abs(d["error_second_order"]))
            for b in PUBLISHED_BOUNDS:
                bnd[b].append(d["bounds"][b])
        sweep[f"last2/{kind}"] = {
            "error_slope": _fit(grid, err),
            "error_slope_se": float("nan"),
            "fit_range": [grid[0], grid[-1]],
            "bound_slopes": {b: _fit(grid, v) for b, v in bnd.items()},
        }
    worst, n = {b: 0.0 for b in PUBLISHED_BOUNDS}, 0
    kinds = ("dense", "sparse", "stale")
    for T in (8, 64):
        pairs = [
            random_chain_pair(
                random_automaton_transition(8, 3, rng), CHAIN_MECHANISM[kinds[i % 3]], 0.1, T, i
            )
            for i in range(12)
        ]
        for d in chain_quantities_batch(pairs):
            n += 1
            for b in PUBLISHED_BOUNDS:
                if d["bounds"][b] > 0:
                    worst[b] = max(worst[b], abs(d["error_second_order"]) / d["bounds"][b])
    return {
        "sweep": sweep,
        "random_pairs": {"instances": n, "worst_ratio": worst},
        "source": (
            f"small recomputation ({n} random pairs; trm_bounds.studies.error_vs_horizon runs the full study)"
        ),
    }


def _fit(T: list[int], y: list[float]) -> float:
    """Least-squares slope of log y on log T; NaN when some y is 0 (no slope on a log scale)."""
    y = np.asarray(y, dtype=np.float64)
    if not (y > 0).all():
        return float("nan")
    return float(np.polyfit(np.log(T), np.log(y), 1)[0])


def c01_evidence() -> dict:
    """{bound: {"worst_ratio", "instances", "description"}}: worst measured |Error| / bound."""
    s = _study()
    rp = s["random_pairs"]
    return {
        b: {
            "worst_ratio": float(rp["worst_ratio"][b]),
            "instances": int(rp["instances"]),
            "description": f"exact chain DP on random automata, three mismatch mechanisms; {s['source']}",
        }
        for b in PUBLISHED_BOUNDS
        if b in rp["worst_ratio"]
    }


def c11_evidence() -> dict:
    """{bound family: {"slope", "description"}}: the bound's measured log-log slope on exact
    chain instances, next to the slopes of the TRUE |Error| on the same instances."""
    s = _study()
    true = "; ".join(
        f"{name}: {r['error_slope']:.2f} +- {r['error_slope_se']:.2f} over T in {r['fit_range']}"
        for name, r in s["sweep"].items()
    )
    out = {}
    for fam in C11_FAMILIES:
        slopes = {name: r["bound_slopes"][fam] for name, r in s["sweep"].items()}
        out[fam] = {
            "slope": round(float(np.nanmedian(list(slopes.values()))), 3),
            "description": (
                "median over instances of the bound's own slope (per instance: "
                + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items())
                + f"); the TRUE |Error| slopes on the same instances: {true} ({s['source']})"
            ),
        }
    return out
