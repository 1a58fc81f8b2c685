"""Does a bound hold on one exact instance? A verdict that tells rounding from a violation.

A float64 engine computes Error = J(theta) - J(roll) - L' with an absolute rounding error of
order u = 2^-53 times the size of the terms it adds; when |Error| or the bound is that small,
|Error| / bound can read 3 when the true ratio is 0.38 (`tests/data/rounding_unified.npz`). So a
verdict never compares two bare floats. `bound_verdict` works in three steps and says which one
decided (the "method" field):

1. Each available float64 estimate of Error gets an a-priori rounding tolerance
       tol = c n u S,
   S the sum of the magnitudes of the terms it adds, n the length of the longest chain of
   floating-point operations behind one term, c = 4 a safety factor (standard summation error
   analysis, |fl(sum x_i) - sum x_i| <= (n-1) u sum |x_i| / (1 - (n-1) u), Higham 2002, (4.4)):
   - "direct": error = J_theta - J_roll - L', S = J_roll + J_theta + sum_t Dbar_t
     (|L'| <= sum_t E_roll|g_t| <= sum_t Dbar_t);
   - "ratio identity" (tree engine, pi_theta << pi_roll): -E_roll[R sum_t (rho_t - 1)(1 -
     prod_{j>t} rho_j)], no O(1) cancellation; S = 4 sum_t Dbar_t (each term is at most
     |rho_t - 1| |1 - prod|, whose expectation is at most 4 Dbar_t);
   - "second-order recursion" (chain engine): sum_t <mu_t^roll, h_t>, S as for "direct".
   The estimate with the smallest tolerance is used: the verdict is "holds" when
   (|error| + tol) <= bound (1 - 8 T u), "violated" when (|error| - tol) > bound (1 + 8 T u).
   This is an error analysis of the engine's arithmetic written by hand, not a machine proof.
2. Otherwise, when the instance is a small tree (P V^T T <= MP_LIMIT) and the bound has an
   arbitrary-precision twin, `trm_bounds.exact_mp` recomputes Error and the bound at 60+
   digits from the stored log-probabilities (rows renormalised at that precision, the
   distributions they stand for) and decides ("mpmath").
3. Else the verdict is undecided: "holds" is None.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bound_verdict", "error_estimates", "MP_LIMIT", "U"]

U = 2.0**-53  # unit roundoff of float64
MP_LIMIT = 20_000  # P V^T T at most this: the mpmath recheck takes seconds, not minutes
_SAFETY = 4.0


def error_estimates(result: dict, n_ops: int) -> list[tuple[str, float, float]]:
    """[(method, error, tolerance)] for each float64 estimate of Error in an engine result.

    Args:
      result: the dict of `trm_bounds.exact_quantities` / `chain_quantities` (the `trm-bounds
        exact` JSON): J_roll, J_theta, error, dbar, and error_ratio_identity /
        error_second_order where the engine gives them.
      n_ops: longest chain of floating-point operations behind one term (T + log2(leaves) + V
        for a tree, (T + 1)(S + V) for a chain).
    """
    if n_ops < 1:
        raise ValueError(f"n_ops must be >= 1, got {n_ops}")
    gamma = _SAFETY * n_ops * U / max(1e-300, 1.0 - n_ops * U)
    sum_dbar = float(np.sum(result["dbar"]))
    size = abs(float(result["J_roll"])) + abs(float(result["J_theta"])) + sum_dbar
    out = [("float64 direct J_theta - J_roll - L' with rounding bound", float(result["error"]), gamma * size)]
    if result.get("error_second_order") is not None:
        out.append(
            (
                "float64 second-order recursion sum_t <mu_t, h_t> with rounding bound",
                float(result["error_second_order"]),
                gamma * size,
            )
        )
    elif result.get("error_ratio_identity") is not None:
        out.append(
            (
                "float64 ratio identity with rounding bound",
                float(result["error_ratio_identity"]),
                gamma * 4.0 * sum_dbar,
            )
        )
    return out


def bound_verdict(result: dict, bound: str, *, T: int, n_ops: int, pair=None) -> dict:
    """Whether |Error| <= bound on one exact instance, with the method that decided (module doc).

    Args:
      result: engine result dict (`exact_quantities`, `chain_quantities`, `trm-bounds exact`).
      bound: a key of result["bounds"].
      T: horizon (bounds are sums of T rounded terms: relative rounding 8 T u allowed).
      n_ops: see `error_estimates`.
      pair: optional (logp_roll, logp_theta, reward, prompt_probs) of a tree pair, for the
        mpmath recheck of step 2.

    Returns:
      {"holds": True | False | None, "method": str, "ratio": |error| / bound (best estimate),
       "ratio_low", "ratio_high": the ratio's rounding interval, "error", "error_tolerance",
       "bound_value"}.
    """
    if bound not in result["bounds"]:
        raise ValueError(f"bound {bound!r} is not in the result; it has {sorted(result['bounds'])}")
    B = float(result["bounds"][bound])
    method, err, tol = min(error_estimates(result, n_ops), key=lambda m: m[2])
    rel = 8.0 * T * U
    lo = _ratio(max(0.0, abs(err) - tol), B * (1 + rel))
    hi = _ratio(abs(err) + tol, B * (1 - rel))
    out = {
        "method": method,
        "ratio": _ratio(abs(err), B),
        "ratio_low": lo,
        "ratio_high": hi,
        "error": err,
        "error_tolerance": tol,
        "bound_value": B,
    }
    if hi <= 1.0:
        return {"holds": True, **out}
    if lo > 1.0:
        return {"holds": False, **out}
    mp_out = _mp_recheck(pair, bound)
    if mp_out is not None:
        return {**out, **mp_out}
    return {"holds": None, **out, "method": method + "; undecided within rounding, no mpmath twin"}


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.inf


def _mp_recheck(pair, bound: str) -> dict | None:
    """Step 2: exact_mp at 60+ digits, or None when the pair is too large or has no twin."""
    if pair is None:
        return None
    lr, lt, R, pp = pair
    P, _, V = np.asarray(lr[0]).shape
    T = len(lr)
    base = bound[: -len("_refined")] if bound.endswith("_refined") else bound
    from .exact_mp import exact_mp, published_mp  # noqa: PLC0415 - mpmath only when needed

    known = set(published_mp(1, 0, 0, 0, 0, [0]))
    if P * V**T * T > MP_LIMIT or base not in known:
        return None
    import mpmath as mp  # noqa: PLC0415

    res = exact_mp(lr, lt, R, pp, max_dps=240)  # an exact tie (ratio 1) stays undecided, quickly
    with mp.workdps(res["dps"]):
        value = res["refined"][base] if base != bound else res["bounds"][base]
        err = res["error"]
        r = abs(err) / value if value > 0 else (mp.mpf(0) if err == 0 else mp.inf)
        holds = bool(abs(err) + res["error_tol"] <= value)
        if not holds and abs(err) - res["error_tol"] <= value:
            holds = None
        tol = float(res["error_tol"] / value) if value > 0 else math.inf
    how = "undecided" if holds is None else "rows renormalised"
    return {
        "holds": holds,
        "method": f"mpmath at {res['dps']} digits ({how})",
        "ratio": float(r),
        "ratio_low": max(0.0, float(r) - tol),
        "ratio_high": float(r) + tol,
        "error": float(err),
        "error_tolerance": float(res["error_tol"]),
        "bound_value": float(value),
    }
