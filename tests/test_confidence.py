"""Tests for trm_bounds/confidence.py: validity conditions, scaling, monotonicity, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from trm_bounds.confidence import (
    METHODS,
    bernstein_upper,
    betting_upper,
    hoeffding_upper,
    upper_confidence_bound,
)

samples = st.lists(st.floats(0.0, 1.0), min_size=2, max_size=60)


def _slow_betting_log_capital(x, alpha, m, c=0.9):
    """log K_n(m) with the bets written out one by one (the sample already permuted)."""
    n = len(x)
    total, mus, s2 = 0.0, [], 0.25
    for i, xi in enumerate(x, start=1):
        lam = min(c, math.sqrt(2 * math.log(1 / alpha) / (n * s2)))
        total += math.log1p(lam * (m - xi))
        mus.append((0.5 + sum(x[:i])) / (i + 1))
        s2 = (0.25 + sum((x[j] - mus[j]) ** 2 for j in range(i))) / (i + 1)
    return total


@given(x=samples, alpha=st.floats(0.001, 0.5))
def test_betting_root_is_the_first_rejected_mean(x, alpha):
    a = np.array(x)
    u = float(betting_upper(a, alpha))
    perm = np.random.default_rng(0).permutation(len(a))
    xs = list(a[perm])
    target = math.log(1 / alpha)
    note(f"u={u!r}")
    if u < 1.0:
        assert _slow_betting_log_capital(xs, alpha, u) >= target - 1e-9
        assert _slow_betting_log_capital(xs, alpha, max(0.0, u - 1e-6)) < target + 1e-9
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
    with pytest.raises(ValueError, match="alpha"):
        hoeffding_upper([0.1, 0.2], 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        betting_upper([0.1, 1.2], 0.05)
    with pytest.raises(ValueError, match="at least 2"):
        bernstein_upper([0.1], 0.05)
    with pytest.raises(ValueError, match="NaN"):
        betting_upper([0.1, float("nan")], 0.05)
    with pytest.raises(ValueError, match="method"):
        upper_confidence_bound([0.1], method="chebyshev")
    with pytest.raises(ValueError, match="x must lie in"):
        upper_confidence_bound([3.0], hi=2.0)
    with pytest.raises(ValueError, match="confidence"):
        upper_confidence_bound([0.1], confidence=1.0)
