"""Refined bounds: every published bound of docs/theory.md section 5 with its leading constant halved.

docs/theory.md section 9 asks whether each bound holds with its leading constant halved. It
does: below is a written proof (checked step by step by hand, not machine-checked), then
one refined function per published bound, registered under the published key plus
``_refined`` (``pm_kl_refined``, ..., ``unified_refined``). Published keys are untouched.
The constant 2 of the refined bounds cannot be lowered further (tightness example below).

Setting and assumptions. A finite tabular pair (P prompts, vocabulary V, horizon T), rewards
with max R - min R <= 1 (REFINED_ASSUMPTION; R in [0, 1] is the usual case), eps / delta the
maxima of the token TV / KL(pi_roll || pi_theta) over contexts reachable under either policy
(docs/theory.md section 3), Dbar_t = E_{d_t^roll}[TV(c_t)]. No absolute continuity is assumed
anywhere. For a wider range r = max R - min R every refined bound holds multiplied by r:
Error is linear in R and unchanged by R -> R + c (for R = 1 both J's are 1 and every g_t is
sum_v (pi_theta - pi_roll)(v|c) = 0), so Error(R) = r Error((R - min R) / r). With R in
{-1, 1} (r = 2) the tight pair of C exceeds `adaptive_tv_refined` and `coupling_refined` by
exactly 2x, so the assumption is needed (`trm_bounds.bounds.reward_range_factor` scales).

A. The performance-difference (PDI) route: classical_tv, classical_kl, pm_kl, pm_tv,
   mix_kl, mix_tv, coupling (and the PDI form of linear).

   A1. g_t(c) = sum_v (pi_theta - pi_roll)(v|c) Q_t(c, v) with Q_t in [min R, max R]
       and sum_v (pi_theta - pi_roll)(v|c) = 0 (both rows are distributions). Split the
       difference into its positive and negative parts, each of mass TV(c):
       g_t(c) = sum_{v+} |.| Q_t(v) - sum_{v-} |.| Q_t(v) lies in
       [-TV(c) (max Q - min Q), TV(c) (max Q - min Q)], so |g_t(c)| <= TV(c) (range <= 1).
       The published building block is 2 TV(c) (it drops sum_v (pi_theta - pi_roll) = 0).
   A2. Error = sum_t (E_{d_t^theta} - E_{d_t^roll})[g_t] (docs/theory.md section 2). For
       probability laws mu, nu and f with values in [-G, G],
       |E_mu f - E_nu f| <= (sup f - inf f) TV(mu, nu) <= 2 G TV(mu, nu). With
       G_t = sup_c |g_t(c)| <= min(1, eps, sqrt(delta/2)) (A1, then TV <= 1 and Pinsker):
           |Error| <= sum_t 2 min(1, eps, sqrt(delta/2)) TV(d_t^theta, d_t^roll),
       half the published master inequality sum_t 2 ||g_t||_inf TV(d_t) with ||g_t|| <= 2 G_t.
   A3. Every PDI-route bound is 4 G (or 4 eps, 4 sqrt(delta/2)) times a sum of the
       context-shift caps min(1, (t-1) eps, sqrt((t-1) delta/2), D_TV^seq, sqrt(D_KL^seq/2))
       (classical_tv: G = eps, cap (t-1) eps; classical_kl: G = sqrt(delta/2), cap
       (t-1) sqrt(delta/2) via eps <= sqrt(delta/2)). A2 replaces each 4 by 2.

B. The future-value route: adaptive_kl, adaptive_tv, adaptive_star, linear_dbar (weights
   w_t = 1), linear (Dbar_t <= eps). A direct proof; no absolute continuity, no limit.

   B1. Values. V^pi_t(c) = E_pi[R | c_t = c] (V^pi_{T+1}(c) = R), h_t(c) = V^theta_t(c) -
       V^roll_t(c). Two laws of the future tokens y_{>=t} given c, and R of range <= 1, give
       |h_t(c)| <= TV_fut(c), the TV of those two laws.
   B2. Telescoping (an identity). With g_t(c) = sum_v (pi_theta - pi_roll)(v|c) V^roll_{t+1}(cv)
       (the g_t of docs/theory.md section 2, Q_t = V^roll_{t+1}) and
       k_t(c) = sum_v (pi_theta - pi_roll)(v|c) h_{t+1}(cv):
           h_t(c) = sum_v pi_theta V^theta_{t+1}(cv) - sum_v pi_roll V^roll_{t+1}(cv)
                  = g_t(c) + k_t(c) + sum_v pi_roll(v|c) h_{t+1}(cv).
       Take E_{d_t^roll} (then the last term is E_{d_{t+1}^roll}[h_{t+1}]) and sum over t:
       J(theta) - J(roll) = E_{d_1}[h_1] = L' + sum_t E_{d_t^roll}[k_t], that is
           Error = sum_t E_{c_t ~ d_t^roll}[ sum_v (pi_theta - pi_roll)(v|c_t) h_{t+1}(c_t v) ].
       Only roll-reachable c_t and children c_t v with (pi_theta - pi_roll)(v|c_t) != 0 enter;
       such a child is reachable under one of the two policies.
   B3. A1's split applied to k_t: |k_t(c)| <= TV(c) (max_v h_{t+1}(cv) - min_v h_{t+1}(cv))
       over those v, and by B1 |h_{t+1}(cv)| <= TV_fut(cv) <= w_t = min(1, (T-t) eps,
       sqrt((T-t) delta/2)): telescoping the T - t future tokens gives (T-t) eps; the KL chain
       rule gives future KL <= (T-t) delta, then Pinsker (every context reachable from cv is
       reachable under one of the policies, so eps and delta apply there). So
       |k_t(c)| <= 2 w_t TV(c) and |Error| <= 2 sum_t Dbar_t w_t: half of B_Adap
       (published 4 sum_t Dbar_t w_t).
   B4. History. With pi_theta << pi_roll the same bound follows from the ratio identity
       (Error = -Delta, Delta(R) = Delta(R - 1/2), tower rule on c_{t+1}, E_roll[|1 -
       prod_{j>t} rho_j| | c_{t+1}] = 2 TV_fut). An earlier version of this docstring then
       removed absolute continuity by a limit, pi_roll^n = (1 - 1/n) pi_roll + (1/n) pi_theta,
       claiming eps_n <= eps. That step was wrong when delta = inf: the mixture reaches
       contexts that neither policy reaches (a roll-only token followed by a theta-only token),
       where the two rows may differ arbitrarily (T = 3, V = 2: eps = 0.1 but eps_n = 0.999;
       tests/test_refined.py builds it and checks that the bound still holds). B2-B3 replace it.

C. Tightness (the 2 cannot be made smaller): T = 2, V = 2, one prompt, pi_roll uniform,
   pi_theta(.|c_1) = (1/2 + a, 1/2 - a), pi_theta(.|y_1) = (1/2 - b, 1/2 + b) for both y_1,
   R(0, 1) = R(1, 0) = 1, R(0, 0) = R(1, 1) = 0, 0 < a <= b <= 1/2. Then g_2(0) = b,
   g_2(1) = -b, Error = sum_v (pi_theta - pi_roll)(v|c_1) g_2(v) = a b + (-a)(-b) = 2 a b
   exactly, and eps = b, Dbar_1 = a, so
   adaptive_tv_refined = 2 a b = Error; with a = b also coupling_refined = classical_tv_refined
   = 2 b^2 = Error. `tight_pair(a, b)` builds it; the tests check it in exact rationals.

Float64 caveat (the reported 0.705): a row of float64 log-probs is a distribution only to
rounding. A log-softmax written z - m - log(sum exp(z - m)) stores log pi = 0 exactly for a
dominant token whose true log-prob is -1e-82, so the row sums to 1 + 1e-82. Two effects follow
when the divergences are that small: (i) TV = 1/2 sum_v |pi_theta - pi_roll| sees only the
small tokens' side of the difference, so eps, Dbar_t and the context TVs come out half their
true values; (ii) sum_v (pi_theta - pi_roll) != 0, so g_t picks up a spurious term and Error
can be wrong by hundreds of orders of magnitude (1e-166 computed, 1e-1005 true). The published
bounds were reached but not exceeded beyond rounding (worst float64 ratio 1 + 2.6e-14 over
132,000 such pairs; their 2 TV step does not use sum_v (pi_theta - pi_roll) = 0); the halved
ones showed float64 ratios |Error| / refined bound up to 2. Recomputed at 60+ digits on the
renormalised rows, every such pair satisfies every refined bound (`trm_bounds.refined_evidence`,
tests/test_refined.py). The engine is faithful to its literal input; the fix is at the input:
`trm_bounds.divergences.log_softmax` (log1p form) keeps rows normalised to relative rounding of
their small masses.

This module is numpy-only (no torch): it imports nothing above `trm_bounds.bounds`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from fractions import Fraction
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

from .bounds import (
    BOUND_INFO,
    BOUNDS,
    PUBLISHED_BOUNDS,
    UNIFIED_OF,
    BoundInfo,
    BoundInputs,
    _value,
    adaptive_kl,
    adaptive_star,
    adaptive_tv,
    classical_kl,
    classical_tv,
    coupling,
    linear,
    linear_dbar,
    mix_kl,
    mix_tv,
    pm_kl,
    pm_tv,
    register_bound,
)

__all__ = [
    "classical_tv_refined",
    "classical_kl_refined",
    "linear_refined",
    "linear_dbar_refined",
    "pm_kl_refined",
    "pm_tv_refined",
    "mix_kl_refined",
    "mix_tv_refined",
    "coupling_refined",
    "adaptive_kl_refined",
    "adaptive_tv_refined",
    "adaptive_star_refined",
    "unified_refined",
    "REFINED_OF",
    "REFINED_ROUTE",
    "REFINED_FORMULA",
    "REFINED_ASSUMPTION",
    "tight_pair",
    "REFINED_ASSUMPTION",
]

REFINED_ASSUMPTION = "reward range max R - min R <= 1 (e.g. R in [0, 1]); for a wider range multiply by max R - min R"  # the one assumption every *_refined bound adds to the published ones (module docstring)


# --------------------------------------------------------------------------- PDI route (A)
def classical_tv_refined(T: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Classical TV bound, halved (route A):  B = T (T - 1) eps^2  (published 2 T (T-1) eps^2).

    Assumes max R - min R <= 1 (REFINED_ASSUMPTION). Args: T horizon >= 1, eps max token TV in [0, 1]; broadcast together.
    """
    return 0.5 * classical_tv(T, eps)


def classical_kl_refined(T: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Classical KL bound, halved (route A):  B = T (T - 1) delta / 2  (published T (T-1) delta)."""
    return 0.5 * classical_kl(T, delta)


def pm_kl_refined(T: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Pinsker-Marginal KL bound, halved (route A):

        B = 2 min(1, sqrt(delta/2)) * sum_{t=1..T} min(1, sqrt((t-1) delta / 2))

    Args: T horizon >= 1; delta = D_KL^{tok,max} >= 0 (inf allowed). Returns the broadcast shape.
    """
    return 0.5 * pm_kl(T, delta)


def pm_tv_refined(T: ArrayLike, eps: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Pinsker-Marginal TV bound, halved (route A):  B = 2 min(1, eps) sum_t min(1, sqrt((t-1) delta/2))."""
    return 0.5 * pm_tv(T, eps, delta)


def mix_kl_refined(T: ArrayLike, delta: ArrayLike, dkl_seq: ArrayLike) -> np.ndarray:
    """Mixed KL bound, halved (route A):  B = 2 T min(1, sqrt(delta/2)) min(1, sqrt(D_KL^seq/2))."""
    return 0.5 * mix_kl(T, delta, dkl_seq)


def mix_tv_refined(T: ArrayLike, eps: ArrayLike, dtv_seq: ArrayLike) -> np.ndarray:
    """Mixed TV bound, halved (route A):  B = 2 T min(1, eps) min(1, D_TV^seq)."""
    return 0.5 * mix_tv(T, eps, dtv_seq)


def coupling_refined(T: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Coupling bound, halved (route A):  B = 2 min(1, eps) sum_t min(1, (t-1) eps).  Attained (C)."""
    return 0.5 * coupling(T, eps)


# --------------------------------------------------------------------------- ratio route (B)
def linear_refined(T: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Linear bound, halved (route B with w_t = 1 and Dbar_t <= eps, or route A):  B = 2 T eps."""
    return 0.5 * linear(T, eps)


def linear_dbar_refined(dbar: ArrayLike) -> np.ndarray:
    """Linear bound, data-dependent form, halved (route B, w_t = 1):  B = 2 sum_t Dbar_t.

    Args: dbar (..., T), dbar[..., k] = Dbar_{k+1}. Returns (...,).
    """
    return 0.5 * linear_dbar(dbar)


def adaptive_kl_refined(dbar: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Adaptive KL bound, halved (route B, steps B1-B3):  B = 2 sum_t Dbar_t min(1, sqrt((T-t) delta/2)).

    Args: dbar (..., T); delta broadcast against dbar's leading shape. Returns (...,).
    """
    return 0.5 * adaptive_kl(dbar, delta)


def adaptive_tv_refined(dbar: ArrayLike, eps: ArrayLike) -> np.ndarray:
    """Adaptive TV bound, halved (route B):  B = 2 sum_t Dbar_t min(1, (T-t) eps).  Attained (C)."""
    return 0.5 * adaptive_tv(dbar, eps)


def adaptive_star_refined(dbar: ArrayLike, eps: ArrayLike, delta: ArrayLike) -> np.ndarray:
    """Adaptive hybrid, halved (route B):  B = 2 sum_t Dbar_t min(1, (T-t) eps, sqrt((T-t) delta/2))."""
    return 0.5 * adaptive_star(dbar, eps, delta)


# --------------------------------------------------------------------------- registry
REFINED_OF: Mapping[str, str] = MappingProxyType(
    {
        "classical_tv": "classical_tv_refined",
        "classical_kl": "classical_kl_refined",
        "linear": "linear_refined",
        "pm_kl": "pm_kl_refined",
        "pm_tv": "pm_tv_refined",
        "mix_kl": "mix_kl_refined",
        "mix_tv": "mix_tv_refined",
        "coupling": "coupling_refined",
        "adaptive_kl": "adaptive_kl_refined",
        "adaptive_tv": "adaptive_tv_refined",
        "adaptive_star": "adaptive_star_refined",
        "unified": "unified_refined",
        "linear_dbar": "linear_dbar_refined",
    }
)  # published key -> refined key (= published / 2)
REFINED_ROUTE: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(("classical_tv", "classical_kl", "pm_kl", "pm_tv", "mix_kl", "mix_tv"), "A"),
        **dict.fromkeys(("coupling",), "A"),
        **dict.fromkeys(("linear", "linear_dbar", "adaptive_kl", "adaptive_tv", "adaptive_star"), "B"),
        "unified": "A+B",
    }
)  # which proof route of this module's docstring justifies each halving


def unified_refined(b: BoundInputs) -> float:
    """Unified bound, halved: min over the refined PM-KL, PM-TV, Mix-KL, Mix-TV, Coupling, Adaptive*."""
    return float(min(float(BOUNDS[REFINED_OF[n]](b)) for n in UNIFIED_OF))


def _halved(published: str, refined: Callable, fields: tuple[str, ...]) -> Callable[[BoundInputs], float]:
    """Registry entry of a refined key: `refined` on the record's `fields`. On a `BoundInputs` the
    published value (0-d, computed once per record by `trm_bounds.bounds._value`) is halved
    instead: the very product `refined` forms, without re-checking and recomputing it."""

    def bound(b):
        if isinstance(b, BoundInputs) and published in PUBLISHED_BOUNDS:
            return 0.5 * _value(b, published)
        return refined(*[getattr(b, f) for f in fields])

    return bound


_REFINED: dict[str, Callable[[BoundInputs], float]] = {
    "classical_tv_refined": _halved("classical_tv", classical_tv_refined, ("T", "eps")),
    "classical_kl_refined": _halved("classical_kl", classical_kl_refined, ("T", "delta")),
    "linear_refined": _halved("linear", linear_refined, ("T", "eps")),
    "pm_kl_refined": _halved("pm_kl", pm_kl_refined, ("T", "delta")),
    "pm_tv_refined": _halved("pm_tv", pm_tv_refined, ("T", "eps", "delta")),
    "mix_kl_refined": _halved("mix_kl", mix_kl_refined, ("T", "delta", "dkl_seq")),
    "mix_tv_refined": _halved("mix_tv", mix_tv_refined, ("T", "eps", "dtv_seq")),
    "coupling_refined": _halved("coupling", coupling_refined, ("T", "eps")),
    "adaptive_kl_refined": _halved("adaptive_kl", adaptive_kl_refined, ("dbar", "delta")),
    "adaptive_tv_refined": _halved("adaptive_tv", adaptive_tv_refined, ("dbar", "eps")),
    "adaptive_star_refined": _halved("adaptive_star", adaptive_star_refined, ("dbar", "eps", "delta")),
    "unified_refined": unified_refined,
    "linear_dbar_refined": _halved("linear_dbar", linear_dbar_refined, ("dbar",)),
}
REFINED_FORMULA: Mapping[str, str] = MappingProxyType(
    {
        "classical_tv_refined": "T (T-1) eps^2",
        "classical_kl_refined": "T (T-1) delta / 2",
        "linear_refined": "2 T eps",
        "pm_kl_refined": "2 min(1, sqrt(delta/2)) sum_t min(1, sqrt((t-1) delta/2))",
        "pm_tv_refined": "2 min(1, eps) sum_t min(1, sqrt((t-1) delta/2))",
        "mix_kl_refined": "2 T min(1, sqrt(delta/2)) min(1, sqrt(D_KL^seq/2))",
        "mix_tv_refined": "2 T min(1, eps) min(1, D_TV^seq)",
        "coupling_refined": "2 min(1, eps) sum_t min(1, (t-1) eps)",
        "adaptive_kl_refined": "2 sum_t Dbar_t min(1, sqrt((T-t) delta/2))",
        "adaptive_tv_refined": "2 sum_t Dbar_t min(1, (T-t) eps)",
        "adaptive_star_refined": "2 sum_t Dbar_t min(1, (T-t) eps, sqrt((T-t) delta/2))",
        "unified_refined": "min of the six refined terms of B* (pm_kl_refined, ..., adaptive_star_refined)",
        "linear_dbar_refined": "2 sum_t Dbar_t",
    }
)  # refined key -> its formula (the published one with the leading constant halved)
REFINED_ASSUMPTION = (
    "reward range max R - min R <= 1 (e.g. R in [0, 1]); with R in [-1, 1] it can be exceeded 2x: "
    "use the published key there"
)


def _refined_info(published: str, refined: str) -> BoundInfo:
    """The BoundInfo of a refined key: the published one's equation and inputs, halved, and its assumption."""
    pub = BOUND_INFO[published]
    return BoundInfo(
        name=refined,
        equation=f"{pub.equation} / 2",
        version=f"refined, this package (halves {pub.version.split(' (')[0]}; proof route {REFINED_ROUTE[published]})",
        formula=REFINED_FORMULA[refined],
        inputs=pub.inputs,
        regime=pub.regime,
        assumption=REFINED_ASSUMPTION,
    )


for _pub, _name in REFINED_OF.items():  # replace=True: re-importing this module is harmless
    register_bound(_name, _REFINED[_name], replace=True, info=_refined_info(_pub, _name))


# --------------------------------------------------------------------------- tightness example (C)
def tight_pair(a: Fraction | float, b: Fraction | float) -> dict:
    """The tightness example of section C: exact probabilities for which |Error| = the refined bound.

    T = 2, V = 2, P = 1; pi_roll uniform; pi_theta(.|c_1) = (1/2 + a, 1/2 - a),
    pi_theta(.|y_1) = (1/2 - b, 1/2 + b); R(0,1) = R(1,0) = 1, R(0,0) = R(1,1) = 0; 0 <= a <= b <= 1/2.
    Returns {"roll", "theta": [level-1 (1, 1, 2), level-2 (1, 2, 2)] nested lists of the input's
    number type, "reward": [[0, 1, 1, 0]], "error": 2 a b, "eps": b, "dbar": [a, 0]}.
    """
    if not 0 <= a <= b <= Fraction(1, 2):
        raise ValueError(f"need 0 <= a <= b <= 1/2, got a={a!r}, b={b!r}")
    h = Fraction(1, 2) if isinstance(a, Fraction) else 0.5
    zero, one = a - a, a - a + 1
    return {
        "roll": [[[[h, h]]], [[[h, h], [h, h]]]],
        "theta": [[[[h + a, h - a]]], [[[h - b, h + b], [h - b, h + b]]]],
        "reward": [[zero, one, one, zero]],
        "error": 2 * a * b,
        "eps": b,
        "dbar": [a, zero],
    }


def __getattr__(name: str):
    """Deprecated names (PEP 562): ``log_softmax_log1p`` is `trm_bounds.divergences.log_softmax`."""
    if name == "log_softmax_log1p":
        warnings.warn(
            "trm_bounds.refined.log_softmax_log1p is deprecated and will be removed in the next "
            "release; use trm_bounds.divergences.log_softmax (the same log1p-form log-softmax)",
            DeprecationWarning,
            stacklevel=2,
        )
        from .divergences import log_softmax  # noqa: PLC0415 - torch loads only for this old name

        return log_softmax
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
