"""Tests for trm_bounds/divergences.py: exactness at extremes, numpy/torch parity, estimators."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from _checks import assert_bound_holds
from hypothesis import example, given, note, target
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trm_bounds import divergences as D


def ref_kl(p, q):
    """Plain KL(p || q) in exact rational arithmetic where possible (slow twin)."""
    total = 0.0
    for a, b in zip(p, q):
        if a == 0:
            continue
        if b == 0:
            return math.inf
        total += a * math.log(a / b)
    return total


def ref_tv(p, q):
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q))


logits = arrays(np.float64, st.integers(2, 6), elements=st.floats(-30, 30))


@given(a=logits, data=st.data())
@example(a=np.array([0.0, 0.0]), data=None)
def test_kl_tv_match_reference_on_moderate_logits(a, data):
    b = a + (data.draw(arrays(np.float64, a.shape, elements=st.floats(-5, 5))) if data else 0.0)
    la, lb = a - np.logaddexp.reduce(a), b - np.logaddexp.reduce(b)
    p, q = np.exp(la), np.exp(lb)
    kl, tv = float(D.token_kl(la, lb)), float(D.token_tv(la, lb))
    note(f"kl={kl!r} ref={ref_kl(p, q)!r}")
    assert kl == pytest.approx(ref_kl(p, q), rel=1e-9, abs=1e-13)
    assert tv == pytest.approx(ref_tv(p, q), rel=1e-9, abs=1e-15)
    assert kl >= 0 and 0 <= tv <= 1
    assert_bound_holds(tv, min(1.0, math.sqrt(kl / 2)), "Pinsker")
    target(tv / max(math.sqrt(kl / 2), 1e-300))


def test_zero_probabilities_and_disjoint_supports():
    ninf = -np.inf
    p = np.array([math.log(0.5), math.log(0.5), -np.inf])
    assert float(D.token_kl(p, p)) == 0.0 and float(D.token_tv(p, p)) == 0.0
    q = np.array([ninf, math.log(0.5), math.log(0.5)])
    assert float(D.token_kl(p, q)) == math.inf  # p > 0 = q
    assert float(D.token_tv(p, q)) == pytest.approx(0.5)
    disjoint_q = np.array([ninf, ninf, 0.0])
    assert float(D.token_kl(p, disjoint_q)) == math.inf
    assert float(D.token_tv(p, disjoint_q)) == 1.0
    # q has mass where p has none: finite KL (0 log 0/q = 0)
    r = np.log([0.25, 0.25, 0.5])
    assert float(D.token_kl(p, r)) == pytest.approx(math.log(2))


def test_underflowing_probability_still_counts_as_support():
    # p = e^-1000 rounds to 0 in float64 but is positive: q = 0 there makes KL = +inf
    a = np.array([0.0, -1000.0, -np.inf])
    b = np.array([0.0, -np.inf, -1000.0])
    assert float(D.token_kl(a, b)) == math.inf
    assert float(D.token_kl(b, a)) == math.inf
    c = np.array([-1000.0, 0.0])  # the mass swapped: KL = 1000 either way, finite
    assert float(D.token_kl(c, np.array([0.0, -1000.0]))) == pytest.approx(1000.0, rel=1e-12)
    assert float(D.token_kl(np.array([0.0, -1000.0]), c)) == pytest.approx(1000.0, rel=1e-12)


def test_huge_logits_exact_never_nan():
    a = np.array([1e4, -1e4, 0.0])
    b = np.array([-1e4, 1e4, 0.0])
    assert float(D.token_kl_from_logits(a, b)) == pytest.approx(2e4, rel=1e-12)
    assert float(D.token_tv_from_logits(a, b)) == 1.0
    c = np.array([1e4, 1e4 - 1e-3, -1e4])  # nearly equal large logits
    kl = float(D.token_kl_from_logits(c, c[::-1].copy()))
    assert math.isfinite(kl) and kl > 0


def test_tiny_divergence_keeps_relative_precision():
    # q = p (1 + eta v) with sum p v = 0: KL = eta^2/2 sum p v^2 + O(eta^3); TV = eta/2 sum p |v|
    p = np.array([0.5, 0.25, 0.25])
    v = np.array([1.0, -1.0, -1.0])
    for eta in (1e-6, 1e-9, 1e-12):
        la, lb = np.log(p), np.log(p) + np.log1p(eta * v)
        kl, tv = float(D.token_kl(la, lb)), float(D.token_tv(la, lb))
        assert kl == pytest.approx(0.5 * eta**2 * np.sum(p * v**2), rel=1e-5)
        assert tv == pytest.approx(0.5 * eta * np.sum(p * np.abs(v)), rel=1e-9)


def test_torch_and_numpy_agree_batched_and_dtype():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5)) * 3
    y = x + rng.normal(size=x.shape)
    kn = D.token_kl_from_logits(x, y)
    kt = D.token_kl_from_logits(torch.tensor(x), torch.tensor(y))
    assert isinstance(kn, np.ndarray) and kn.shape == (3, 4)
    assert isinstance(kt, torch.Tensor) and kt.dtype == torch.float64
    np.testing.assert_allclose(kt.numpy(), kn, rtol=1e-14)
    k16 = D.token_kl_from_logits(torch.tensor(x).to(torch.bfloat16), torch.tensor(y).to(torch.bfloat16))
    assert k16.dtype == torch.float64  # low precision inputs are computed in float64


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="logp_theta has shape"):
        D.token_kl(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="logp_roll contains NaN"):
        D.token_tv(np.array([np.nan, 0.0]), np.array([0.0, -np.inf]))
    with pytest.raises(ValueError, match=r"\+inf"):
        D.token_kl(np.array([np.inf, 0.0]), np.array([0.0, -np.inf]))
    with pytest.raises(ValueError, match="log_ratio contains NaN"):
        D.k3(np.array([np.nan]))
    with pytest.raises(ValueError, match="logits contains NaN"):
        D.token_kl_from_logits(np.array([np.nan, 0.0]), np.array([0.0, 0.0]))


@given(lr=st.floats(-50, 50))
@example(lr=0.0)
@example(lr=1e-12)
@example(lr=math.log(0.01))
def test_sample_estimators(lr):
    k1, k2, k3 = float(D.k1(lr)), float(D.k2(lr)), float(D.k3(lr))
    assert k1 == -lr
    assert k2 == pytest.approx(float(D.k2(-lr)))  # k2(rho) = k2(1/rho)
    assert k3 >= 0
    with mpmath.workdps(700):  # e^lr - 1 - lr in 700-digit arithmetic (the slow twin; lr may be 1e-300)
        exact = float(mpmath.exp(mpmath.mpf(lr)) - 1 - mpmath.mpf(lr))
    assert k3 == pytest.approx(exact, rel=1e-12, abs=1e-300)


def test_paper_estimator_numbers():
    # THEORY.md section 10 C16: k3(0.01) about 3.6; k2(0.01) = k2(100) about 10.6
    assert round(float(D.k3(math.log(0.01))), 1) == 3.6
    assert round(float(D.k2(math.log(0.01))), 1) == round(float(D.k2(math.log(100))), 1) == 10.6


def test_estimators_unbiased_for_kl():
    p = np.array([0.6, 0.3, 0.1])
    q = np.array([0.2, 0.5, 0.3])
    lr = np.log(q) - np.log(p)  # log rho for each token, rho = q/p
    kl = float(D.token_kl(np.log(p), np.log(q)))
    assert float(np.sum(p * D.k1(lr))) == pytest.approx(kl)
    assert float(np.sum(p * D.k3(lr))) == pytest.approx(kl)


def test_pinsker_helpers():
    assert float(D.pinsker_tv(0.02)) == pytest.approx(0.1)
    assert float(D.pinsker_tv(np.inf)) == 1.0
    assert float(D.pinsker_kl_lower(0.1)) == pytest.approx(0.02)
    with pytest.raises(ValueError):
        D.pinsker_tv(-1.0)


def test_blocked_evaluation_equals_unblocked():
    # > 4 * 2**16 elements takes the row-blocked path; each row's sum must be unchanged
    g = torch.Generator().manual_seed(0)
    a = torch.log_softmax(torch.randn(70_001, 5, generator=g, dtype=torch.float64), -1)
    b = torch.log_softmax(a + torch.randn(a.shape, generator=g, dtype=torch.float64), -1)
    a[3, 1] = -np.inf  # zeros inside the blocked path too
    assert torch.allclose(D.token_kl(a, b), D._kl_terms(a, b).sum(-1), rtol=1e-15, atol=0)
    assert torch.allclose(D.token_tv(a, b), 0.5 * D._tv_terms(a, b).sum(-1), rtol=1e-15, atol=0)
    x = D._kl_terms(a, b)
    assert torch.equal(D.sum_last(x), x[:, 0] + x[:, 1] + x[:, 2] + x[:, 3] + x[:, 4])
    lead = D.token_kl(a[:-1].reshape(7, 10_000, 5), b[:-1].reshape(7, 10_000, 5))
    assert torch.equal(lead.reshape(-1), D.token_kl(a, b)[:-1])


def test_log_softmax_keeps_rows_normalised_and_matches_torch_gradients():
    z = np.array([[0.0, -200.0, -5.0], [1e3, 0.0, -1e3], [0.0, 0.0, -np.inf], [0.3, 0.3, 0.1]])
    out = D.log_softmax(z)
    with mpmath.workdps(400):  # the slow twin: exact log-softmax of each entry
        for row, got in zip(z, out):
            lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(x)) for x in row if np.isfinite(x)))
            for x, g in zip(row, got):
                want = float(mpmath.mpf(x) - lse) if np.isfinite(x) else -math.inf
                assert g == pytest.approx(want, rel=1e-15, abs=1e-300)
    assert out[0, 0] == -math.log1p(math.exp(-5.0) + math.exp(-200.0))
    two = D.log_softmax(np.array([0.0, -200.0]))  # log p0 = -e^-200 = -1.4e-87; torch/numpy's form gives 0
    naive = torch.log_softmax(torch.tensor([0.0, -200.0], dtype=torch.float64), -1)
    assert two[0] == -math.exp(-200.0) and float(naive[0]) == 0.0
    zt = torch.tensor(z, requires_grad=True)
    w = torch.randn(z.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = D.log_softmax(zt)
    (g1,) = torch.autograd.grad((ours.masked_fill(torch.isinf(ours), 0) * w).sum(), zt)
    z2 = torch.tensor(z, requires_grad=True)
    ref = torch.log_softmax(z2, -1)
    (g2,) = torch.autograd.grad((ref.masked_fill(torch.isinf(ref), 0) * w).sum(), z2)
    assert torch.allclose(g1, g2, atol=1e-14)
    with pytest.raises(ValueError, match="finite entry"):
        D.log_softmax(np.array([-np.inf, -np.inf]))


@given(
    z=st.lists(st.floats(-3000, 3000), min_size=2, max_size=5),
    kill=st.lists(st.booleans(), min_size=5, max_size=5),
)
@example(z=[0.0, -188.3], kill=[False] * 5)
@example(z=[9.0, 5.674656088378108e-09], kill=[False] * 5)  # the max entry's error comes from the other's rounding
@example(z=[1e3, -1e3, 0.0], kill=[False, True, False, False, False])
def test_log_softmax_rows_sum_to_one_at_60_digits(z, kill):
    # the float64 artifact of trm_bounds/refined.py's docstring: the log1p form keeps tiny masses
    z = np.array(z)
    z = np.where(np.array(kill[: len(z)]) & (z < z.max()), -np.inf, z)
    out = D.log_softmax(z)
    span = float(np.ptp(z[np.isfinite(z)]))
    with mpmath.workdps(60 + int(span / 2.3)):  # enough digits to see masses e^-span next to 1
        m = max(mpmath.mpf(float(v)) for v in z)
        lse = m + mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - m) for v in z))
        for got, v in zip(out, z):
            want = mpmath.mpf(float(v)) - lse
            if v == -math.inf:
                assert got == -math.inf
                continue
            # a few ulps of the row's scale: each z_w - m is rounded (relative u) before exp, which
            # moves the log-sum-exp by sum_w p_w |z_w - m| u (the max entry's own z - m is 0)
            spread = mpmath.fsum(mpmath.exp(mpmath.mpf(float(w)) - lse) * abs(mpmath.mpf(float(w)) - m)
                                 for w in z if w != -math.inf)  # fmt: skip
            tol = 4e-16 * (abs(want) + abs(mpmath.mpf(float(v)) - m) + spread) + 1e-320
            assert abs(mpmath.mpf(float(got)) - want) <= tol, (got, want)
        top = int(np.argmax(out))
        small = mpmath.fsum(mpmath.exp(mpmath.mpf(float(g))) for v, g in enumerate(out) if v != top)
        defect = mpmath.expm1(mpmath.mpf(float(out[top]))) + small  # sum_v pi(v) - 1, without cancellation
        assert abs(defect) <= 1e-15 * small + mpmath.mpf(2) ** -1074 * 8


def test_log_softmax_rejects_bad_rows():
    for bad in (
        np.array([np.nan, 0.0]),
        np.array([np.inf, 0.0]),
        np.array([-np.inf, -np.inf]),
        np.float64(1.0),
    ):
        with pytest.raises(ValueError, match="^logits"):
            D.log_softmax(bad)
