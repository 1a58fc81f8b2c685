"""Every published error bound of the TRM paper (docs/theory.md section 5), vectorized.

Each bound upper-bounds |Error| = |J(theta) - J(roll) - L'(theta)|. Names are the
docs/formats.md contract keys. Inputs broadcast (numpy rules) over arrays of T, delta, eps,
dkl_seq, dtv_seq; capped sums use prefix sums, so T up to 1e6 costs no loop over t.

Symbols: T horizon (int >= 1); eps = D_TV^{tok,max} in [0, 1]; delta = D_KL^{tok,max} >= 0
(may be inf); dkl_seq = D_KL^seq >= 0; dtv_seq = D_TV^seq in [0, 1]; dbar (..., T) with
dbar[..., k] = Dbar_{k+1} = E_{d_{k+1}^roll}[TV(c_{k+1})] in [0, 1]. Time is 1-based in the
formulas: k = t - 1 in arrays.

This module knows nothing of torch or the exact engine: the glue from exact quantities
to `BoundInputs` lives downstream.

One concept, kept in one module although it is long: the bound formulas, their inputs
(`BoundInputs`), the one registry every command iterates over (`BOUNDS`) and its metadata
(`BOUND_INFO`) - splitting them would separate each formula from its registry line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ._resources import check_memory
from ._validate import check_divergence, check_horizon, check_tv, scalar

__all__ = [
    "classical_tv",
    "classical_kl",
    "linear",
    "linear_dbar",
    "pm_kl",
    "pm_kl_nocap",
    "pm_tv",
    "mix_kl",
    "mix_tv",
    "coupling",
    "adaptive_kl",
    "adaptive_tv",
    "adaptive_star",
    "unified",
    "unified_v2",
    "pm_kl_closed_form",
    "pm_tv_closed_form",
    "mix_kl_closed_form",
    "mix_tv_closed_form",
    "coupling_closed_form",
    "coupling_cap_position",
    "uniform_dbar",
    "adaptive_crossover",
    "adaptive_worst_case_sum",
    "ln_trm_weights",
    "ln_trm_Z",
    "ln_trm_score",
    "ln_trm_bound",
    "BoundInputs",
    "BOUNDS",
    "UNIFIED_OF",
    "UNIFIED_V2_OF",
    "PUBLISHED_BOUNDS",
    "register_bound",
    "get_bound",
    "evaluate_bounds",
    "BoundInfo",
    "BOUND_INFO",
    "bound_info",
    "PUBLISHED_ASSUMPTION",
    "reward_range_factor",
]


# --------------------------------------------------------------------------- helpers
def _prefix_sqrt(n_max: int) -> np.ndarray:
    """roots[n] = sum_{k=0}^{n-1} sqrt(k), n = 0..n_max (float64, one cumsum)."""
    return np.concatenate(([0.0], np.cumsum(np.sqrt(np.arange(max(n_max, 1), dtype=np.float64)))))


_ZETA_MINUS_HALF = -0.20788622497735457  # zeta(-1/2) (mpmath), the constant of the expansion below
_SQRT_TABLE_N = 256
_SQRT_TABLE = np.array(  # correctly rounded prefix sums (math.fsum), not an accumulating cumsum
    [math.fsum(math.sqrt(k) for k in range(n)) for n in range(_SQRT_TABLE_N + 1)]
)


def _sum_sqrt(n: ArrayLike) -> np.ndarray:
    """S(n) = sum_{k=0}^{n-1} sqrt(k) for integers n >= 0, any shape, O(1) memory in n.

    n < 256: a prefix-sum table. n >= 256: the Euler-Maclaurin expansion
        S(n) = 2/3 n^1.5 - 1/2 n^0.5 + zeta(-1/2) + n^-0.5 / 24 - n^-2.5 / 1920 + O(n^-4.5),
    whose remainder (< n^-4.5 / 9216 < 2e-15, relative < 1e-18) is below float64 rounding; at n = 1e6 it
    agrees with math.fsum of the terms to the last bit, where a float64 cumsum is off by 3e-14.
    """
    n = np.asarray(n, dtype=np.int64)
    small = np.minimum(n, _SQRT_TABLE_N)
    x = np.maximum(n, 1).astype(np.float64)
    r = np.sqrt(x)
    asym = 2.0 / 3.0 * x * r - 0.5 * r + _ZETA_MINUS_HALF + 1.0 / (24.0 * r) - 1.0 / (1920.0 * x * x * r)
    return np.where(n < _SQRT_TABLE_N, _SQRT_TABLE[small], asym)


def _capped_sqrt_sum(T: np.ndarray, a: np.ndarray) -> np.ndarray:
    """S(T, a) = sum_{k=0}^{T-1} min(1, a sqrt(k)) for T >= 1, a in [0, inf], no loop over k.

    min(1, a sqrt(k)) = a sqrt(k) while k < k_cap = ceil(1/a^2) (at k = 1/a^2 both equal 1),
    so S = a * sum_{k < n_free} sqrt(k) + (T - n_free) with n_free = min(T, k_cap).
    """
    T, a = np.broadcast_arrays(np.asarray(T, dtype=np.int64), np.asarray(a, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a = 0 and a = inf stay exact
        k_cap = np.maximum(1.0, np.ceil(1.0 / (a * a)))  # first capped k; k = 0 never is
        n_free = np.minimum(T, np.minimum(k_cap, np.iinfo(np.int64).max // 2)).astype(np.int64)
        free = np.where(n_free > 1, a * _sum_sqrt(n_free), 0.0)
    return free + (T - n_free)


def _capped_linear_sum(T: np.ndarray, e: np.ndarray) -> np.ndarray:
    """C(T, e) = sum_{k=0}^{T-1} min(1, k e) for T >= 1, e in [0, inf], closed form.

    k e < 1 for k < k_cap = ceil(1/e); so C = e n_free (n_free - 1) / 2 + (T - n_free).
    """
    T, e = np.broadcast_arrays(np.asarray(T, dtype=np.int64), np.asarray(e, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        k_cap = np.maximum(1.0, np.ceil(1.0 / e))
        n_free = np.minimum(T.astype(np.float64), k_cap)
        free = np.where(n_free > 1, e * n_free * (n_free - 1) / 2.0, 0.0)
    return free + (T - n_free)


def uniform_dbar(T: int, value: float) -> np.ndarray:
    """Dbar_t = value for t = 1..T as a read-only (T,) view of one float: no length-T memory.

    The bounds recognise it (zero stride) and use closed forms instead of length-T sums.
    """
    T = int(scalar("T", check_horizon(T)))
    return np.broadcast_to(np.float64(scalar("dbar", check_tv("dbar", value))), (T,))


def _as_dbar(dbar: ArrayLike) -> np.ndarray:
    if isinstance(dbar, np.ndarray) and dbar.ndim >= 1 and dbar.shape[-1] >= 1 and dbar.strides[-1] == 0:
        first = check_tv("dbar", dbar[..., :1])  # a uniform (broadcast) dbar: check one value per row
        return np.broadcast_to(first, dbar.shape)
    d = check_tv("dbar", dbar)
    if d.ndim == 0 or d.shape[-1] < 1:
        raise ValueError(f"dbar must have a time axis of length T >= 1, got shape {d.shape}")
    return d


def _uniform(d: np.ndarray) -> np.ndarray | None:
    """(...,) the common value of each row of a uniform (zero-stride) dbar, else None."""
    return d[..., 0] if d.strides[-1] == 0 else None


def _capped_star_sum(T, eps, delta) -> np.ndarray:
    """sum_{m=0}^{T-1} min(1, m eps, sqrt(m delta / 2)), closed form (no loop over m).

    m eps <= sqrt(m delta/2) exactly while m <= m* = delta / (2 eps^2) (`adaptive_crossover`),
    so the first n1 = min(T, floor(m*) + 1) terms follow the TV route and the rest the KL route:
        C(n1, eps) + S(T, sqrt(delta/2)) - S(n1, sqrt(delta/2))   (`_capped_linear_sum`, `_capped_sqrt_sum`).
    """
    T = np.asarray(T, dtype=np.int64)
    cross = adaptive_crossover(eps, delta)
    n1 = np.minimum(T.astype(np.float64), np.floor(np.minimum(cross, 2.0**62)) + 1.0).astype(np.int64)
    a = np.sqrt(delta / 2.0)
    return _capped_linear_sum(n1, eps) + (_capped_sqrt_sum(T, a) - _capped_sqrt_sum(n1, a))


def _adaptive_sum(d: np.ndarray, eps, delta, which: str) -> np.ndarray:
    """sum_t Dbar_t w_t (the Adaptive bounds without their factor 4), w as in `_future_weights`.

    A uniform dbar (zero stride, e.g. `uniform_dbar`) uses the closed forms: Dbar times the
    capped sums, O(1) memory in T. Otherwise the (..., T) weights are built, after a memory check.
    """
    T = d.shape[-1]
    u = _uniform(d)
    if u is not None:
        eps = np.asarray(eps, dtype=np.float64)
        delta = np.asarray(delta, dtype=np.float64)
        if which == "tv":
            s = _capped_linear_sum(T, eps)
        elif which == "kl":
            s = _capped_sqrt_sum(T, np.sqrt(delta / 2.0))
        else:
            s = _capped_star_sum(T, eps, delta)
        with np.errstate(invalid="ignore"):  # Dbar = 0 with an infinite sum (never: sums <= T)
            return u * s
    rows = np.broadcast_shapes(d.shape[:-1], np.shape(eps), np.shape(delta))
    n = 6 * 8 * T * max(1, int(np.prod(rows)))
    check_memory("dbar", n, f"the adaptive bounds' per-t weights (T = {T})")
    return np.sum(d * _future_weights(T, eps, delta, which), axis=-1)


def _future_weights(T: int, eps, delta, which: str) -> np.ndarray:
    """w[..., k] for t = k + 1: the future-trajectory TV bound min(1, (T-t) eps, sqrt((T-t) delta/2)).

    which: "kl" -> min(1, sqrt((T-t) delta/2)); "tv" -> min(1, (T-t) eps); "star" -> both.
    Shape: broadcast(eps, delta)[..., None] x (T,).
    """
    check_memory("T", 4 * 8 * T * max(1, np.broadcast(eps, delta).size), f"per-t weights of length T = {T}")
    m = np.arange(T - 1, -1, -1, dtype=np.float64)  # T - t for t = 1..T
    eps = np.asarray(eps, dtype=np.float64)[..., None]
    delta = np.asarray(delta, dtype=np.float64)[..., None]
    with np.errstate(invalid="ignore"):  # 0 * inf = nan at T - t = 0; the weight there is 0
        tv_w = np.where(m == 0, 0.0, np.minimum(1.0, m * eps)) if which != "kl" else None
        kl_w = np.where(m == 0, 0.0, np.minimum(1.0, np.sqrt(m * delta / 2.0))) if which != "tv" else None
    if which == "tv":
        return tv_w
    if which == "kl":
        return kl_w
    return np.minimum(tv_w, kl_w)


# --------------------------------------------------------------------------- classical
def classical_tv(T: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Classical trust-region bound, TV form (v1):  B = 2 T (T - 1) eps^2.  O(T^2), no cap.

    Args:
      T: horizon >= 1. eps: max token TV in [0, 1]. Broadcast together.
    """
    T = check_horizon(T)
    eps = check_tv("eps", eps)
    return _classical_tv(T, eps)


def _classical_tv(T, eps) -> np.ndarray:
    """`classical_tv` on checked inputs (what its checks return)."""
    return 2.0 * T * (T - 1.0) * eps**2


def classical_kl(T: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Classical trust-region bound, KL form (v1):  B = T (T - 1) delta.  O(T^2), no cap."""
    T = check_horizon(T)
    delta = check_divergence("delta", delta)
    return _classical_kl(T, delta)


def _classical_kl(T, delta) -> np.ndarray:
    """`classical_kl` on checked inputs (what its checks return)."""
    with np.errstate(invalid="ignore", over="ignore"):  # beyond float64: inf, still an upper bound
        out = T * (T - 1.0) * delta
    return np.where((T == 1) & np.isinf(delta), 0.0, out)


# --------------------------------------------------------------------------- linear
def linear(T: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Linear bound (v2, dropped in v3):  B = 4 T eps.  O(T)."""
    T = check_horizon(T)
    eps = check_tv("eps", eps)
    return _linear(T, eps)


def _linear(T, eps) -> np.ndarray:
    """`linear` on checked inputs (what its checks return)."""
    return 4.0 * T * eps


def linear_dbar(dbar: ArrayLike) -> np.ndarray:
    """Linear bound, data-dependent form (v2):  B = 4 sum_t Dbar_t  (<= 4 T eps).

    Args: dbar (..., T). Returns (...,).
    """
    d = _as_dbar(dbar)
    return _linear_dbar(d)


def _linear_dbar(d) -> np.ndarray:
    """`linear_dbar` on checked inputs (what its checks return)."""
    u = _uniform(d)
    return 4.0 * (d.sum(-1) if u is None else u * d.shape[-1])


# --------------------------------------------------------------------------- Pinsker-Marginal
def pm_kl(T: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Pinsker-Marginal bound, KL form (B_PM^KL, v1-v4).

        B_PM^KL = 4 min(1, sqrt(delta/2)) * sum_{t=1..T} min(1, sqrt((t-1) delta / 2))

    Args:
      T: horizon, integer >= 1; any shape that broadcasts with `delta`.
      delta: max token KL, D_KL^{tok,max} >= 0 (inf allowed: every cap binds).

    Returns:
      float64 array of the broadcast shape of (T, delta). O(T^1.5) while delta <= 2/T.
    """
    T = check_horizon(T)
    delta = check_divergence("delta", delta)
    return _pm_kl(T, delta)


def _pm_kl(T, delta) -> np.ndarray:
    """`pm_kl` on checked inputs (what its checks return)."""
    a = np.sqrt(delta / 2.0)
    return 4.0 * np.minimum(1.0, a) * _capped_sqrt_sum(T, a)


def pm_kl_nocap(T: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Pinsker-Marginal KL bound with its min(1, .) caps removed (v2 Table 1 "no cap" column).

        B = 4 sqrt(delta/2) * sum_{t=1..T} sqrt((t-1) delta / 2) = 2 delta sum_{k=0}^{T-1} sqrt(k)

    Still an upper bound on |Error| (each cap only tightens), but looser than `pm_kl`.
    """
    T = check_horizon(T)
    delta = check_divergence("delta", delta)
    return _pm_kl_nocap(T, delta)


def _pm_kl_nocap(T, delta) -> np.ndarray:
    """`pm_kl_nocap` on checked inputs (what its checks return)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 at T = 1; beyond float64: inf
        return np.where(T > 1, 2.0 * delta * _sum_sqrt(T), 0.0)


def pm_tv(T: ArrayLike, eps: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Pinsker-Marginal bound, TV form (B_PM^TV, v3).

    B_PM^TV = 4 min(1, eps) * sum_{t=1..T} min(1, sqrt((t-1) delta / 2))
    """
    T = check_horizon(T)
    eps = check_tv("eps", eps)
    delta = check_divergence("delta", delta)
    return _pm_tv(T, eps, delta)


def _pm_tv(T, eps, delta) -> np.ndarray:
    """`pm_tv` on checked inputs (what its checks return)."""
    return 4.0 * np.minimum(1.0, eps) * _capped_sqrt_sum(T, np.sqrt(delta / 2.0))


# --------------------------------------------------------------------------- Mixed
def mix_kl(T: ArrayLike, delta: ArrayLike, dkl_seq: ArrayLike) -> np.ndarray:
    """Mixed bound, KL form (B_Mix^KL, v1):  4 T min(1, sqrt(delta/2)) min(1, sqrt(D_KL^seq/2)).  O(T)."""
    T = check_horizon(T)
    delta = check_divergence("delta", delta)
    dkl_seq = check_divergence("dkl_seq", dkl_seq)
    return _mix_kl(T, delta, dkl_seq)


def _mix_kl(T, delta, dkl_seq) -> np.ndarray:
    """`mix_kl` on checked inputs (what its checks return)."""
    return 4.0 * T * np.minimum(1.0, np.sqrt(delta / 2.0)) * np.minimum(1.0, np.sqrt(dkl_seq / 2.0))


def mix_tv(T: ArrayLike, eps: ArrayLike, dtv_seq: ArrayLike) -> np.ndarray:
    """Mixed bound, TV form (B_Mix^TV, v3):  4 T min(1, eps) min(1, D_TV^seq).  O(T)."""
    T = check_horizon(T)
    eps = check_tv("eps", eps)
    dtv_seq = check_tv("dtv_seq", dtv_seq)
    return _mix_tv(T, eps, dtv_seq)


def _mix_tv(T, eps, dtv_seq) -> np.ndarray:
    """`mix_tv` on checked inputs (what its checks return)."""
    return 4.0 * T * np.minimum(1.0, eps) * np.minimum(1.0, dtv_seq)


# --------------------------------------------------------------------------- Coupling
def coupling(T: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Coupling bound (B_Coup, v3):  4 min(1, eps) * sum_{t=1..T} min(1, (t-1) eps).

    O(T^2) while T eps <= 1 (= 2 T (T-1) eps^2 there), O(T) once the cap binds.
    """
    T = check_horizon(T)
    eps = check_tv("eps", eps)
    return _coupling(T, eps)


def _coupling(T, eps) -> np.ndarray:
    """`coupling` on checked inputs (what its checks return)."""
    return 4.0 * np.minimum(1.0, eps) * _capped_linear_sum(T, eps)


# --------------------------------------------------------------------------- Adaptive
def adaptive_kl(dbar: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Adaptive bound, KL form (B_Adap^KL, v2):  4 sum_t Dbar_t min(1, sqrt((T-t) delta/2)).

    Args: dbar (T,) or (..., T); delta broadcast against dbar's leading shape. Returns (...,).
    """
    d = _as_dbar(dbar)
    delta = check_divergence("delta", delta)
    return _adaptive_kl(d, delta)


def _adaptive_kl(d, delta) -> np.ndarray:
    """`adaptive_kl` on checked inputs (what its checks return)."""
    return 4.0 * _adaptive_sum(d, 0.0, delta, "kl")


def adaptive_tv(dbar: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Adaptive bound, TV form (B_Adap^TV, v3):  4 sum_t Dbar_t min(1, (T-t) eps)."""
    d = _as_dbar(dbar)
    eps = check_tv("eps", eps)
    return _adaptive_tv(d, eps)


def _adaptive_tv(d, eps) -> np.ndarray:
    """`adaptive_tv` on checked inputs (what its checks return)."""
    return 4.0 * _adaptive_sum(d, eps, 0.0, "tv")


def adaptive_star(dbar: ArrayLike, eps: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Adaptive hybrid (B_Adap^*, v3):  4 sum_t Dbar_t min(1, (T-t) eps, sqrt((T-t) delta/2))."""
    d = _as_dbar(dbar)
    eps = check_tv("eps", eps)
    delta = check_divergence("delta", delta)
    return _adaptive_star(d, eps, delta)


def _adaptive_star(d, eps, delta) -> np.ndarray:
    """`adaptive_star` on checked inputs (what its checks return)."""
    return 4.0 * _adaptive_sum(d, eps, delta, "star")


# --------------------------------------------------------------------------- closed forms
def pm_kl_closed_form(T: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """The paper's small-divergence closed form 4/3 T^1.5 delta (stated for delta <= 2/T).

    An upper estimate of `pm_kl` in that regime (sum sqrt(k) <= integral), not its value.
    """
    T = check_horizon(T).astype(np.float64)
    return 4.0 / 3.0 * T**1.5 * check_divergence("delta", delta)


def pm_tv_closed_form(T: ArrayLike, eps: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """The paper's closed form 8/3 T^1.5 eps sqrt(delta/2) (stated for delta <= 2/T)."""
    T = check_horizon(T).astype(np.float64)
    eps = check_tv("eps", eps)
    return 8.0 / 3.0 * T**1.5 * eps * np.sqrt(check_divergence("delta", delta) / 2.0)


def mix_kl_closed_form(T: ArrayLike, delta: ArrayLike, dkl_seq: ArrayLike) -> np.ndarray:
    """2 T sqrt(delta D_KL^seq): equals `mix_kl` exactly iff delta <= 2 and D_KL^seq <= 2."""
    T = check_horizon(T)
    return 2.0 * T * np.sqrt(check_divergence("delta", delta) * check_divergence("dkl_seq", dkl_seq))


def mix_tv_closed_form(T: ArrayLike, eps: ArrayLike, dtv_seq: ArrayLike) -> np.ndarray:
    """4 T eps D_TV^seq: equals `mix_tv` (eps, D_TV^seq are <= 1, so the caps never bind)."""
    T = check_horizon(T)
    return 4.0 * T * check_tv("eps", eps) * check_tv("dtv_seq", dtv_seq)


def coupling_closed_form(T: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """2 T (T-1) eps^2 if T eps <= 1 (exact there), else the theorem's 4 T eps (an upper bound)."""
    T = check_horizon(T)
    eps = check_tv("eps", eps)
    return np.where(T * eps <= 1.0, 2.0 * T * (T - 1.0) * eps**2, 4.0 * T * eps)


def coupling_cap_position(eps: ArrayLike) -> np.ndarray:
    """First t with (t-1) eps >= 1, i.e. the first t whose term min(1, (t-1) eps) equals 1.

    Returns ceil(1/eps) + 1 (int64). When that exceeds 2**53 (the largest valid horizon:
    eps = 0, or eps < ~1.1e-16) it returns the sentinel 2**63 - 1 = np.iinfo(np.int64).max:
    no valid horizon reaches the cap. The paper writes floor(1/eps) + 1, which is the same t
    unless 1/eps is an integer (audit C04).
    """
    eps = check_tv("eps", eps)
    with np.errstate(divide="ignore", over="ignore"):  # 1/5e-324 = inf: past every horizon
        inv = np.where(eps > 0, 1.0 / np.where(eps > 0, eps, 1.0), np.inf)
    far = inv >= 2.0**53  # also eps = 0 (inv = inf); the float -> int64 cast would overflow there
    t = np.ceil(np.where(far, 0.0, inv)).astype(np.int64) + 1
    return np.where(far, np.iinfo(np.int64).max, t)


def adaptive_crossover(eps: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """T - t at which the TV and KL future weights cross: m eps = sqrt(m delta / 2) -> m = delta / (2 eps^2).

    Below it (small T - t) the TV route min(1, m eps) is smaller; above it the KL route.
    eps = 0 gives inf (the TV route, 0, is never larger), also when delta = 0 (both routes are 0).
    """
    eps = check_tv("eps", eps)
    delta = check_divergence("delta", delta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # eps**2 may underflow to 0:
        return np.where(eps > 0, np.where(delta > 0, delta / (2.0 * eps**2), 0.0), np.inf)  # not 0/0


def adaptive_worst_case_sum(T: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """v2's worst-case Adaptive estimate of sum_t min(1, sqrt((T-t) delta/2)) for 2/delta <= T:

        (T - 2/delta) + 4 / (3 delta)

    (terms with T - t >= 2/delta are capped at 1; the rest bounded by an integral). For
    delta < 2/T the formula is not the paper's case; this returns 2/3 sqrt(2 delta) T^1.5
    there (the uncapped integral, whose 4x-prefactored form is the 4/3 T^1.5 delta closed form).
    delta = 0 gives 0 (every term is 0); delta = inf gives T (every capped term is 1).
    """
    T = check_horizon(T).astype(np.float64)
    delta = check_divergence("delta", delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        capped = (T - 2.0 / delta) + 4.0 / (3.0 * delta)
        free = 2.0 / 3.0 * np.sqrt(delta / 2.0) * T**1.5
        use_capped = (delta > 0) & (T >= 2.0 / np.where(delta > 0, delta, 1.0))
    return np.where(use_capped, capped, np.where(delta > 0, free, 0.0))


# --------------------------------------------------------------------------- LN-TRM
def ln_trm_weights(T: int, eps: ArrayLike | None, delta: ArrayLike, version: str = "v3") -> np.ndarray:
    """LN-TRM position weights w_t, t = 1..T (docs/theory.md section 7).

        v3: w_t = min(1, (T-t) eps, sqrt((T-t) delta / 2))
        v2: w_t = min(1, sqrt((T-t) delta / 2))   (no eps term)

    Returns (..., T) with w[..., k] = w_{k+1}; w_T = 0.
    """
    T = int(check_horizon(T))
    delta = check_divergence("delta", delta)
    if version == "v2":
        return _future_weights(T, 0.0, delta, "kl")
    if version != "v3":
        raise ValueError(f"version must be 'v2' or 'v3', got {version!r}")
    if eps is None:
        raise ValueError("eps is required for the v3 LN-TRM weights")
    return _future_weights(T, check_tv("eps", eps), delta, "star")


def ln_trm_Z(T: int, eps: ArrayLike | None, delta: ArrayLike, version: str = "v3") -> np.ndarray:
    """Z(T) = sum_t w_t, the LN-TRM length normaliser."""
    return ln_trm_weights(T, eps, delta, version).sum(-1)


def ln_trm_score(rho: ArrayLike, eps: ArrayLike | None, delta: ArrayLike, version: str = "v3") -> np.ndarray:
    """W(y) = sum_t |rho_t - 1| w_t for ratios rho (..., T) of one length T. Returns (...,).

    rho_t = inf at a position of weight w_t = 0 (always t = T) adds 0; elsewhere W = inf.
    """
    r = check_divergence("rho", rho)
    if r.ndim == 0:
        raise ValueError("rho must be a (..., T) array of ratios, got a scalar")
    w = ln_trm_weights(r.shape[-1], eps, delta, version)
    with np.errstate(invalid="ignore"):
        return np.sum(np.where(w == 0, 0.0, np.abs(r - 1.0) * w), axis=-1)


def ln_trm_bound(expected_W: ArrayLike) -> np.ndarray:
    """The LN-TRM stated guarantee |Error| <= 2 E_roll[W(y)] (given delta holds globally)."""
    return 2.0 * check_divergence("expected_W", expected_W)


# --------------------------------------------------------------------------- inputs record
SOURCES = ("given", "pinsker", "worst_case", "exact", "observed", "upper_bound", "assumed", "estimate")


@dataclass(frozen=True)
class BoundInputs:
    """The ingredients of every bound, with where each came from.

    Fields: T (int >= 1), eps, delta, dkl_seq, dtv_seq (floats), dbar ((T,) array,
    dbar[k] = Dbar_{k+1}), sources (field name -> one of SOURCES, plus free text after
    ':'), e.g. {"eps": "pinsker: min(1, sqrt(delta/2))"}. Each number may be given as any
    array of size 1 (or a tensor); dbar may be a single number, meaning Dbar_t = that value
    for every t, held as a `uniform_dbar` view (no length-T memory, closed-form bounds).
    """

    T: int
    eps: float
    delta: float
    dkl_seq: float
    dtv_seq: float
    dbar: np.ndarray = field(repr=False)
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        T = int(scalar("T", check_horizon(self.T)))
        object.__setattr__(self, "T", T)
        object.__setattr__(self, "eps", float(scalar("eps", check_tv("eps", self.eps))))
        object.__setattr__(self, "delta", float(scalar("delta", check_divergence("delta", self.delta))))
        dkl_seq = scalar("dkl_seq", check_divergence("dkl_seq", self.dkl_seq))
        object.__setattr__(self, "dkl_seq", float(dkl_seq))
        object.__setattr__(self, "dtv_seq", float(scalar("dtv_seq", check_tv("dtv_seq", self.dtv_seq))))
        dbar = self.dbar
        if np.ndim(dbar) == 0 and not isinstance(dbar, (str, bytes)) and dbar is not None:
            dbar = uniform_dbar(T, check_tv("dbar", dbar))
        dbar = _as_dbar(dbar)
        if dbar.shape != (T,):
            raise ValueError(f"dbar must have shape ({T},) for T = {T}, got {dbar.shape}")
        if _uniform(dbar) is None:
            dbar = dbar.copy()
            dbar.setflags(write=False)
        object.__setattr__(self, "dbar", dbar)
        src = dict(self.sources)
        for name in ("eps", "delta", "dkl_seq", "dtv_seq", "dbar"):
            src.setdefault(name, "given")
            if src[name].split(":")[0] not in SOURCES:
                raise ValueError(f"sources[{name!r}] must start with one of {SOURCES}, got {src[name]!r}")
        object.__setattr__(self, "sources", MappingProxyType(src))

    @classmethod
    def from_partial(
        cls,
        T: int,
        delta: float,
        eps: float | None = None,
        dkl_seq: float | None = None,
        dtv_seq: float | None = None,
        dbar: ArrayLike | None = None,
        source: str | Mapping[str, str] = "given",
        *,
        derived_notes: Mapping[str, str] | None = None,
    ) -> BoundInputs:
        """Fill what is missing as docs/theory.md ("Inputs of `trm-bounds bounds`") says:

        eps = min(1, sqrt(delta/2)) (Pinsker); dkl_seq = T delta (chain rule, worst case);
        dtv_seq = min(1, sqrt(dkl_seq/2)) (Pinsker); Dbar_t = eps for every t (worst case).

        Args:
          source: provenance of the values passed in: one label for all, or a mapping
            field -> label (a field it omits is "given").
          derived_notes: field -> caveat appended to a derived value's provenance,
            "pinsker: min(1, sqrt(delta/2)); <note>" (e.g. what a certificate cannot control).
        """
        T = int(scalar("T", check_horizon(T)))
        delta = float(scalar("delta", check_divergence("delta", delta)))
        eps = None if eps is None else float(scalar("eps", check_tv("eps", eps)))  # validate before deriving
        dkl_seq = None if dkl_seq is None else float(scalar("dkl_seq", check_divergence("dkl_seq", dkl_seq)))
        dtv_seq = None if dtv_seq is None else float(scalar("dtv_seq", check_tv("dtv_seq", dtv_seq)))
        given = _given_labels(source)
        notes = dict(derived_notes or {})
        if set(notes) - set(_DERIVED_SOURCES):
            raise ValueError(
                f"derived_notes keys must be among {tuple(_DERIVED_SOURCES)}, got {sorted(notes)}"
            )

        def derived(name: str) -> str:
            return _DERIVED_SOURCES[name] + (f"; {notes[name]}" if name in notes else "")

        src: dict[str, str] = {"delta": given["delta"]}
        if eps is None:
            eps = float(min(1.0, np.sqrt(delta / 2.0)))
            src["eps"] = derived("eps")
        else:
            src["eps"] = given["eps"]
        if dkl_seq is None:
            dkl_seq = T * delta
            src["dkl_seq"] = derived("dkl_seq")
        else:
            src["dkl_seq"] = given["dkl_seq"]
        if dtv_seq is None:
            dtv_seq = float(min(1.0, np.sqrt(float(dkl_seq) / 2.0)))
            src["dtv_seq"] = derived("dtv_seq")
        else:
            src["dtv_seq"] = given["dtv_seq"]
        if dbar is None:
            dbar = uniform_dbar(T, eps)  # a view of one float: long horizons cost no memory
            src["dbar"] = derived("dbar")
        else:
            src["dbar"] = given["dbar"]
        return cls(T=T, eps=eps, delta=delta, dkl_seq=dkl_seq, dtv_seq=dtv_seq, dbar=dbar, sources=src)

    @property
    def dbar_uniform(self) -> float | None:
        """The common value of a uniform dbar (held as a `uniform_dbar` view), else None."""
        u = _uniform(self.dbar)
        return None if u is None else float(u)

    def to_json(self, full: bool = False) -> dict:
        """JSON-ready dict: the values and their sources.

        dbar is a list of T floats, except a uniform dbar (`dbar_uniform`), which is one float
        (Dbar_t for every t, as `sources["dbar"]` says) unless `full` asks for the list.
        """
        u = self.dbar_uniform
        if u is not None and not full:
            dbar = u
        else:
            check_memory("T", 64 * self.T, f"listing dbar (T = {self.T} floats)", "leave full=False")
            dbar = [float(x) for x in self.dbar]
        return {
            "T": self.T,
            "eps": self.eps,
            "delta": self.delta,
            "dkl_seq": self.dkl_seq,
            "dtv_seq": self.dtv_seq,
            "dbar": dbar,
            "sources": dict(self.sources),
        }


_INPUT_FIELDS = ("delta", "eps", "dkl_seq", "dtv_seq", "dbar")
_DERIVED_SOURCES: Mapping[str, str] = MappingProxyType(
    {
        "eps": "pinsker: min(1, sqrt(delta/2))",
        "dkl_seq": "worst_case: T*delta (chain rule)",
        "dtv_seq": "pinsker: min(1, sqrt(dkl_seq/2))",
        "dbar": "worst_case: Dbar_t = eps for every t",
    }
)  # provenance of each value BoundInputs.from_partial derives


def _given_labels(source: str | Mapping[str, str]) -> dict[str, str]:
    """field -> provenance label of a passed-in value (from_partial's `source` argument)."""
    if isinstance(source, str):
        return dict.fromkeys(_INPUT_FIELDS, source)
    unknown = set(source) - set(_INPUT_FIELDS)
    if unknown:
        raise ValueError(f"source keys must be among {_INPUT_FIELDS}, got {sorted(unknown)}")
    return {name: source.get(name, "given") for name in _INPUT_FIELDS}


# --------------------------------------------------------------------------- registry
UNIFIED_OF = ("pm_kl", "pm_tv", "mix_kl", "mix_tv", "coupling", "adaptive_star")  # v3 B*
UNIFIED_V2_OF = ("pm_kl", "mix_kl", "adaptive_kl")  # v2 B*


def unified(b: BoundInputs) -> float:
    """Unified bound B* (v3) = min(B_PM^KL, B_PM^TV, B_Mix^KL, B_Mix^TV, B_Coup, B_Adap^*)."""
    return float(min(float(_value(b, n)) for n in UNIFIED_OF))


def unified_v2(b: BoundInputs) -> float:
    """Unified bound of v2 = min(B_PM^KL, B_Mix^KL, B_Adap^KL)."""
    return float(min(float(_value(b, n)) for n in UNIFIED_V2_OF))


class _Checked(NamedTuple):
    """The fields of a `BoundInputs` as the bound functions' checks return them (read-only)."""

    T: np.ndarray
    eps: np.ndarray
    delta: np.ndarray
    dkl_seq: np.ndarray
    dtv_seq: np.ndarray
    dbar: np.ndarray


def _checked(b: BoundInputs) -> _Checked:
    """`b`'s fields through the checks every bound function runs, done once per `b` (it is frozen
    and was validated when made) and kept on it: the registry then skips the per-bound checks."""
    c = b.__dict__.get("_checked")
    if c is None:
        c = _Checked(
            check_horizon(b.T),
            check_tv("eps", b.eps),
            check_divergence("delta", b.delta),
            check_divergence("dkl_seq", b.dkl_seq),
            check_tv("dtv_seq", b.dtv_seq),
            _as_dbar(b.dbar),
        )
        for a in c:
            if a.flags.writeable:
                a.setflags(write=False)
        object.__setattr__(b, "_checked", c)
    return c


def _registered(public: Callable, formula: Callable, fields: tuple[str, ...]) -> Callable:
    """The registry entry of a bound: `formula` on the checked fields of a `BoundInputs` (the same
    arrays `public`'s checks would make, so the same value); any other record (e.g.
    `trm_bounds.exact_batch.BatchInputs`) goes through `public`, checks included."""

    def bound(b):
        if isinstance(b, BoundInputs):
            c = _checked(b)
            return formula(*[getattr(c, f) for f in fields])
        return public(*[getattr(b, f) for f in fields])

    return bound


def _value(b, name: str):
    """BOUNDS[name](b). For a `BoundInputs` and a published key (which can never be replaced) the
    value is computed once per `b` and kept on it (a 0-d result as a numpy scalar: immutable), so
    `unified`, `unified_v2` and the refined keys reuse it instead of recomputing."""
    if not isinstance(b, BoundInputs) or name not in PUBLISHED_BOUNDS:
        return get_bound(name)(b)
    values = b.__dict__.get("_values")
    if values is None:
        values = {}
        object.__setattr__(b, "_values", values)
    if name not in values:
        v = BOUNDS[name](b)
        values[name] = v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v
    return values[name]


_BOUNDS: dict[str, Callable[[BoundInputs], float]] = {
    "classical_tv": _registered(classical_tv, _classical_tv, ("T", "eps")),
    "classical_kl": _registered(classical_kl, _classical_kl, ("T", "delta")),
    "linear": _registered(linear, _linear, ("T", "eps")),
    "pm_kl": _registered(pm_kl, _pm_kl, ("T", "delta")),
    "pm_tv": _registered(pm_tv, _pm_tv, ("T", "eps", "delta")),
    "mix_kl": _registered(mix_kl, _mix_kl, ("T", "delta", "dkl_seq")),
    "mix_tv": _registered(mix_tv, _mix_tv, ("T", "eps", "dtv_seq")),
    "coupling": _registered(coupling, _coupling, ("T", "eps")),
    "adaptive_kl": _registered(adaptive_kl, _adaptive_kl, ("dbar", "delta")),
    "adaptive_tv": _registered(adaptive_tv, _adaptive_tv, ("dbar", "eps")),
    "adaptive_star": _registered(adaptive_star, _adaptive_star, ("dbar", "eps", "delta")),
    "unified": unified,
}
PUBLISHED_BOUNDS: tuple[str, ...] = tuple(_BOUNDS)  # the docs/formats.md contract keys, in order
_BOUNDS["linear_dbar"] = _registered(linear_dbar, _linear_dbar, ("dbar",))
_BOUNDS["pm_kl_nocap"] = _registered(pm_kl_nocap, _pm_kl_nocap, ("T", "delta"))
_BOUNDS["unified_v2"] = unified_v2
BOUNDS: Mapping[str, Callable[[BoundInputs], float]] = MappingProxyType(_BOUNDS)


# --------------------------------------------------------------------------- what each bound is
@dataclass(frozen=True)
class BoundInfo:
    """What a bound key is: the paper's equation name and version, its formula, inputs and assumption.

    Fields: name (registry key); equation (the paper's name, e.g. "B_PM^KL"); version (the arXiv
    version that states it, or "refined, this package"); formula (plain text, sums over t = 1..T);
    inputs (the `BoundInputs` fields it reads, or other quantities for keys that `BoundInputs`
    cannot evaluate); regime (growth in T and where the closed forms hold); assumption (what
    must be true of the rewards and policies for it to bound |Error|).
    """

    name: str
    equation: str
    version: str
    formula: str
    inputs: tuple[str, ...]
    regime: str
    assumption: str

    @property
    def refined(self) -> bool:
        """True for this package's halved-constant keys (they need a reward range <= 1)."""
        return self.version.startswith("refined")


PUBLISHED_ASSUMPTION = (
    "rewards R in [0, 1] as the paper states (its proofs use only |R| <= 1); eps and delta are "
    "maxima over every context reachable under pi_roll or pi_theta"
)


def _published(name, equation, version, formula, inputs, regime, extra=""):
    return BoundInfo(name, equation, version, formula, inputs, regime, PUBLISHED_ASSUMPTION + extra)


_BOUND_INFO: dict[str, BoundInfo] = {
    i.name: i
    for i in (
        _published("classical_tv", "Classical (TV)", "v1", "2 T (T-1) eps^2", ("T", "eps"), "O(T^2), no cap"),
        _published("classical_kl", "Classical (KL)", "v1", "T (T-1) delta", ("T", "delta"), "O(T^2), no cap"),
        _published("linear", "Linear", "v2 (dropped in v3)", "4 T eps", ("T", "eps"), "O(T)"),
        _published(
            "pm_kl",
            "B_PM^KL",
            "v1 (all versions)",
            "4 min(1, sqrt(delta/2)) sum_t min(1, sqrt((t-1) delta/2))",
            ("T", "delta"),
            "O(T^1.5) while delta <= 2/T (closed form 4/3 T^1.5 delta, an upper estimate), O(T) once capped",
        ),
        _published(
            "pm_tv",
            "B_PM^TV",
            "v3",
            "4 min(1, eps) sum_t min(1, sqrt((t-1) delta/2))",
            ("T", "eps", "delta"),
            "O(T^1.5) while delta <= 2/T, O(T) once capped",
        ),
        _published(
            "mix_kl",
            "B_Mix^KL",
            "v1",
            "4 T min(1, sqrt(delta/2)) min(1, sqrt(D_KL^seq/2))",
            ("T", "delta", "dkl_seq"),
            "O(T) at fixed D_KL^seq; O(T^1.5) when D_KL^seq = T delta",
        ),
        _published(
            "mix_tv",
            "B_Mix^TV",
            "v3",
            "4 T min(1, eps) min(1, D_TV^seq)",
            ("T", "eps", "dtv_seq"),
            "O(T) at fixed D_TV^seq",
        ),
        _published(
            "coupling",
            "B_Coup",
            "v3",
            "4 min(1, eps) sum_t min(1, (t-1) eps)",
            ("T", "eps"),
            "O(T^2) while T eps <= 1 (= 2 T (T-1) eps^2), O(T) once capped",
        ),
        _published(
            "adaptive_kl",
            "B_Adap^KL",
            "v2",
            "4 sum_t Dbar_t min(1, sqrt((T-t) delta/2))",
            ("dbar", "delta"),
            "data-dependent (Dbar_t = eps everywhere recovers B_PM^KL's order)",
        ),
        _published(
            "adaptive_tv",
            "B_Adap^TV",
            "v3",
            "4 sum_t Dbar_t min(1, (T-t) eps)",
            ("dbar", "eps"),
            "data-dependent (Dbar_t = eps everywhere recovers B_Coup)",
        ),
        _published(
            "adaptive_star",
            "B_Adap^*",
            "v3",
            "4 sum_t Dbar_t min(1, (T-t) eps, sqrt((T-t) delta/2))",
            ("dbar", "eps", "delta"),
            "data-dependent; <= min(B_Adap^KL, B_Adap^TV)",
        ),
        _published(
            "unified",
            "B* (unified)",
            "v3",
            "min(B_PM^KL, B_PM^TV, B_Mix^KL, B_Mix^TV, B_Coup, B_Adap^*)",
            ("T", "eps", "delta", "dkl_seq", "dtv_seq", "dbar"),
            "the smallest of its six terms",
        ),
        _published(
            "linear_dbar",
            "Linear (Dbar form)",
            "v2",
            "4 sum_t Dbar_t  (<= 4 T eps)",
            ("dbar",),
            "O(T) at fixed Dbar_t",
        ),
        _published(
            "pm_kl_nocap",
            "B_PM^KL, caps removed",
            "v2 (Table 1 'no cap' column)",
            "2 delta sum_{k=0}^{T-1} sqrt(k)",
            ("T", "delta"),
            "O(T^1.5) for every delta; looser than pm_kl",
        ),
        _published(
            "unified_v2",
            "B* of v2",
            "v2",
            "min(B_PM^KL, B_Mix^KL, B_Adap^KL)",
            ("T", "delta", "dkl_seq", "dbar"),
            "the smallest of its three terms",
        ),
        BoundInfo(
            "second_order",
            "E_roll[Z] (second-order bound)",
            "beyond the paper, this package",
            "E_roll[sum_t |rho_t - 1| sum_{s>t} (1 - rho_s)_+]",
            ("E_roll[Z] (exact engines; estimated by `trm-bounds certify`)",),
            "second order in the mismatch; not a function of T, eps, delta, ...",
            "reward range max R - min R <= 1 (e.g. R in [0, 1]) and pi_theta << pi_roll",
        ),
    )
}
BOUND_INFO: Mapping[str, BoundInfo] = MappingProxyType(_BOUND_INFO)
"""Key -> BoundInfo for every registered bound that has one, plus `second_order` (reported by the
exact engines and `certify`; `evaluate_bounds` cannot compute it from `BoundInputs`)."""


def bound_info(name: str) -> BoundInfo | None:
    """The `BoundInfo` of key `name` (None for a key registered without one).

    Raises ValueError for a name that is neither registered nor described.
    """
    if name not in BOUNDS and name not in BOUND_INFO:
        raise ValueError(f"unknown bound {name!r}; known: {', '.join(dict.fromkeys([*BOUNDS, *BOUND_INFO]))}")
    return BOUND_INFO.get(name)


def register_bound(
    name: str,
    fn: Callable[[BoundInputs], float],
    *,
    replace: bool = False,
    info: BoundInfo | None = None,
) -> None:
    """Add a bound (e.g. a refined variant `pm_kl_refined`) under a new key.

    Published keys can never be replaced: a refinement gets its own name. `info` says what the
    bound is (`BoundInfo`; `trm-bounds bounds` prints it); without it the key is listed as
    "registered by the user, no metadata".
    """
    if not name.isidentifier():
        raise ValueError(f"name must be an identifier, got {name!r}")
    if name in PUBLISHED_BOUNDS:
        raise ValueError(f"name {name!r} is a published bound and cannot be replaced")
    if name in _BOUNDS and not replace:
        raise ValueError(f"name {name!r} is already registered")
    if info is not None and info.name != name:
        raise ValueError(f"info.name must be {name!r}, got {info.name!r}")
    _BOUNDS[name] = fn
    if info is not None:
        _BOUND_INFO[name] = info
    else:
        _BOUND_INFO.pop(name, None)  # a replaced bound keeps no stale description


def get_bound(name: str) -> Callable[[BoundInputs], float]:
    """The registered bound function for `name` (ValueError listing the known names)."""
    try:
        return BOUNDS[name]
    except KeyError:
        raise ValueError(f"unknown bound {name!r}; known: {', '.join(BOUNDS)}") from None


def reward_range_factor(name: str, reward_range: float = 1.0) -> float:
    """What bound `name` must be multiplied by when rewards span max R - min R = reward_range.

    Error is linear in R and unchanged by R -> R + c (the g-form of L' vanishes for R = 1), so
    a bound proved for R in [0, 1] holds for range r after multiplying by r. The published
    proofs use |Q| <= 1 (rewards in [-1, 1], range <= 2): factor max(1, r/2). Every other
    registered bound (the halved `*_refined`, `second_order`) needs range <= 1: factor max(1, r).
    Ranges <= 1 change nothing.
    """
    r = float(reward_range)
    if not (r >= 0.0 and math.isfinite(r)):
        raise ValueError(f"reward_range must be a finite number >= 0, got {reward_range!r}")
    published = name in PUBLISHED_BOUNDS or name in ("linear_dbar", "pm_kl_nocap", "unified_v2")
    return max(1.0, r / 2.0) if published else max(1.0, r)


def evaluate_bounds(
    inputs: BoundInputs, names: str | tuple[str, ...] | None = None, *, reward_range: float = 1.0
) -> dict[str, float]:
    """{name: float} for every registered bound (or `names`: one name or several), evaluated on `inputs`.

    reward_range: max R - min R of the rewards the bounds are for (default 1: R in [0, 1]);
    a wider range scales each bound by `reward_range_factor` (the halved refined bounds and
    `second_order` need a range <= 1, the published ones <= 2).
    """
    names = _bound_names(inputs, names)
    return {n: float(_value(inputs, n)) * reward_range_factor(n, reward_range) for n in names}


def _bound_names(inputs, names) -> tuple[str, ...]:
    """`names` as a tuple of str (one str is one name; None: every registered bound); TypeError otherwise."""
    if not isinstance(inputs, BoundInputs):
        raise TypeError(f"inputs must be a BoundInputs (from_partial), got {type(inputs).__name__}")
    if names is None:
        return tuple(BOUNDS)
    if isinstance(names, str):
        return (names,)
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"names must be a bound name or a sequence of names, got {names!r}") from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"names must hold bound names (str), got {bad[0]!r}")
    return names
