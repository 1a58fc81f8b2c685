"""Tests for trm_bounds/bounds.py: published numbers, loop twins, properties, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _checks import assert_bound_holds
from hypothesis import example, given, note
from hypothesis import strategies as st

from trm_bounds import bounds as B
from trm_bounds.bounds import BoundInputs, evaluate_bounds

# ----------------------------------------------------------------- slow, obviously correct twins


def ref_pm_kl(T, delta):
    return (
        4
        * min(1, math.sqrt(delta / 2))
        * sum(min(1, math.sqrt((t - 1) * delta / 2)) for t in range(1, T + 1))
    )


def ref_pm_tv(T, eps, delta):
    return 4 * min(1, eps) * sum(min(1, math.sqrt((t - 1) * delta / 2)) for t in range(1, T + 1))


def ref_coupling(T, eps):
    return 4 * min(1, eps) * sum(min(1, (t - 1) * eps) for t in range(1, T + 1))


def ref_adaptive(dbar, eps, delta, which):
    T = len(dbar)
    total = 0.0
    for t in range(1, T + 1):
        m = T - t
        w_tv, w_kl = min(1, m * eps), min(1, math.sqrt(m * delta / 2))
        w = {"tv": w_tv, "kl": w_kl, "star": min(w_tv, w_kl)}[which]
        total += dbar[t - 1] * w
    return 4 * total


# ----------------------------------------------------------------- published numbers (THEORY.md section 6)
# v3 Table 1 at T = 4096; printed precision: integers for the classical row, one decimal elsewhere.
V3_KL_ONLY = dict(T=4096, delta=1e-4, dkl_seq=0.01)  # eps, D_TV^seq by Pinsker
V3_KL_TV = dict(T=4096, delta=1e-4, eps=5e-3, dkl_seq=0.01, dtv_seq=0.05)


def test_v3_table_kl_tv_column():
    b = evaluate_bounds(BoundInputs.from_partial(**V3_KL_TV))
    assert round(b["classical_tv"]) == 839
    assert round(b["coupling"], 1) == 79.9
    # printed 35.0 is the closed form 4/3 T^1.5 delta = 34.95; the exact capped sum is 34.946 -> 34.9
    assert round(b["pm_kl"], 2) == 34.95 and round(b["pm_kl"], 1) == 34.9
    assert round(float(B.pm_kl_closed_form(4096, 1e-4)), 1) == 35.0
    assert round(b["pm_tv"], 1) == 24.7
    assert round(b["mix_kl"], 1) == 8.2
    assert round(b["mix_tv"], 1) == 4.1
    assert round(b["adaptive_star"], 1) == 24.7  # printed "<= 24.7" at the worst case Dbar_t = eps
    assert round(b["unified"], 1) == 4.1


def test_v3_table_kl_only_column():
    b = evaluate_bounds(BoundInputs.from_partial(**V3_KL_ONLY))
    inp = BoundInputs.from_partial(**V3_KL_ONLY)
    assert round(inp.eps, 5) == 0.00707 and round(inp.dtv_seq, 4) == 0.0707
    assert round(b["classical_kl"]) == 1677
    assert round(b["coupling"], 1) == 113.8
    assert round(b["pm_kl"], 2) == 34.95 and round(b["pm_tv"], 2) == 34.95  # printed 35.0 (closed form)
    assert round(b["mix_kl"], 1) == 8.2 and round(b["mix_tv"], 1) == 8.2
    assert round(b["adaptive_star"], 2) == 34.95  # printed "<= 35.0"
    assert round(b["unified"], 1) == 8.2


def test_v2_table_numbers():
    # small divergence column (delta = 1e-4, D_KL^seq = 0.01); printed: 1,677 / 115.9 / 35.0 / 8.2
    assert round(float(B.classical_kl(4096, 1e-4))) == 1677
    assert round(float(B.linear(4096, math.sqrt(1e-4 / 2))), 1) == 115.9
    assert round(float(B.pm_kl_closed_form(4096, 1e-4)), 1) == 35.0  # the exact sum: 34.946
    assert round(float(B.mix_kl(4096, 1e-4, 0.01)), 1) == 8.2
    # large divergence (delta = 1, D_KL^seq = 1); printed 1.68e7 / 11,585 / 3.49e5 no cap / 11,582 / 8,192
    assert float(f"{float(B.classical_kl(4096, 1.0)):.3g}") == 1.68e7
    assert round(float(B.linear(4096, math.sqrt(0.5)))) == 11585
    assert float(f"{float(B.pm_kl_nocap(4096, 1.0)):.3g}") == 3.49e5  # the closed form gives 3.50e5
    assert round(float(B.pm_kl_nocap(4096, 1.0) / B.pm_kl(4096, 1.0))) == 30  # "about 30x"
    assert round(float(B.pm_kl(4096, 1.0))) == 11582
    assert round(float(B.mix_kl(4096, 1.0, 1.0))) == 8192


def test_v3_coupling_worked_check():
    eps = 7.07e-3  # printed: t* = 142, sum = 4024.8, B = 113.8
    s = B._capped_linear_sum(np.int64(4096), np.float64(eps))
    assert round(float(s), 1) == 4024.8
    assert round(float(B.coupling(4096, eps)), 1) == 113.8
    assert int(B.coupling_cap_position(eps)) == 143  # first capped t; the paper's floor(1/eps)+1 = 142


# ----------------------------------------------------------------- fixtures: same ingredients, same bounds
def test_fixture_bounds_from_their_ingredients(expected):
    for name, v in expected.items():
        if "bounds" not in v or "dtv_seq" not in v:
            continue
        b = BoundInputs(
            T=v["T"],
            eps=v["eps"],
            delta=v["delta"],
            dkl_seq=v["dkl_seq"],
            dtv_seq=v["dtv_seq"],
            dbar=v["dbar"],
        )
        got = evaluate_bounds(b)
        for key, want in v["bounds"].items():
            assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-300), (name, key)


# ----------------------------------------------------------------- vectorized vs loop
@given(T=st.integers(1, 400), delta=st.floats(0, 5), eps=st.floats(0, 1))
@example(T=1, delta=0.0, eps=0.0)
@example(T=1, delta=math.inf, eps=1.0)
@example(T=200, delta=2 / 37, eps=1 / 37)  # caps switch exactly on an integer
@example(T=4096 // 16, delta=1e-4, eps=5e-3)
def test_capped_sums_match_loop(T, delta, eps):
    if math.isinf(delta):
        assert float(B.pm_kl(T, delta)) == 4.0 * (T - 1)
        return
    assert float(B.pm_kl(T, delta)) == pytest.approx(ref_pm_kl(T, delta), rel=1e-12, abs=1e-300)
    assert float(B.pm_tv(T, eps, delta)) == pytest.approx(ref_pm_tv(T, eps, delta), rel=1e-12, abs=1e-300)
    assert float(B.coupling(T, eps)) == pytest.approx(ref_coupling(T, eps), rel=1e-12, abs=1e-300)


@given(
    dbar=st.lists(st.floats(0, 1), min_size=1, max_size=60),
    eps=st.floats(0, 1),
    delta=st.floats(0, 10),
)
@example(dbar=[1.0], eps=1.0, delta=10.0)
def test_adaptive_match_loop(dbar, eps, delta):
    d = np.array(dbar)
    assert float(B.adaptive_kl(d, delta)) == pytest.approx(
        ref_adaptive(dbar, eps, delta, "kl"), rel=1e-12, abs=1e-300
    )
    assert float(B.adaptive_tv(d, eps)) == pytest.approx(
        ref_adaptive(dbar, eps, delta, "tv"), rel=1e-12, abs=1e-300
    )
    star = float(B.adaptive_star(d, eps, delta))
    assert star == pytest.approx(ref_adaptive(dbar, eps, delta, "star"), rel=1e-12, abs=1e-300)
    assert_bound_holds(star, min(float(B.adaptive_kl(d, delta)), float(B.adaptive_tv(d, eps))), "star <= min")


def test_broadcasting_and_large_T():
    T = np.array([1, 10, 100, 10**6])
    delta = np.array([[1e-4], [1e-2]])
    out = B.pm_kl(T, delta)
    assert out.shape == (2, 4)
    assert out[0, 2] == pytest.approx(ref_pm_kl(100, 1e-4), rel=1e-12)
    assert out[1, 1] == pytest.approx(ref_pm_kl(10, 1e-2), rel=1e-12)
    # T = 1e6, every cap inactive: pm_kl = 4 (delta/2) sum_{k<T} sqrt k, against the exactly rounded sum
    big = float(B.pm_kl(10**6, 1e-12))
    assert big == pytest.approx(2e-12 * math.fsum(math.sqrt(k) for k in range(10**6)), rel=1e-15)
    assert B.coupling(np.arange(1, 5), 0.5).shape == (4,)
    # T = 1e12 costs O(1) memory (no table over t): uncapped, pm_kl = 2 delta sum_{k<T} sqrt(k)
    huge = float(B.pm_kl(10**12, 1e-30))
    assert huge == pytest.approx(2e-30 * (2 / 3 * 1e18 - 0.5e6), rel=1e-12)


# ----------------------------------------------------------------- properties
@given(T=st.integers(1, 5000), d1=st.floats(0, 4), d2=st.floats(0, 4), e1=st.floats(0, 1), e2=st.floats(0, 1))
def test_monotone_in_delta_and_eps(T, d1, d2, e1, e2):
    dlo, dhi = sorted((d1, d2))
    elo, ehi = sorted((e1, e2))
    for f in (B.pm_kl, B.classical_kl):
        assert_bound_holds(f(T, dlo), f(T, dhi), f"{f.__name__} monotone in delta")
    for f in (B.coupling, B.classical_tv, B.linear):
        assert_bound_holds(f(T, elo), f(T, ehi), f"{f.__name__} monotone in eps")
    assert_bound_holds(B.pm_tv(T, elo, dlo), B.pm_tv(T, ehi, dhi), "pm_tv monotone")
    assert_bound_holds(B.mix_tv(T, elo, dlo / 4), B.mix_tv(T, ehi, dhi / 4), "mix_tv monotone")


@given(T1=st.integers(1, 3000), T2=st.integers(1, 3000), delta=st.floats(0, 3), eps=st.floats(0, 1))
def test_monotone_in_T(T1, T2, delta, eps):
    lo, hi = sorted((T1, T2))
    b_lo = evaluate_bounds(BoundInputs.from_partial(lo, delta, eps, dkl_seq=0.01))
    b_hi = evaluate_bounds(BoundInputs.from_partial(hi, delta, eps, dkl_seq=0.01))
    for key in B.PUBLISHED_BOUNDS:
        note(f"{key}: {b_lo[key]!r} -> {b_hi[key]!r}")
        assert_bound_holds(b_lo[key], b_hi[key], f"{key} monotone in T")


@given(T=st.integers(1, 2000), delta=st.floats(0, 4), frac=st.floats(0, 1))
@example(T=1, delta=0.0, frac=1.0)
def test_classical_tv_below_classical_kl_under_pinsker(T, delta, frac):
    eps = frac * min(1.0, math.sqrt(delta / 2))  # the regime eps <= sqrt(delta/2), by construction
    assert_bound_holds(B.classical_tv(T, eps), B.classical_kl(T, delta), "classical_tv <= classical_kl")


@given(T=st.integers(1, 10_000), frac=st.floats(0.0, 1.0))
@example(T=1, frac=1.0)
@example(T=4096, frac=0.2048)  # delta = 1e-4
def test_pm_below_closed_forms_when_delta_small(T, frac):
    delta = frac * 2.0 / T  # delta <= 2/T by construction
    eps = math.sqrt(delta / 2) * frac
    assert_bound_holds(B.pm_kl(T, delta), B.pm_kl_closed_form(T, delta), "pm_kl <= closed form")
    assert_bound_holds(B.pm_tv(T, eps, delta), B.pm_tv_closed_form(T, eps, delta), "pm_tv <= closed form")


@given(
    T=st.integers(1, 5000),
    delta=st.floats(0, 2),
    dkl=st.floats(0, 2),
    eps=st.floats(0, 1),
    dtv=st.floats(0, 1),
)
def test_mixed_closed_forms_exact_when_caps_inactive(T, delta, dkl, eps, dtv):
    assert float(B.mix_kl(T, delta, dkl)) == pytest.approx(
        float(B.mix_kl_closed_form(T, delta, dkl)), rel=1e-12
    )
    assert float(B.mix_tv(T, eps, dtv)) == pytest.approx(float(B.mix_tv_closed_form(T, eps, dtv)), rel=1e-12)


@given(T=st.integers(1, 5000), x=st.floats(0, 1))
def test_coupling_regimes(T, x):
    eps = x / T  # T eps <= 1: exact quadratic form
    assert float(B.coupling(T, eps)) == pytest.approx(2 * T * (T - 1) * eps**2, rel=1e-12, abs=1e-300)
    eps_big = min(1.0, (1 + x * 50) / T)  # T eps >= 1
    assert_bound_holds(B.coupling(T, eps_big), 4 * T * eps_big + 2, "coupling <= 4 T eps + 2")


@given(T=st.integers(1, 500), delta=st.floats(0, 4), eps=st.floats(0, 1))
def test_recovery_identities(T, delta, eps):
    # Dbar_t = min(1, sqrt(delta/2)) turns B_Adap^KL into B_PM^KL (index reversal t -> T+1-t)
    d = np.full(T, min(1.0, math.sqrt(delta / 2)))
    assert float(B.adaptive_kl(d, delta)) == pytest.approx(float(B.pm_kl(T, delta)), rel=1e-12, abs=1e-300)
    d = np.full(T, eps)  # Dbar_t = eps turns B_Adap^TV into B_Coup
    assert float(B.adaptive_tv(d, eps)) == pytest.approx(float(B.coupling(T, eps)), rel=1e-12, abs=1e-300)


@given(
    T=st.integers(1, 300),
    delta=st.floats(0, 4),
    eps=st.floats(0, 1),
    dkl=st.floats(0, 4),
    dtv=st.floats(0, 1),
)
def test_unified_is_the_min(T, delta, eps, dkl, dtv):
    b = BoundInputs.from_partial(T, delta, eps, dkl, dtv)
    out = evaluate_bounds(b)
    assert out["unified"] == min(out[k] for k in B.UNIFIED_OF)
    assert out["unified_v2"] == min(out[k] for k in B.UNIFIED_V2_OF)


def test_ln_trm_weights_and_score():
    T, eps, delta = 6, 0.05, 0.01
    w3 = B.ln_trm_weights(T, eps, delta, "v3")
    w2 = B.ln_trm_weights(T, None, delta, "v2")
    for t in range(1, T + 1):
        m = T - t
        assert w2[t - 1] == pytest.approx(min(1, math.sqrt(m * delta / 2)), abs=1e-15)
        assert w3[t - 1] == pytest.approx(min(1, m * eps, math.sqrt(m * delta / 2)), abs=1e-15)
    assert float(B.ln_trm_Z(T, eps, delta)) == pytest.approx(w3.sum())
    rho = np.array([[1.0, 1.2, 0.9, 1.0, 1.0, 3.0]])
    assert float(B.ln_trm_score(rho, eps, delta)[0]) == pytest.approx(float(np.sum(np.abs(rho - 1) * w3)))
    assert float(B.ln_trm_bound(0.25)) == 0.5


# ----------------------------------------------------------------- registry and records
def test_registry_contract():
    assert B.PUBLISHED_BOUNDS == (
        "classical_tv", "classical_kl", "linear", "pm_kl", "pm_tv", "mix_kl", "mix_tv",
        "coupling", "adaptive_kl", "adaptive_tv", "adaptive_star", "unified",
    )  # fmt: skip
    with pytest.raises(ValueError, match="unknown bound 'nope'"):
        B.get_bound("nope")
    with pytest.raises(ValueError, match="published"):
        B.register_bound("pm_kl", lambda b: 0.0)
    B.register_bound("_test_half_pm_kl", lambda b: 0.5 * float(B.pm_kl(b.T, b.delta)), replace=True)
    try:
        out = evaluate_bounds(BoundInputs.from_partial(10, 0.01))
        assert out["_test_half_pm_kl"] == out["pm_kl"] / 2  # a halving is exact in float64
        with pytest.raises(ValueError, match="already registered"):
            B.register_bound("_test_half_pm_kl", lambda b: 0.0)
    finally:  # the registry is process-wide: later tests (and CLI outputs) must not see this bound
        B._BOUNDS.pop("_test_half_pm_kl")
    assert "_test_half_pm_kl" not in B.BOUNDS


def test_inputs_record_provenance_and_immutability():
    b = BoundInputs.from_partial(8, 0.02)
    assert b.sources["eps"].startswith("pinsker") and b.eps == pytest.approx(0.1)
    assert b.sources["dkl_seq"].startswith("worst_case") and b.dkl_seq == pytest.approx(0.16)
    assert b.sources["dtv_seq"].startswith("pinsker")
    assert b.sources["dbar"].startswith("worst_case") and np.all(b.dbar == b.eps)
    with pytest.raises(AttributeError):
        b.eps = 0.5
    with pytest.raises(ValueError):
        b.dbar[0] = 1.0
    with pytest.raises(TypeError):
        b.sources["eps"] = "given"


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: B.pm_kl(0, 0.1), "T"),
        (lambda: B.pm_kl(2.5, 0.1), "T"),
        (lambda: B.pm_kl(4, -0.1), "delta"),
        (lambda: B.pm_kl(4, float("nan")), "delta"),
        (lambda: B.coupling(4, 1.5), "eps"),
        (lambda: B.mix_tv(4, 0.1, 2.0), "dtv_seq"),
        (lambda: B.mix_kl(4, 0.1, -1.0), "dkl_seq"),
        (lambda: B.adaptive_kl([0.1, float("nan")], 0.1), "dbar"),
        (lambda: B.adaptive_kl([], 0.1), "dbar"),
        (lambda: BoundInputs(T=3, eps=0.1, delta=0.1, dkl_seq=0.1, dtv_seq=0.1, dbar=[0.1, 0.1]), "dbar"),
        (
            lambda: BoundInputs(
                T=3, eps=0.1, delta=0.1, dkl_seq=0.1, dtv_seq=0.1, dbar=[0.1] * 3, sources={"eps": "?"}
            ),
            "sources",
        ),
        (lambda: B.ln_trm_weights(3, 0.1, 0.1, "v9"), "version"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()


@given(n=st.integers(0, 20_000))
@example(n=255)
@example(n=256)
@example(n=10**6)
def test_sum_of_square_roots_to_rounding(n):
    # the table / Euler-Maclaurin switch behind every PM bound, against an exactly rounded sum;
    # the expansion is six float64 operations: within 4 ulp (3.4 ulp seen at worst for n <= 2e5;
    # rel=4e-16 failed at n = 538, 2 ulp)
    want = math.fsum(math.sqrt(k) for k in range(n))
    assert float(B._sum_sqrt(n)) == pytest.approx(want, rel=4 * 2.0**-52, abs=0)


def test_from_partial_labels_given_and_derived_values():
    b = BoundInputs.from_partial(
        8,
        0.02,
        dtv_seq=0.3,
        source={"delta": "observed: max KL", "dtv_seq": "assumed: user"},
        derived_notes={"eps": "valid only if delta holds globally", "dbar": "not controlled"},
    )
    assert b.eps == pytest.approx(0.1, rel=1e-15) and b.dkl_seq == pytest.approx(0.16, rel=1e-15)
    assert b.dtv_seq == 0.3 and list(b.dbar) == [b.eps] * 8
    assert dict(b.sources) == {
        "delta": "observed: max KL",
        "eps": "pinsker: min(1, sqrt(delta/2)); valid only if delta holds globally",
        "dkl_seq": "worst_case: T*delta (chain rule)",
        "dtv_seq": "assumed: user",
        "dbar": "worst_case: Dbar_t = eps for every t; not controlled",
    }
    assert dict(BoundInputs.from_partial(3, 0.1, eps=0.2, source="given").sources)["eps"] == "given"
    with pytest.raises(ValueError, match="^derived_notes"):
        BoundInputs.from_partial(3, 0.1, derived_notes={"delta": "x"})
    with pytest.raises(ValueError, match="^source"):
        BoundInputs.from_partial(3, 0.1, source={"epsilon": "given"})
