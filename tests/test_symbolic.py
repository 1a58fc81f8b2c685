"""Tests for trm_bounds/symbolic.py: sympy expressions against the numeric module, and each derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _checks import assert_bound_holds
from hypothesis import example, given, note
from hypothesis import strategies as st

from trm_bounds import bounds as nb
from trm_bounds import symbolic

NAMES = (*nb.PUBLISHED_BOUNDS, "linear_dbar")


def _loop_sqrt_sum(T: int) -> float:
    """sum_{t=1..T} sqrt(t-1), one term at a time."""
    s = 0.0
    for t in range(1, T + 1):
        s += math.sqrt(t - 1)
    return s


def _loop_coupling(T: int, eps: float) -> float:
    s = 0.0
    for t in range(1, T + 1):
        s += min(1.0, (t - 1) * eps)
    return 4.0 * min(1.0, eps) * s


@given(
    T=st.integers(1, 120),
    delta=st.floats(0, 4),
    eps=st.floats(0, 1),
    dkl=st.floats(0, 4),
    dtv=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
@example(T=1, delta=0.0, eps=0.0, dkl=0.0, dtv=0.0, seed=0)
@example(T=2, delta=2.0, eps=1.0, dkl=2.0, dtv=1.0, seed=1)  # every cap exactly at its threshold
@example(T=101, delta=0.02, eps=0.01, dkl=1.0, dtv=0.5, seed=2)  # delta = 2/(T-1): last PM cap at 1
def test_lambdified_expressions_match_numeric_bounds(T, delta, eps, dkl, dtv, seed):
    dbar = np.random.default_rng(seed).uniform(0, 1, T) * min(1.0, eps, math.sqrt(delta / 2))
    b = nb.BoundInputs(T=T, eps=eps, delta=delta, dkl_seq=dkl, dtv_seq=dtv, dbar=dbar)
    for name in NAMES:
        sym = symbolic.lambdify_bound(name)(T, eps=eps, delta=delta, dkl_seq=dkl, dtv_seq=dtv, dbar=dbar)
        num = float(nb.BOUNDS[name](b))
        note(f"{name}: symbolic {sym!r} numeric {num!r}")
        assert sym == pytest.approx(num, rel=1e-10, abs=1e-12)


def test_lambdified_paper_setting():
    """T = 4096 through the term-by-term sympy route: the KL+TV column of v3 Table 1."""
    b = nb.BoundInputs.from_partial(4096, 1e-4, eps=5e-3, dkl_seq=0.01, dtv_seq=0.05)
    for name in ("pm_kl", "pm_tv", "coupling", "adaptive_star", "unified"):
        sym = symbolic.lambdify_bound(name)(
            4096, eps=5e-3, delta=1e-4, dkl_seq=0.01, dtv_seq=0.05, dbar=b.dbar
        )
        assert sym == pytest.approx(float(nb.BOUNDS[name](b)), rel=1e-12)


@given(T=st.integers(1, 300), delta=st.floats(0, 5))
def test_uncapped_pm_expression_is_the_plain_sum(T, delta):
    uncapped = symbolic.lambdify_bound("pm_kl", capped=False)(T, delta=delta)
    assert uncapped == pytest.approx(2.0 * delta * _loop_sqrt_sum(T), rel=1e-12, abs=1e-300)
    assert_bound_holds(nb.pm_kl(T, delta), uncapped, "capped <= uncapped")


@given(T=st.integers(1, 4000))
@example(T=1)
@example(T=4096)
def test_integral_bound_squeeze_against_a_loop(T):
    s = _loop_sqrt_sum(T)
    note(f"sum={s!r}")
    assert_bound_holds(2 / 3 * (T - 1) ** 1.5, s, "integral lower bound")
    assert_bound_holds(s, 2 / 3 * T**1.5 - math.sqrt(T) / 2, "integral upper bound")


@given(n=st.integers(1, 400), extra=st.integers(1, 3000), frac=st.floats(0, 0.999))
@example(n=1, extra=1, frac=0.0)  # eps = 1
@example(n=141, extra=3954, frac=0.4213)  # the paper's eps = 7.07e-3 at T = 4096
@example(n=200, extra=3896, frac=0.0)  # 1/eps an integer exactly (eps = 5e-3)
def test_coupling_linear_regime_is_4Teps_minus_about_2(n, extra, frac):
    eps = 1.0 / (n + frac)  # adversarial: 1/eps integer or just above
    T = math.floor(1 / eps) + extra  # T eps > 1 by construction
    if T * eps <= 1:
        T += 1
    B = _loop_coupling(T, eps)
    note(f"T={T} eps={eps!r} B={B!r} 4Teps={4 * T * eps!r}")
    assert float(nb.coupling(T, eps)) == pytest.approx(B, rel=1e-11)
    assert_bound_holds(B, 4 * T * eps - 2 * (1 + eps), "coupling <= 4 T eps - 2 (1 + eps)")
    assert_bound_holds(4 * T * eps - 2 * (1 + eps / 2) ** 2, B, "4 T eps - 2 (1 + eps/2)^2 <= coupling")


@given(T=st.integers(1, 3000), frac=st.floats(0, 1))
@example(T=2, frac=1.0)
def test_coupling_exact_closed_form_up_to_its_true_threshold(T, frac):
    eps = frac / max(T - 1, 1)  # (T-1) eps <= 1: every cap inactive (the exact regime)
    assert _loop_coupling(T, eps) == pytest.approx(2 * T * (T - 1) * eps**2, rel=1e-11, abs=1e-300)


@given(T=st.integers(2, 3000))
def test_pm_regime_threshold_is_2_over_T_minus_1(T):
    at = 2.0 / (T - 1)
    assert float(nb.pm_kl(T, at)) == pytest.approx(2 * at * _loop_sqrt_sum(T), rel=1e-11)  # no cap binds
    above = at * 1.01
    if above <= 2:
        assert float(nb.pm_kl(T, above)) < 2 * above * _loop_sqrt_sum(T)  # the last cap binds


@given(T=st.integers(1, 3000), frac=st.floats(0, 1))
@example(T=4096, frac=0.0)
@example(T=200, frac=1.0)
def test_worst_case_adaptive_sum_upper_bounds_the_loop(T, frac):
    delta = 2.0 / T * (1 + 50 * frac)  # T >= 2/delta by construction
    loop = sum(min(1.0, math.sqrt((T - t) * delta / 2)) for t in range(1, T + 1))
    formula = (T - 2 / delta) + 4 / (3 * delta)
    note(f"delta={delta!r} loop={loop!r} formula={formula!r}")
    assert_bound_holds(loop, formula, "adaptive worst-case sum")
    assert float(nb.adaptive_worst_case_sum(T, delta)) == pytest.approx(formula, rel=1e-12)


@given(eps=st.floats(1e-4, 1))
@example(eps=0.005)  # 1/eps = 200 exactly
@example(eps=math.sqrt(1e-4 / 2))
def test_coupling_cap_positions_against_a_scan(eps):
    terms = [min(1.0, (t - 1) * eps) for t in range(1, int(2 / eps) + 3)]
    first_capped = next(t for t, v in enumerate(terms, 1) if v == 1.0)
    last_below = max(t for t in range(1, len(terms) + 1) if (t - 1) * eps <= 1.0)
    assert int(nb.coupling_cap_position(eps)) == first_capped
    assert math.floor(1 / eps) + 1 == last_below  # the paper's t*: last t with (t-1) eps <= 1


def test_derivation_records_and_their_findings():
    ds = symbolic.derivations()
    assert len({d.key for d in ds}) == len(ds)
    for d in ds:
        assert d.status in ("holds", "fails", "imprecise"), d
        assert d.method in (
            "symbolic",
            "numeric check",
            "numeric check plus proof sketch",
        ) or d.method.startswith("exhaustive check up to T = "), d
        assert d.detail and d.statement
        if d.method.startswith("numeric"):
            assert "proof sketch" in d.method or "proof" not in d.detail.lower()
    status = {d.key: d.status for d in ds}
    assert status["pm_closed_forms"] == "imprecise"  # an upper estimate, not the value
    assert status["coupling_cap_position"] == "imprecise"
    assert status["coupling_le_4Teps"] == "holds"
    assert all(v != "fails" for v in status.values())
    assert symbolic.get_derivation("coupling_cap_position").values["first_capped_t"] == 143


def test_leading_exponents():
    ex = symbolic.leading_exponents()
    got = {n: (str(v["uncapped"]), str(v["capped"])) for n, v in ex.items()}
    assert got["classical_tv"] == ("2", "2")
    assert got["pm_kl"] == ("3/2", "1")
    assert got["mix_kl"] == ("1", "1")
    assert got["coupling"] == ("2", "1")


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="^name"):
        symbolic.bound_expr("pm_kl_nope")
    with pytest.raises(ValueError, match="^key"):
        symbolic.get_derivation("nope")
    with pytest.raises(ValueError, match="dbar"):
        symbolic.lambdify_bound("adaptive_kl")(5, delta=0.1, dbar=np.ones(4))
