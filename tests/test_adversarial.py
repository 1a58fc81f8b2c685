"""Tests for trm_bounds/adversarial.py: every kind is a valid pair of its stated kind, the paper's
regime and the near-tied pairs are what they claim, seeds reproduce, and bad input is named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm_bounds.adversarial import (
    ADVERSARIAL_KINDS,
    PAPER_REGIME_DELTA,
    adversarial_pair,
    adversarial_pairs,
    random_batch,
)
from trm_bounds.exact import exact_quantities
from trm_bounds.pair import validate_pair_arrays

SHAPES = st.tuples(st.integers(1, 3), st.integers(2, 3), st.integers(1, 4))


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(ADVERSARIAL_KINDS), seed=st.integers(0, 2**32 - 1), shape=SHAPES)
def test_every_kind_is_a_valid_pair(kind, seed, shape):
    P, V, T = shape
    lr, lt, R, pp = adversarial_pair(np.random.default_rng(seed), kind, P, V, T)
    if kind == "near_tied":
        V, T = 2, 2  # the tightness example's shape, whatever was asked
    assert validate_pair_arrays(lr, lt, R, pp) == (P, V, T)
    for x in (*lr, *lt):
        row_sums = np.exp(x).sum(-1)
        np.testing.assert_allclose(row_sums, 1.0, rtol=1e-13)
    if kind == "zeros_roll":
        assert any(np.isneginf(x).any() for x in lr) or T * P * V < 4
    if kind in ("extreme", "near_det"):
        assert not any(np.isneginf(x).any() for x in (*lr, *lt))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=SHAPES)
def test_small_delta_is_the_papers_regime(seed, shape):
    P, V, T = shape
    out = exact_quantities(*adversarial_pair(np.random.default_rng(seed), "small_delta", P, V, T))
    assert 0.0 < out["delta"] <= PAPER_REGIME_DELTA * (1 + 1e-12)
    assert out["bounds"]["unified"] < 0.5  # a small but non-zero bound: absolute slack would hide it


@pytest.mark.parametrize("seed", range(8))
def test_near_tied_error_is_half_of_adaptive_tv_and_of_coupling_when_a_equals_b(seed):
    lr, lt, R, pp = adversarial_pair(np.random.default_rng(seed), "near_tied", 2, 3, 4)
    out = exact_quantities(lr, lt, R, pp)
    a, b = np.exp(lt[0][0, 0, 0]) - 0.5, np.exp(lt[1][0, 0, 1]) - 0.5  # the tilts of tight_pair
    assert 0 < a <= b < 0.5
    assert abs(out["error"]) == pytest.approx(2 * a * b, rel=1e-12)
    assert abs(out["error"]) == pytest.approx(out["bounds"]["adaptive_tv"] / 2, rel=1e-12)
    assert abs(out["error"]) <= out["bounds"]["coupling"] / 2 * (1 + 1e-12)
    if a == b:
        assert abs(out["error"]) == pytest.approx(out["bounds"]["coupling"] / 2, rel=1e-12)


def test_seeds_reproduce_and_kinds_cycle():
    first = list(adversarial_pairs(9, seed=3, kinds=ADVERSARIAL_KINDS))
    again = list(adversarial_pairs(9, seed=3, kinds=ADVERSARIAL_KINDS))
    assert [k for k, *_ in first] == list(ADVERSARIAL_KINDS)
    for (_, *x), (_, *y) in zip(first, again):
        for u, v in zip(x[0] + x[1], y[0] + y[1]):
            np.testing.assert_array_equal(u, v)
    assert {k for k, *_ in adversarial_pairs(14)} == set(ADVERSARIAL_KINDS[:7])


def test_random_batch_shapes_and_validity():
    pairs = random_batch(np.random.default_rng(0), 7, 3, 2)
    assert pairs.shape == (7, 3, 2)
    assert [x.shape for x in pairs.logp_theta] == [(7, 1, 2), (7, 2, 2), (7, 4, 2)]
    assert pairs.reward.shape == (7, 8) and ((pairs.reward >= 0) & (pairs.reward <= 1)).all()
    np.testing.assert_allclose(np.exp(pairs.logp_theta[2]).sum(-1), 1.0, rtol=1e-13)
    assert pairs.take([1, 3]).shape == (2, 3, 2)


def test_bad_input_names_the_argument():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="^kind"):
        adversarial_pair(rng, "gentle", 1, 2, 2)
    with pytest.raises(ValueError, match="^V"):
        adversarial_pair(rng, "dense", 1, 1, 2)
    with pytest.raises(ValueError, match="^T"):
        adversarial_pair(rng, "dense", 1, 2, 0)
    with pytest.raises(ValueError, match="^B"):
        random_batch(rng, 0, 2, 2)
    with pytest.raises(ValueError, match="^kinds"):
        next(adversarial_pairs(1, kinds=("gentle",)))
