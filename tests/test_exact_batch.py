"""Tests for trm_bounds/exact_batch.py: the batched engine against a per-trajectory loop, against
the general engine `exact_quantities`, and the batched bound evaluation against the registry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trm_bounds import bounds as nb
from trm_bounds.adversarial import random_batch
from trm_bounds.exact import exact_quantities
from trm_bounds.exact_batch import BatchInputs, evaluate_bounds_batch, exact_batch


def _slow_exact(pairs, b):
    """Per-trajectory loop for pair b: J_roll, J_theta, L', and -Delta from the ratio identity."""
    _, T, V = pairs.shape
    J_r = J_t = Lp = minus_delta = 0.0
    for n, y in enumerate(itertools.product(range(V), repeat=T)):
        rows = [int(np.dot(y[:k], V ** np.arange(k - 1, -1, -1))) for k in range(T)]
        lr = [pairs.logp_roll[k][b, rows[k], y[k]] for k in range(T)]
        lt = [pairs.logp_theta[k][b, rows[k], y[k]] for k in range(T)]
        rho = [math.exp(a - c) for a, c in zip(lt, lr)]
        p_r, p_t, R = math.exp(sum(lr)), math.exp(sum(lt)), pairs.reward[b, n]
        J_r += p_r * R
        J_t += p_t * R
        Lp += p_r * R * sum(r - 1 for r in rho)
        minus_delta -= p_r * R * sum((rho[t] - 1) * (1 - math.prod(rho[t + 1 :])) for t in range(T))
    return J_r, J_t, Lp, minus_delta


@pytest.mark.parametrize("T, V", [(1, 3), (2, 3), (3, 2), (4, 2)])
def test_batch_engine_against_a_per_trajectory_loop(T, V):
    pairs = random_batch(np.random.default_rng(T * 10 + V), 4, T, V)
    ex = exact_batch(*pairs)
    for b in range(4):
        J_r, J_t, Lp, minus_delta = _slow_exact(pairs, b)
        assert ex["J_roll"][b] == pytest.approx(J_r, rel=1e-12, abs=1e-15)
        assert ex["J_theta"][b] == pytest.approx(J_t, rel=1e-12, abs=1e-15)
        assert ex["surrogate"][b] == pytest.approx(Lp, rel=1e-10, abs=1e-14)
        assert ex["error"][b] == pytest.approx(minus_delta, rel=1e-6, abs=1e-13)  # Error = -Delta


@pytest.mark.parametrize("T, V", [(1, 2), (2, 3), (3, 3), (4, 2)])
def test_batch_engine_matches_exact_quantities(T, V):
    pairs = random_batch(np.random.default_rng(100 + T * V), 6, T, V)
    ex = exact_batch(*pairs, baseline=0.25)
    for b in range(6):
        one = pairs.take(slice(b, b + 1))
        out = exact_quantities(one.logp_roll, one.logp_theta, one.reward, np.ones(1), baseline=0.25)
        for key in ("J_roll", "J_theta", "surrogate", "eps", "delta", "dkl_seq", "dtv_seq"):
            assert ex[key][b] == pytest.approx(out[key], rel=1e-9, abs=1e-14), key
        assert ex["surrogate_b"][b] == pytest.approx(out["surrogate_b"], rel=1e-9, abs=1e-14)
        assert ex["error"][b] == pytest.approx(out["error"], rel=1e-6, abs=1e-14)
        np.testing.assert_allclose(ex["dbar"][b], out["dbar"], rtol=1e-9, atol=1e-15)


def test_batched_bounds_are_the_registry_on_each_pair():
    pairs = random_batch(np.random.default_rng(1), 5, 3, 2)
    ex = exact_batch(*pairs)
    batch = evaluate_bounds_batch(BatchInputs.from_exact(ex))
    assert tuple(batch) == nb.PUBLISHED_BOUNDS
    for b in range(5):
        rec = nb.BoundInputs(
            T=3,
            eps=ex["eps"][b],
            delta=ex["delta"][b],
            dkl_seq=ex["dkl_seq"][b],
            dtv_seq=ex["dtv_seq"][b],
            dbar=ex["dbar"][b],
        )
        for name, val in nb.evaluate_bounds(rec, nb.PUBLISHED_BOUNDS).items():
            assert batch[name][b] == pytest.approx(val, rel=1e-14), name


def test_batch_engine_rejects_mismatched_reward():
    pairs = random_batch(np.random.default_rng(2), 3, 2, 2)
    with pytest.raises(ValueError, match="reward"):
        exact_batch(pairs.logp_roll, pairs.logp_theta, pairs.reward[:, :3])
