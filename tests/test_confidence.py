"""Tests for trm_bounds/confidence.py: validity conditions, scaling, monotonicity, coverage."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from trm_bounds.confidence import (
    BETTING_MAX_BET,
    METHODS,
    _betting_bets,
    bernstein_upper,
    betting_upper,
    hoeffding_upper,
    upper_confidence_bound,
)

samples = st.lists(st.floats(0.0, 1.0), min_size=2, max_size=60)


def _slow_bets(x, alpha, c=0.9):
    """The bets lambda_i written out one by one from x_1..x_{i-1} (running sums, O(n))."""
    n = len(x)
    bets, total, sq, s2 = [], 0.0, 0.0, 0.25
    for i, xi in enumerate(x, start=1):
        bets.append(min(c, math.sqrt(2 * math.log(1 / alpha) / (n * s2))))
        total += xi
        mu_i = (0.5 + total) / (i + 1)
        sq += (xi - mu_i) ** 2
        s2 = (0.25 + sq) / (i + 1)
    return bets


def _slow_betting_log_capital(x, alpha, m, c=0.9):
    """log K_n(m) = sum_i log(1 + lambda_i (m - x_i)), the sample already permuted."""
    return sum(math.log1p(lam * (m - xi)) for lam, xi in zip(_slow_bets(x, alpha, c), x))


@given(x=samples, alpha=st.floats(0.001, 0.5))
def test_betting_root_is_the_first_rejected_mean(x, alpha):
    a = np.array(x)
    u = float(betting_upper(a, alpha))
    perm = np.random.default_rng(0).permutation(len(a))
    xs = list(a[perm])
    target = math.log(1 / alpha)
    note(f"u={u!r}")
    if u < 1.0:  # K_n(U) >= 1/alpha (U is rejected) and U is the first rejected mean to 1e-7 relative
        assert _slow_betting_log_capital(xs, alpha, u) >= target - 1e-9
        assert _slow_betting_log_capital(xs, alpha, u * (1 - 1e-7)) < target
    else:  # U = 1 only when no mean in [0, 1] is rejected
        assert _slow_betting_log_capital(xs, alpha, 1.0) < target + 1e-12
    assert 0.0 <= u <= 1.0


@given(x=samples, alpha=st.floats(0.001, 0.5), lo=st.floats(-10, 10), width=st.floats(0.1, 100))
def test_every_method_is_scale_and_shift_equivariant(x, alpha, lo, width):
    a = np.array(x)
    for m in METHODS:
        u01 = float(upper_confidence_bound(a, 1 - alpha, method=m))
        u = float(upper_confidence_bound(lo + width * a, 1 - alpha, lo=lo, hi=lo + width, method=m))
        assert u == pytest.approx(lo + width * u01, rel=1e-9, abs=1e-9 * width)


@given(x=samples, a1=st.floats(0.001, 0.4), a2=st.floats(0.001, 0.4))
@example(x=[0.0] * 10, a1=0.01, a2=0.1)
def test_uppers_grow_with_confidence_and_stay_in_range(x, a1, a2):
    lo_a, hi_a = min(a1, a2), max(a1, a2)
    a = np.array(x)
    for f in (hoeffding_upper, bernstein_upper, betting_upper):
        strict, loose = float(f(a, lo_a)), float(f(a, hi_a))
        assert loose <= strict + 1e-12
        assert 0.0 <= loose <= 1.0
        if f is not betting_upper:  # mean + a non-negative width (betting may end below the mean)
            assert a.mean() - 1e-12 <= loose


def test_hoeffding_and_bernstein_closed_forms():
    """The printed formulas, with the mean and the unbiased variance worked out by hand."""
    alpha = 0.05
    x = np.array([0.1] * 50 + [0.3] * 50)  # mean 0.2, V_n = 100 * 0.01 / 99
    h = math.sqrt(math.log(1 / alpha) / (2 * 100))
    assert float(hoeffding_upper(x, alpha)) == pytest.approx(0.2 + h, rel=1e-12)
    L = math.log(2 / alpha)
    b = math.sqrt(2 * (1 / 99) * L / 100) + 7 * L / (3 * 99)
    assert float(bernstein_upper(x, alpha)) == pytest.approx(0.2 + b, rel=1e-12)
    # n = 1: Hoeffding needs no second sample
    assert float(hoeffding_upper([0.25], 0.5)) == pytest.approx(0.25 + math.sqrt(math.log(2) / 2), rel=1e-12)


def test_betting_closed_form_at_n1():
    """n = 1: K_1(m) = 1 + lambda_1 (m - x), lambda_1 = min(c, sqrt(2 log(1/alpha) / (1/4)))."""
    alpha, x = 0.9, 0.5
    lam = min(BETTING_MAX_BET, math.sqrt(8 * math.log(1 / alpha)))
    root = x + (1 / alpha - 1) / lam
    u = float(betting_upper([x], alpha))
    assert u == pytest.approx(root, rel=1e-13)
    assert 1 + lam * (u - x) >= 1 / alpha  # the returned mean is rejected (the upper end of the bracket)
    assert float(betting_upper([0.0], 0.5)) == 1.0  # K_1(1) = 1.9 < 2: nothing rejected


def test_betting_root_is_tight_when_it_is_tiny():
    """All zeros, n = 1e5: U ~ 2e-6 is still the first rejected mean to 1e-11 relative."""
    alpha, n = 0.9, 100_000
    zeros = [0.0] * n
    u = float(betting_upper(np.zeros(n), alpha))
    target = math.log(1 / alpha)
    assert 0.0 < u < 1e-5
    assert _slow_betting_log_capital(zeros, alpha, u) >= target - 1e-14
    assert _slow_betting_log_capital(zeros, alpha, u * (1 - 1e-11)) < target


@given(x=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=30), i=st.integers(0, 29), new=st.floats(0, 1))
def test_betting_bets_are_predictable(x, i, new):
    """lambda_j depends on x_1..x_{j-1} only: changing x_i leaves lambda_1..lambda_i as they were."""
    i = i % len(x)
    a = np.array(x)
    lam = _betting_bets(a, 0.05, BETTING_MAX_BET)
    assert lam == pytest.approx(_slow_bets(x, 0.05), rel=1e-12)
    b = a.copy()
    b[i] = new
    assert np.array_equal(_betting_bets(b, 0.05, BETTING_MAX_BET)[: i + 1], lam[: i + 1])


def test_batch_axes_give_the_row_by_row_bounds():
    x = np.random.default_rng(1).beta(0.5, 3, size=(2, 3, 40))
    for f in METHODS.values():
        u = f(x, 0.1)
        assert u.shape == (2, 3)
        rows = np.array([[float(f(x[i, j], 0.1)) for j in range(3)] for i in range(2)])
        assert np.allclose(u, rows, rtol=1e-13, atol=0.0)


def test_float32_input_is_computed_in_float64():
    x32 = np.random.default_rng(2).random(50).astype(np.float32)
    x64 = x32.astype(np.float64)
    for m, f in METHODS.items():
        assert f(x32, 0.1).dtype == np.float64
        assert float(f(x32, 0.1)) == float(f(x64, 0.1))
        kw = {"lo": -0.3, "hi": 1.7, "method": m}
        assert float(upper_confidence_bound(x32, 0.9, **kw)) == float(upper_confidence_bound(x64, 0.9, **kw))


def test_upper_confidence_bound_maps_the_range_back():
    """Default range [0, 1]: the method itself. Range [lo, hi]: Hoeffding is
    min(hi, mean + (hi - lo) sqrt(log(1/alpha) / (2 n)))."""
    x = np.random.default_rng(3).random(30)
    for m, f in METHODS.items():
        assert float(upper_confidence_bound(x, 0.9, method=m)) == float(f(x, 0.1))
    y = 2.0 + 3.0 * x
    want = min(5.0, y.mean() + 3.0 * math.sqrt(math.log(10) / 60))
    got = float(upper_confidence_bound(y, 0.9, lo=2.0, hi=5.0, method="hoeffding"))
    assert got == pytest.approx(want, rel=1e-12)


def test_betting_is_warning_free():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        betting_upper(np.random.default_rng(4).random(20), 0.05)


def test_betting_coverage_survives_a_sorted_sample():
    """The caller's order may depend on the data (here: sorted ascending). Without the internal
    shuffle the bets would follow the sort and cover mu = 1/2 in ~2% of runs; with it, >= 1 - alpha."""
    rng = np.random.default_rng(5)
    alpha, reps = 0.3, 400
    x = np.sort(rng.random((reps, 256)), -1)
    cover = float(np.mean(betting_upper(x, alpha) >= 0.5))
    assert cover >= 1 - alpha - 3 * math.sqrt(alpha * (1 - alpha) / reps)


def test_coverage_on_small_simulations():
    """Observed coverage >= 1 - alpha - 3 MC standard errors, 2000 repeats, three laws incl. rare spikes."""
    rng = np.random.default_rng(7)
    alpha, reps = 0.1, 2000
    laws = {
        "bernoulli(0.02)": (lambda s: (rng.random(s) < 0.02) * 1.0, 0.02),
        "beta(0.5, 20)": (lambda s: rng.beta(0.5, 20, s), 0.5 / 20.5),
        "spike": (lambda s: np.where(rng.random(s) < 0.01, 1.0, 0.001), 0.01 + 0.99 * 0.001),
    }
    se = math.sqrt(alpha * (1 - alpha) / reps)
    for name, (draw, mu) in laws.items():
        for n in (8, 64):
            x = draw((reps, n))
            for m, f in METHODS.items():
                cover = float(np.mean(f(x, alpha) >= mu))
                assert cover >= 1 - alpha - 3 * se, (name, n, m, cover)


def test_betting_beats_hoeffding_at_small_variance():
    x = np.random.default_rng(0).beta(0.5, 200, size=(50, 1024))
    hw = hoeffding_upper(x, 0.05) - x.mean(-1)
    bw = betting_upper(x, 0.05) - x.mean(-1)
    ew = bernstein_upper(x, 0.05) - x.mean(-1)
    assert np.all(bw < 0.2 * hw) and np.all(bw < ew)


def test_errors_name_the_argument():
    """Each message starts with the argument it is about."""
    for bad in (1.5, 0.0, 1.0, True):
        with pytest.raises(ValueError, match="^alpha "):
            hoeffding_upper([0.1, 0.2], bad)
    with pytest.raises(ValueError, match="^x must have a last axis"):
        hoeffding_upper(0.5, 0.1)
    with pytest.raises(ValueError, match=r"^x must lie in \[0, 1\]"):
        betting_upper([0.1, 1.2], 0.05)
    with pytest.raises(ValueError, match="^x needs at least 2"):
        bernstein_upper([0.1], 0.05)
    with pytest.raises(ValueError, match="^x contains NaN"):
        betting_upper([0.1, float("nan")], 0.05)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="^max_bet "):
            betting_upper([0.1, 0.2], 0.05, max_bet=bad)
    with pytest.raises(ValueError, match="^method must be one of hoeffding, bernstein, betting"):
        upper_confidence_bound([0.1], method="chebyshev")
    with pytest.raises(ValueError, match="^x must lie in"):
        upper_confidence_bound([3.0], hi=2.0)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="^confidence "):
            upper_confidence_bound([0.1], confidence=bad)
    for lo, hi in ((0.0, math.inf), (-math.inf, 1.0), (0.0, -1.0), (1.0, 1.0), (0.0, math.nan)):
        with pytest.raises(ValueError, match=r"^range \[lo, hi\]"):
            upper_confidence_bound([0.5], lo=lo, hi=hi)
