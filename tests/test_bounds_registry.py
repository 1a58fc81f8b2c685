"""The bound registry's validate-once path (`trm_bounds.bounds._registered`, `_value`) gives, bit for
bit, what the public functions give on the same fields (the old registry called them directly)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trm_bounds.refined as R
from trm_bounds import bounds as B
from trm_bounds.exact_batch import BatchInputs, evaluate_bounds_batch

PUBLIC = {  # key -> (public function, BoundInputs fields it reads): the old registry's lambdas
    "classical_tv": (B.classical_tv, ("T", "eps")),
    "classical_kl": (B.classical_kl, ("T", "delta")),
    "linear": (B.linear, ("T", "eps")),
    "pm_kl": (B.pm_kl, ("T", "delta")),
    "pm_tv": (B.pm_tv, ("T", "eps", "delta")),
    "mix_kl": (B.mix_kl, ("T", "delta", "dkl_seq")),
    "mix_tv": (B.mix_tv, ("T", "eps", "dtv_seq")),
    "coupling": (B.coupling, ("T", "eps")),
    "adaptive_kl": (B.adaptive_kl, ("dbar", "delta")),
    "adaptive_tv": (B.adaptive_tv, ("dbar", "eps")),
    "adaptive_star": (B.adaptive_star, ("dbar", "eps", "delta")),
    "linear_dbar": (B.linear_dbar, ("dbar",)),
    "pm_kl_nocap": (B.pm_kl_nocap, ("T", "delta")),
}
REFINED = {r: (getattr(R, r), PUBLIC[p][1]) for p, r in R.REFINED_OF.items() if p != "unified"}


def _bits(x) -> int:
    return int(np.float64(x).view(np.int64))


def _reference(b: B.BoundInputs) -> dict[str, float]:
    """Every built-in key computed the old way: public functions on the fields, minima recomputed."""
    ref = {k: float(f(*[getattr(b, a) for a in args])) for k, (f, args) in {**PUBLIC, **REFINED}.items()}
    ref["unified"] = float(min(ref[n] for n in B.UNIFIED_OF))
    ref["unified_v2"] = float(min(ref[n] for n in B.UNIFIED_V2_OF))
    ref["unified_refined"] = float(min(ref[R.REFINED_OF[n]] for n in B.UNIFIED_OF))
    return ref


TV = st.one_of(st.sampled_from([0.0, 1.0, 5e-324, 1e-300, 0.5, 1e-8]), st.floats(0.0, 1.0))
KL = st.one_of(st.sampled_from([0.0, math.inf, 1e-300, 1e-3, 2.0, 50.0]), st.floats(0.0, 1e3))
HORIZON = st.one_of(st.sampled_from([1, 2, 255, 256, 257, 10**6, 2**53]), st.integers(1, 300))


@st.composite
def bound_inputs(draw) -> B.BoundInputs:
    T = draw(HORIZON)
    eps, delta = draw(TV), draw(KL)
    if T <= 300 and draw(st.booleans()):
        dbar = np.array(draw(st.lists(TV, min_size=T, max_size=T)))
    else:
        dbar = draw(TV)  # one number: a uniform dbar (closed forms)
    return B.BoundInputs(T=T, eps=eps, delta=delta, dkl_seq=draw(KL), dtv_seq=draw(TV), dbar=dbar)


@settings(max_examples=150, deadline=None)
@given(bound_inputs(), st.sampled_from([0.5, 1.0, 3.0]))
def test_registry_matches_public_functions_bit_for_bit(b, reward_range):
    ref = _reference(b)
    first = B.evaluate_bounds(b, reward_range=reward_range)
    again = B.evaluate_bounds(b, reward_range=reward_range)  # served from the values kept on b
    assert list(first) == list(B.BOUNDS) == list(again)
    for k, v in first.items():
        want = ref[k] * B.reward_range_factor(k, reward_range)
        assert _bits(v) == _bits(want), (k, v, want)
        assert _bits(again[k]) == _bits(v)
        assert _bits(float(B.BOUNDS[k](b))) == _bits(ref[k])  # the registry entry called directly


def test_one_name_and_unified_alone_match_the_full_evaluation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        T = int(rng.integers(1, 200))
        fields = dict(
            eps=rng.random() ** 3, delta=10 ** rng.uniform(-8, 1), dkl_seq=rng.random(), dtv_seq=rng.random()
        )
        dbar = rng.random(T) * fields["eps"]
        ref = _reference(B.BoundInputs(T=T, dbar=dbar, **fields))
        for name in ("unified", "unified_v2", "unified_refined", "adaptive_star_refined", "pm_kl"):
            got = B.evaluate_bounds(B.BoundInputs(T=T, dbar=dbar, **fields), name)[name]
            assert _bits(got) == _bits(ref[name]), name


def test_batch_records_still_go_through_the_public_checks():
    """A record that is not a BoundInputs (exact_batch's) is never cached and is still checked."""
    rng = np.random.default_rng(1)
    eps, delta = rng.random(5) * 0.1, rng.random(5) * 1e-2
    dbar = rng.random((5, 16)) * 0.1
    batch = BatchInputs(16, eps, delta, 16 * delta, rng.random(5), dbar)
    got = evaluate_bounds_batch(batch, (*B.PUBLISHED_BOUNDS, "pm_tv_refined"))
    for i in range(5):
        b = B.BoundInputs(
            T=16, eps=eps[i], delta=delta[i], dkl_seq=16 * delta[i], dtv_seq=batch.dtv_seq[i], dbar=dbar[i]
        )
        ref = _reference(b)
        for k in got:
            assert _bits(got[k][i]) == _bits(ref[k]), k
    assert not hasattr(batch, "_values") and not hasattr(batch, "_checked")
    bad = BatchInputs(16, eps + 2.0, delta, 16 * delta, rng.random(5), dbar)
    with pytest.raises(ValueError, match="eps"):
        B.BOUNDS["pm_tv"](bad)


def test_kept_arrays_are_read_only_and_a_replaced_user_key_is_not_cached():
    b = B.BoundInputs.from_partial(T=50, delta=1e-3)
    B.evaluate_bounds(b)
    for a in B._checked(b):
        assert not a.flags.writeable
    calls = []
    B.register_bound("test_registry_probe", lambda x: calls.append(1) or 1.0, replace=True)
    try:
        B.evaluate_bounds(b, "test_registry_probe")
        B.register_bound("test_registry_probe", lambda x: 2.0, replace=True)
        assert B.evaluate_bounds(b, "test_registry_probe")["test_registry_probe"] == 2.0
    finally:
        B._BOUNDS.pop("test_registry_probe", None)
        B._BOUND_INFO.pop("test_registry_probe", None)
    assert calls == [1]


def test_subnormal_eps_with_zero_delta_is_not_zero_over_zero():
    """eps = 5e-324 squares to 0: the crossover delta / (2 eps^2) was 0/0 = NaN, and adaptive_star
    then failed with an IndexError; the crossover is 0 (every weight takes the KL route, 0)."""
    assert float(B.adaptive_crossover(5e-324, 0.0)) == 0.0
    assert float(B.adaptive_crossover(5e-324, 1e-3)) == math.inf
    assert float(B.adaptive_star(np.full(4, 5e-324), 5e-324, 0.0)) == 0.0
    assert float(B.adaptive_star(B.uniform_dbar(300, 5e-324), 5e-324, 0.0)) == 0.0  # the closed form
    b = B.BoundInputs(T=300, eps=5e-324, delta=0.0, dkl_seq=0.0, dtv_seq=0.0, dbar=5e-324)
    assert B.evaluate_bounds(b)["adaptive_star"] == 0.0
