"""Tests for trm_bounds/audit/search.py: the tiny search is seeded, finds no violation of the
published bounds, and can find one when a bound is made too small."""

from __future__ import annotations

import numpy as np
import pytest

from trm_bounds import bounds as nb
from trm_bounds.audit import search


def test_search_is_reproducible_and_no_bound_is_violated():
    a = search.tiny_search(n_batches=2, batch=60, seed=4)
    b = search.tiny_search(n_batches=2, batch=60, seed=4)
    assert a == b
    assert a.instances == 2 * 60 + 2 * 15 * 32
    assert set(a.worst_ratio) == set(nb.PUBLISHED_BOUNDS)
    for key, r in a.worst_ratio.items():
        assert 0.0 <= r <= 1.0, key
        assert a.worst_ratio_halved[key] == pytest.approx(2 * r, rel=1e-15)
    assert a.worst_ratio["unified"] > 0.0  # the search measures something


def test_search_finds_a_violation_of_a_bound_that_is_too_small(monkeypatch):
    """The ratio is |Error| / bound: divide one registered bound by 1e6 and the search must see > 1."""
    real = search.evaluate_bounds_batch

    def shrunk(inputs, names=nb.PUBLISHED_BOUNDS):
        out = real(inputs, names)
        out["pm_kl"] = out["pm_kl"] / 1e6
        return out

    monkeypatch.setattr(search, "evaluate_bounds_batch", shrunk)
    res = search.tiny_search(n_batches=2, batch=40, seed=1)  # batch 1 has T = 1: Error = 0
    assert res.worst_ratio["pm_kl"] > 1.0 and res.worst_ratio["mix_kl"] <= 1.0


def test_rounding_allowance_only_removes_float64_noise():
    pairs = search.random_batch(np.random.default_rng(0), 30, 3, 2)
    r = search._ratios(pairs)
    ex = search.exact_batch(*pairs)
    bnd = search.evaluate_bounds_batch(search.BatchInputs.from_exact(ex))
    b = bnd["unified"]
    ok = b > 0
    assert ok.sum() >= 25
    raw = np.abs(ex["error"][ok]) / b[ok]
    assert np.all(r["unified"][ok] <= raw)  # the allowance is ROUNDING * T of |Error|, no more
    want = np.maximum(np.abs(ex["error"][ok]) - 3 * search.ROUNDING, 0.0) / b[ok]
    np.testing.assert_allclose(r["unified"][ok], want, rtol=1e-12)
