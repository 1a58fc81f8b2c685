"""`betting_upper` skips the first levels of its bisection (`_bisection_start`) without changing a
bit: compared with the plain bisection from [0, 1] (the code it replaced, kept here) on random
and adversarial samples, every shape, bet cap and alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm_bounds import confidence as C


def plain_betting_upper(x, alpha, *, max_bet=C.BETTING_MAX_BET, seed=0):
    """The bisection from [0, 1] on the whole (..., n) array, as betting_upper computed it before."""
    a = np.asarray(x, dtype=np.float64)
    n = a.shape[-1]
    a = a[..., np.random.default_rng(seed).permutation(n)]
    lam = C._betting_bets(a, alpha, max_bet)
    target = math.log(1.0 / alpha)
    log_k = lambda m: np.log1p(lam * (m[..., None] - a)).sum(-1)  # noqa: E731
    lo, hi = np.zeros(a.shape[:-1]), np.ones(a.shape[:-1])
    done = log_k(hi) < target
    for _ in range(C._BISECTIONS):
        mid = 0.5 * (lo + hi)
        rej = log_k(mid) >= target
        hi = np.where(rej, mid, hi)
        lo = np.where(rej, lo, mid)
        if np.all(hi - lo <= 4 * np.finfo(np.float64).eps * np.maximum(hi, 1e-300)):
            break
    return np.where(done, 1.0, hi)


def _same(u, v) -> bool:
    return u.shape == v.shape and np.array_equal(u.view(np.int64), v.view(np.int64))


LAWS = {
    "beta mean 1e-3": lambda rng, s: rng.beta(0.05, 50, s),
    "spikes": lambda rng, s: np.where(rng.random(s) < 0.01, 1.0, 1e-3),
    "bernoulli": lambda rng, s: (rng.random(s) < 0.5) * 1.0,
    "uniform": lambda rng, s: rng.random(s),
    "zeros": lambda rng, s: np.zeros(s),
    "ones": lambda rng, s: np.ones(s),
    "tiny": lambda rng, s: rng.random(s) * 1e-12,
    "near 1": lambda rng, s: 1.0 - rng.random(s) * 1e-9,
    "atoms": lambda rng, s: rng.choice([0.0, 1.0, 0.5, 1e-300, 5e-324], s),
}


@pytest.mark.parametrize("law", list(LAWS))
@pytest.mark.parametrize("shape", [(1,), (7,), (300, 16), (60, 256), (40, 1024), (2, 3, 33), (0, 4)])
def test_betting_upper_equals_the_plain_bisection(law, shape):
    rng = np.random.default_rng(abs(hash((law, shape))) % 2**32)
    x = LAWS[law](rng, shape)
    for alpha, max_bet in ((0.05, 0.9), (1e-6, 0.999), (0.5, 0.3)):
        assert _same(
            C.betting_upper(x, alpha, max_bet=max_bet), plain_betting_upper(x, alpha, max_bet=max_bet)
        )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
    st.integers(1, 30),
    st.floats(1e-8, 0.9),
    st.floats(0.05, 0.999),
)
def test_betting_upper_equals_the_plain_bisection_on_drawn_samples(values, rows, alpha, max_bet):
    rng = np.random.default_rng(len(values) * 31 + rows)
    x = np.array(values)[rng.integers(0, len(values), (rows, 3 * len(values)))]  # repeated values: ties
    assert _same(C.betting_upper(x, alpha, max_bet=max_bet), plain_betting_upper(x, alpha, max_bet=max_bet))


def test_start_skips_levels_and_rows_it_doubts_take_the_steps():
    """The start is used (a bracket of width 2^-level, level > 0) and is the bisection's own."""
    rng = np.random.default_rng(3)
    a = rng.beta(0.5, 50, (200, 256))
    lam = C._betting_bets(a, 0.05, C.BETTING_MAX_BET)
    target = math.log(20.0)
    lo, hi, level = C._bisection_start(lam, a, target, C.BETTING_MAX_BET)
    assert 16 <= level <= 40
    assert np.all(hi - lo == 2.0**-level)
    lo0, hi0 = C._bisection(lam, a, target, np.zeros(200), np.ones(200), level, stop=False)
    assert np.array_equal(lo, lo0) and np.array_equal(hi, hi0)


def test_rounding_bound_grows_with_n_and_the_bet_cap():
    e = C._capital_rounding
    assert 0 < e(16, 0.9) < e(1024, 0.9) < e(1024, 0.999)
    assert e(1024, 0.9) < 1e-8  # far below the log(1/alpha) scale of the test
