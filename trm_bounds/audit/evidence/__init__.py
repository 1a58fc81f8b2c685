"""Audit evidence, one module per source of measurements; the claims import what they use.

- `exact`: worst |Error| / bound over seeded adversarial pairs, general exact engine (C01);
- `chain`: the error-vs-horizon study's chain measurements, or a small recomputation (C01, C11);
- `trainer`: certificate, violation and acceptance counts of exact training runs (C13, C18, C24);
- `refined`: the halved-constant search and its high-precision re-check (S9).

This module holds what they share: the float64 allowance when a measured |Error| is
compared with a bound B, |Error| <= B (1 + ROUNDING_REL) + ROUNDING_ABS. The engine's Error
carries a relative rounding of a few ulps of sum_t sum_c |d_t^theta - d_t^roll| |g_t| <= the
bound; ROUNDING_ABS covers products of probabilities that fall into float64's subnormal range.
"""

from __future__ import annotations

__all__ = ["ROUNDING_REL", "ROUNDING_ABS", "excess_ratio"]

ROUNDING_REL = 1e-12
ROUNDING_ABS = 1e-300


def excess_ratio(abs_error: float, bound: float) -> float:
    """max(|Error| - allowance, 0) / bound with allowance = ROUNDING_REL bound + ROUNDING_ABS.

    A ratio above 1 is a violation beyond float64 rounding; a zero bound gives 0 (no excess
    error) or inf.
    """
    excess = max(abs_error - ROUNDING_REL * bound - ROUNDING_ABS, 0.0)
    return excess / bound if bound > 0 else (0.0 if excess == 0 else float("inf"))
