"""Upper confidence bounds on the mean of bounded iid variables, valid at every finite n.

Setting: X_1..X_n iid (or, for `betting_upper`, any sequence with E[X_i | X_<i] = mu) with
values in a KNOWN range [lo, hi] fixed before sampling, mean mu. Each function returns U(X)
with P(mu <= U) >= 1 - alpha. Everything is computed on x = (X - lo) / (hi - lo) in [0, 1]
and mapped back. Arrays may carry leading batch axes: x (..., n) -> U (...,) (the coverage
study bounds thousands of repeats at once). No torch here.

Methods (`METHODS`):
- ``hoeffding`` (Hoeffding 1963): U = mean + sqrt(log(1/alpha) / (2 n)). Needs only the range;
  width ~ n^-1/2 whatever the variance. The baseline.
- ``bernstein`` (empirical Bernstein, Maurer & Pontil 2009, Theorem 4): for n >= 2,
  U = mean + sqrt(2 V_n log(2/alpha) / n) + 7 log(2/alpha) / (3 (n - 1)),
  V_n the unbiased sample variance. Width ~ sqrt(variance / n) + 1/n: much tighter at small
  variance. Needs iid (the variance estimate is union-bounded with Bennett's inequality).
- ``betting`` (testing by betting, Waudby-Smith & Ramdas 2024, JRSS-B, "predictable plug-in"
  bets, one-sided): for a candidate mean m in [0, 1] the capital
      K_n(m) = prod_i (1 + lambda_i (m - x_i)),   0 <= lambda_i <= c < 1,
  with lambda_i a function of x_1..x_{i-1} only. At m = mu each factor has conditional mean
  1 and is > 0 (m - x_i >= -1), so K_n(mu) is a non-negative martingale with K_0 = 1 and
  P(K_n(mu) >= 1/alpha) <= alpha (Markov; Ville's inequality even makes it hold uniformly
  over n). As lambda_i does not depend on m, K_n(m) is non-decreasing in m, so
      U = inf{m in [0, 1] : K_n(m) >= 1/alpha}   (U = 1 if K_n(1) < 1/alpha)
  satisfies mu < U whenever mu is not rejected: P(mu <= U) >= 1 - alpha. U is found by
  bisection (returning the upper end of the bracket, so rounding only widens it). Bets:
  lambda_i = min(c, sqrt(2 log(1/alpha) / (n s2_{i-1}))), s2 the running variance around the
  running mean, both with the priors of the paper (1/4 and 1/2). The sample is first put in
  a random order with a fixed seed: a permutation drawn independently of the values keeps an
  iid sample iid, so the bound stays valid even when the caller's order depends on the data
  (e.g. batches sorted by length), and the result is reproducible.

Which to use (experiments/bench_confidence.py measures it): betting is never wider than
Hoeffding by more than a few percent and is the tightest at small variance, the regime of
the sample certificate (most (1 - rho)_+ are ~1e-3); empirical Bernstein is close but pays
log(2/alpha) instead of log(1/alpha) and a 7/3 factor on the 1/n term. `DEFAULT_METHOD` is
"betting". No method can be tighter than about mean + log(1/alpha) / n when the mean is
near 0: a mass log(1/alpha)/n at the top of the range goes unseen with probability alpha.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "hoeffding_upper",
    "bernstein_upper",
    "betting_upper",
    "upper_confidence_bound",
    "METHODS",
    "DEFAULT_METHOD",
    "BETTING_MAX_BET",
]

BETTING_MAX_BET = 0.9  # c: largest bet fraction; a top-of-range value then costs log(1 - c) = -2.3
_BISECTIONS = 64  # float64: the bracket [0, 1] shrinks below rounding


def _check(x: ArrayLike, alpha: float, min_n: int = 1) -> np.ndarray:
    """x as float64 (..., n) in [0, 1]; alpha in (0, 1). ValueError naming the argument."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        raise ValueError("x must have a last axis of samples, got a scalar")
    if a.shape[-1] < min_n:
        raise ValueError(f"x needs at least {min_n} samples on its last axis, got {a.shape[-1]}")
    if np.isnan(a).any():
        raise ValueError("x contains NaN")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise ValueError(f"x must lie in [0, 1] after scaling, got range [{a.min():g}, {a.max():g}]")
    if isinstance(alpha, bool) or not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return a


def hoeffding_upper(x: ArrayLike, alpha: float) -> np.ndarray:
    """Hoeffding: U = min(1, mean + sqrt(log(1/alpha) / (2 n))).  x (..., n) in [0, 1] -> (...,)."""
    a = _check(x, alpha)
    n = a.shape[-1]
    return np.minimum(1.0, a.mean(-1) + math.sqrt(math.log(1.0 / alpha) / (2.0 * n)))


def bernstein_upper(x: ArrayLike, alpha: float) -> np.ndarray:
    """Empirical Bernstein (Maurer & Pontil 2009, Thm 4), n >= 2:

        U = min(1, mean + sqrt(2 V_n log(2/alpha) / n) + 7 log(2/alpha) / (3 (n - 1))),

    V_n = sum_i (x_i - mean)^2 / (n - 1).  x (..., n) in [0, 1] -> (...,).
    """
    a = _check(x, alpha, min_n=2)
    n = a.shape[-1]
    L = math.log(2.0 / alpha)
    var = a.var(-1, ddof=1)
    return np.minimum(1.0, a.mean(-1) + np.sqrt(2.0 * var * L / n) + 7.0 * L / (3.0 * (n - 1)))


def _betting_bets(a: np.ndarray, alpha: float, c: float) -> np.ndarray:
    """Predictable bets lambda_i (..., n), each a function of x_1..x_{i-1} only.

    mu_i = (1/2 + sum_{j<=i} x_j) / (i + 1), s2_i = (1/4 + sum_{j<=i} (x_j - mu_j)^2) / (i + 1),
    lambda_i = min(c, sqrt(2 log(1/alpha) / (n s2_{i-1}))) (Waudby-Smith & Ramdas 2024, eq. (26)
    with the fixed-n rate).
    """
    n = a.shape[-1]
    i = np.arange(1, n + 1, dtype=np.float64)
    mu = (0.5 + np.cumsum(a, -1)) / (i + 1.0)  # mu_i, i = 1..n
    s2 = (0.25 + np.cumsum((a - mu) ** 2, -1)) / (i + 1.0)  # s2_i
    s2_prev = np.concatenate([np.full(a.shape[:-1] + (1,), 0.25), s2[..., :-1]], -1)  # s2_{i-1}
    return np.minimum(c, np.sqrt(2.0 * math.log(1.0 / alpha) / (n * s2_prev)))


def betting_upper(
    x: ArrayLike, alpha: float, *, max_bet: float = BETTING_MAX_BET, seed: int = 0
) -> np.ndarray:
    """One-sided betting bound (Waudby-Smith & Ramdas 2024), see the module docstring:

        U = inf{m in [0, 1] : sum_i log(1 + lambda_i (m - x_i)) >= log(1/alpha)}.

    x (..., n) in [0, 1] -> (...,). The samples are permuted (same permutation for every
    leading index, drawn from `seed`) before the bets are formed. U is the end of a bisection
    of [0, 1] (`_bisection`), whose first levels `_bisection_start` skips without changing a bit.
    """
    a = _check(x, alpha)
    if not (0.0 < max_bet < 1.0):
        raise ValueError(f"max_bet must be in (0, 1), got {max_bet!r}")
    n = a.shape[-1]
    a = a[..., np.random.default_rng(seed).permutation(n)]
    lam = _betting_bets(a, alpha, max_bet)
    shape = a.shape[:-1]
    a, lam = a.reshape(-1, n), lam.reshape(-1, n)  # rows: every leading index
    target = math.log(1.0 / alpha)
    done = _log_capital(lam, a, np.ones(a.shape[0])) < target  # never rejected: U = 1
    lo, hi, level = _bisection_start(lam, a, target, max_bet)
    lo, hi = _bisection(lam, a, target, lo, hi, _BISECTIONS - level, stop=True)
    return np.where(done, 1.0, hi).reshape(shape)


def _log_capital(lam: np.ndarray, a: np.ndarray, m: np.ndarray, buf: np.ndarray | None = None) -> np.ndarray:
    """log K_n(m) = sum_i log1p(lambda_i (m - x_i)) per row: lam, a (R, n), m (R,) -> (R,).
    `buf`: an (R, n) scratch array to reuse (the same operations, no new allocation)."""
    buf = np.subtract(m[:, None], a, out=buf)
    np.multiply(lam, buf, out=buf)
    np.log1p(buf, out=buf)
    return buf.sum(-1)


def _bisection(lam, a, target, lo, hi, steps: int, stop: bool) -> tuple[np.ndarray, np.ndarray]:
    """`steps` bisection steps of [lo, hi] (R,) towards U: mid rejected (log K_n(mid) >= target)
    -> hi = mid, else lo = mid. With `stop`, ends once every row's bracket is below rounding."""
    buf = np.empty_like(a)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        rej = _log_capital(lam, a, mid, buf) >= target
        hi = np.where(rej, mid, hi)
        lo = np.where(rej, lo, mid)
        if stop and np.all(hi - lo <= 4 * np.finfo(np.float64).eps * np.maximum(hi, 1e-300)):
            break
    return lo, hi


def _capital_rounding(n: int, max_bet: float) -> float:
    """A bound on |computed log K_n(m) - exact log K_n(m)| for m in [0, 1] (the lambda_i, x_i as
    stored): each y_i = lambda_i (m - x_i) in [-c, c] is rounded twice (relative 2.01 u, u = 2^-53),
    which moves log1p by <= 2.01 u c / (1 - c); log1p itself is within 4 ulp (8 u L, L = -log(1 - c)
    bounds |log1p|); a sum of n terms in any order adds <= (n - 1) u sum |terms| (x 1.01)."""
    u, c = 2.0**-53, max_bet
    big = -math.log1p(-c)
    return u * n * (2.01 * c / (1.0 - c) + 8.0 * big + 1.01 * (n - 1) * big)


def _bisection_start(lam, a, target, max_bet) -> tuple[np.ndarray, np.ndarray, int]:
    """(lo, hi, level): the bracket that `level` steps of `_bisection` from [0, 1] reach, found
    without taking them. Bit-identical: from [0, 1] the steps visit dyadic points only, so after
    j steps the bracket is [k, k + 1] / 2^j; a Newton estimate of U gives k, and the bracket is
    accepted when log K_n, computed as the steps compute it, is below target - margin at its
    low end and above target + margin at its high end (an end at 0 or 1 is never evaluated by
    the steps). Exact log K_n grows with m and the computed one is within E of it
    (`_capital_rounding`; margin = 4 E), so every point a step visits below the low end is
    then computed not rejected and every point above the high end rejected: exactly the
    decisions that lead to [k, k + 1] / 2^j. Rows whose bracket is not accepted try coarser
    levels (level 0 is [0, 1]) and take the missing steps themselves, so all rows return at one
    `level` (<= 40: no row's bracket is below rounding there, so the steps never stop early).
    A row's computed log K_n does not depend on the rows evaluated with it (element-wise ufuncs,
    one sum per row), which tests/test_confidence_bisection.py checks against the plain bisection."""
    rows, n = a.shape
    m = np.clip(a.mean(-1), 0.0, 1.0)
    with np.errstate(all="ignore"):
        for _ in range(4):  # Newton on log K_n(m) = target; log K_n is concave and increasing
            y = lam * (m[:, None] - a)
            slope = (lam / (1.0 + y)).sum(-1)
            m = np.clip(m - (np.log1p(y).sum(-1) - target) / slope, 0.0, 1.0)
    lo, hi = np.zeros(rows), np.ones(rows)
    if not (rows and np.all(np.isfinite(m)) and np.all(slope > 0)):
        return lo, hi, 0
    margin = 4.0 * _capital_rounding(n, max_bet)
    zone = margin / float(np.median(slope))  # width in m of the band where the sign is in doubt
    top = int(min(40, max(0, math.floor(-math.log2(64.0 * zone)))))  # ~3% of the rows in doubt there
    pending = np.arange(rows)
    for level in range(top, 0, -8):
        if not pending.size:
            break
        k = np.clip(np.floor(m[pending] * 2.0**level), 0.0, 2.0**level - 1.0)
        l, h = k * 2.0**-level, (k + 1.0) * 2.0**-level  # exact: k < 2^40
        la, aa = lam[pending], a[pending]
        ok = ((l == 0.0) | (_log_capital(la, aa, l) < target - margin)) & (
            (h == 1.0) | (_log_capital(la, aa, h) >= target + margin)
        )
        rows_ok = pending[ok]
        if level < top:  # the steps from this level to `top`, taken by these rows alone
            l, h = _bisection(la[ok], aa[ok], target, l[ok], h[ok], top - level, stop=False)
        else:
            l, h = l[ok], h[ok]
        lo[rows_ok], hi[rows_ok] = l, h
        pending = pending[~ok]
    if pending.size:  # from [0, 1] (level 0): every step taken
        lo[pending], hi[pending] = _bisection(
            lam[pending], a[pending], target, lo[pending], hi[pending], top, stop=False
        )
    return lo, hi, top


METHODS: Mapping[str, Callable[[np.ndarray, float], np.ndarray]] = MappingProxyType(
    {"hoeffding": hoeffding_upper, "bernstein": bernstein_upper, "betting": betting_upper}
)
DEFAULT_METHOD = "betting"


def upper_confidence_bound(
    x: ArrayLike, confidence: float = 0.95, *, lo: float = 0.0, hi: float = 1.0, method: str = DEFAULT_METHOD
) -> np.ndarray:
    """(1 - alpha) upper confidence bound on E[X] for iid X in the known range [lo, hi].

    Args:
      x: (..., n) samples (the last axis); every value must lie in [lo, hi].
      confidence: 1 - alpha, in (0, 1).
      lo, hi: the range, fixed before sampling (a range read off the sample is not valid).
      method: one of `METHODS`.

    Returns:
      (...,) float64 upper bounds, in [lo, hi].
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(confidence, bool) or not (0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"range [lo, hi] must be finite with hi > lo, got [{lo!r}, {hi!r}]")
    a = np.asarray(x, dtype=np.float64)
    if a.size and (np.nanmin(a) < lo or np.nanmax(a) > hi):
        raise ValueError(f"x must lie in [{lo:g}, {hi:g}], got range [{np.nanmin(a):g}, {np.nanmax(a):g}]")
    scaled = np.clip((a - lo) / (hi - lo), 0.0, 1.0)  # clip: only rounding of the division
    return lo + (hi - lo) * METHODS[method](scaled, 1.0 - float(confidence))
