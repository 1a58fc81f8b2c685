"""Tests of trm_bounds.counterexamples: pairs that refute tempting statements."""

from __future__ import annotations

import math

import pytest

from trm_bounds.counterexamples import large_error_pair
from trm_bounds.exact import exact_quantities


def _closed_form(T: int, e: float) -> tuple[float, float]:
    J = (1 - e) ** T + e**T
    L = (1 - e) ** T * T * (e / (1 - e) - 1) + e**T * T * ((1 - e) / e - 1)
    return J, L


@pytest.mark.parametrize("T,e", [(6, 1e-3), (1, 0.2), (3, 0.01), (10, 1e-4)])
def test_large_error_pair_matches_its_closed_form(T, e):
    p = large_error_pair(T, e)
    q = exact_quantities(p.logp_roll, p.logp_theta, p.reward, p.prompt_probs)
    J, L = _closed_form(T, e)
    assert q["J_roll"] == pytest.approx(J, rel=1e-12) and q["J_theta"] == pytest.approx(J, rel=1e-12)
    assert q["surrogate"] == pytest.approx(L, rel=1e-12)
    assert q["error"] == pytest.approx(-L, rel=1e-12)


def test_error_exceeds_one_while_J_moves_less_than_one():
    # the issue-15 numbers: T = 6, e = 1e-3 gives J = 0.994, L' = -5.958, Error = 5.958
    p = large_error_pair()
    q = exact_quantities(p.logp_roll, p.logp_theta, p.reward, p.prompt_probs)
    assert round(q["J_roll"], 3) == 0.994 and round(q["surrogate"], 3) == -5.958
    assert round(q["error"], 3) == 5.958 and q["error"] > 1
    assert abs(q["J_theta"] - q["J_roll"]) <= 1
    # the bounds still hold: |Error| <= unified (the statement refuted is "|Error| <= 1")
    assert abs(q["error"]) <= q["bounds"]["unified"] * (1 + 1e-12)
    assert math.isfinite(q["bounds"]["unified"])


@pytest.mark.parametrize("kw,match", [({"T": 0}, "^T must be >= 1"), ({"e": 0.5}, "^e must be in"),
                                      ({"e": 0.0}, "^e must be in")])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        large_error_pair(**kw)
