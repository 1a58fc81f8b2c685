"""Tests for trm_bounds/exact_mp.py: the mpmath engine agrees with the float64 engine on ordinary
pairs and its bounds are the published formulas (near-tight pairs: tests/test_refined.py)."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

from trm_bounds.adversarial import adversarial_pair
from trm_bounds.bounds import PUBLISHED_BOUNDS, BoundInputs, evaluate_bounds
from trm_bounds.exact import exact_quantities
from trm_bounds.exact_mp import exact_mp, published_mp


@pytest.mark.parametrize("kind, seed, shape", [("dense", 0, (1, 2, 3)), ("zeros_roll", 1, (2, 3, 2))])
def test_mp_engine_matches_float64_engine(kind, seed, shape):
    P, V, T = shape
    pair = adversarial_pair(np.random.default_rng(seed), kind, P, V, T)
    out, hp = exact_quantities(*pair), exact_mp(*pair, dps=40)
    for key in ("J_roll", "J_theta", "surrogate", "eps", "delta", "dkl_seq"):
        assert float(hp[key]) == pytest.approx(out[key], rel=1e-10, abs=1e-15), key
    assert float(hp["error"]) == pytest.approx(out["error"], rel=1e-8, abs=1e-15)
    for key in PUBLISHED_BOUNDS:
        assert float(hp["bounds"][key]) == pytest.approx(out["bounds"][key], rel=1e-10), key


def test_published_mp_is_the_published_formulas():
    T, eps, delta, dkl, dtv = 7, 0.05, 0.004, 0.02, 0.1
    dbar = [0.01 * (t + 1) / 2 for t in range(T)]
    with mp.workdps(30):
        got = published_mp(T, mp.mpf(eps), mp.mpf(delta), mp.mpf(dkl), mp.mpf(dtv), [mp.mpf(d) for d in dbar])
    want = evaluate_bounds(
        BoundInputs(T=T, eps=eps, delta=delta, dkl_seq=dkl, dtv_seq=dtv, dbar=np.array(dbar))
    )
    for key in PUBLISHED_BOUNDS:
        assert float(got[key]) == pytest.approx(want[key], rel=1e-12), key
