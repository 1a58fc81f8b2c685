"""Audit evidence from the general exact engine (claim C01: each bound of section 5 bounds |Error|).

`c01_evidence()` evaluates 200 seeded adversarial pairs (`trm_bounds.adversarial`, every kind,
the paper's small-delta regime and the tightness example included) with
`trm_bounds.exact.exact_quantities` and returns, per published bound key, the worst measured
|Error| / bound beyond float64 rounding (`trm_bounds.audit.evidence.excess_ratio`).
A numeric measurement over a stated set of instances: evidence, not a proof.
"""

from __future__ import annotations

from functools import lru_cache

from ...adversarial import ADVERSARIAL_KINDS, adversarial_pairs
from ...bounds import PUBLISHED_BOUNDS
from ...exact import exact_quantities
from . import ROUNDING_ABS, ROUNDING_REL, excess_ratio

__all__ = ["c01_evidence"]

_N_INSTANCES = 200
_SEED = 20260225
_T_MAX = 6


@lru_cache(maxsize=1)
def _measure() -> dict:
    worst = dict.fromkeys(PUBLISHED_BOUNDS, 0.0)
    for _, lr, lt, R, pp in adversarial_pairs(_N_INSTANCES, _SEED, ADVERSARIAL_KINDS, _T_MAX):
        out = exact_quantities(lr, lt, R, pp)
        for key in PUBLISHED_BOUNDS:
            worst[key] = max(worst[key], excess_ratio(abs(out["error"]), out["bounds"][key]))
    return worst


def c01_evidence() -> dict:
    """{bound_key: {"worst_ratio", "instances", "description"}}: worst |Error| / bound measured
    exactly over 200 seeded adversarial pairs (P 1..3, V 2..3, T 1..6). About a second."""
    worst = _measure()
    desc = (
        f"{_N_INSTANCES} exact pairs (seed {_SEED}): {', '.join(ADVERSARIAL_KINDS)}; P 1..3, V 2..3, "
        f"T 1..{_T_MAX}; eps/delta over contexts reachable under either policy (trm_bounds.exact); "
        f"|Error| beyond {ROUNDING_REL:g} B + {ROUNDING_ABS:g}"
    )
    return {
        k: {"worst_ratio": float(v), "instances": _N_INSTANCES, "description": desc} for k, v in worst.items()
    }
