"""Tests for trm_bounds/masks/registry.py: every METHODS rule against its definition, one row at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _mask_batches import random_batch

from trm_bounds.bounds import ln_trm_score, ln_trm_weights
from trm_bounds.masks import (
    METHODS,
    sequence_mask,
    trm_mask,
)


# --------------------------------------------------------------------------- the registry
def _rows(lp, rlp, m):
    for b in range(lp.shape[0]):
        idx = [t for t in range(lp.shape[1]) if m[b, t]]
        yield b, np.array([lp[b, t] - rlp[b, t] for t in idx])


def _slow_method(name, lp, rlp, m, **p):
    """(seq_keep list, weights list-of-lists) by the definitions, one row at a time."""
    B, T = lp.shape
    keep, W = [], np.zeros((B, T))
    for b, x in _rows(lp, rlp, m):
        rho = np.exp(np.clip(x, -20, 20))
        n = len(x)
        tok_keep = np.ones(n, bool)
        w = np.ones(n)
        k = True
        if name == "ser":
            k = n == 0 or np.mean(np.abs(rho - 1)) <= p["delta_ser"]
        elif name == "ln-trm":
            if n > 0:
                Z = ln_trm_weights(n, p.get("eps"), p["delta"], p.get("version", "v3")).sum()
                Wsc = ln_trm_score(rho, p.get("eps"), p["delta"], p.get("version", "v3"))
                k = (Wsc / Z if Z > 0 else 0.0) <= p["delta_w"]
        elif name == "geo-mask":
            k = n == 0 or p["low"] <= math.exp(np.mean(x)) <= p["high"]
        elif name == "token-mask":
            tok_keep = (rho >= p["low"]) & (rho <= p["high"])
            k = bool(tok_keep.all())
        elif name == "icepop":
            w = np.where((rho >= p["low"]) & (rho <= p["high"]), rho, 0.0)
        elif name == "token-is":
            w = rho
        elif name == "token-tis":
            w = np.minimum(rho, p["clip"])
        elif name == "seq-tis":
            w = np.full(n, min(math.exp(min(20, max(-20, x.sum()))), p["clip"]))
        elif name == "seq-mis":
            s = math.exp(min(20, max(-20, x.sum())))
            k = math.log(p.get("low") or 1e-300) <= x.sum() <= math.log(p["high"])
            w = np.full(n, s)
        keep.append(bool(k))
        w = np.where(
            tok_keep if name == "token-mask" else (tok_keep & k), w, 0.0
        )  # token-mask drops tokens only
        W[b, : len(w)] = w if m[b].all() or n == 0 else 0  # rows are prefixes here
        if n and not m[b].all():
            W[b, :n] = w
    return keep, W


METHOD_PARAMS = {
    "ser": dict(delta_ser=0.05),
    "ln-trm": dict(delta_w=0.04, delta=1e-3, eps=0.02),
    "geo-mask": dict(low=0.99, high=1.01),
    "token-mask": dict(low=0.9, high=1.1),
    "icepop": dict(low=0.9, high=1.1),
    "token-is": {},
    "token-tis": dict(clip=1.05),
    "seq-tis": dict(clip=1.0),
    "seq-mis": dict(high=1.2),
}


@pytest.mark.parametrize("name", sorted(METHOD_PARAMS))
def test_sequence_mask_methods_match_slow_definitions(name):
    lp, rlp, m = random_batch(seed=8, scale=0.08, T=16)
    res = sequence_mask(name, lp, rlp, m, **METHOD_PARAMS[name])
    keep, W = _slow_method(name, lp, rlp, m, **METHOD_PARAMS[name])
    assert res.seq_keep.tolist() == keep
    np.testing.assert_allclose(res.weights, W, rtol=1e-12, atol=1e-15)
    assert res.mask.dtype == m.dtype
    assert 0.0 <= res.metrics[f"{name}/acceptance"] <= 1.0


def test_ln_trm_v2_and_holes_use_the_rows_own_length():
    lp, rlp, m = random_batch(seed=9, scale=0.05, T=10, empty_row=False)
    m[2, 3] = 0  # a hole: t counts valid tokens only
    res = sequence_mask("ln-trm", lp, rlp, m, delta_w=0.03, delta=1e-3, version="v2")
    for b, x in _rows(lp, rlp, m):
        n = len(x)
        Z = ln_trm_weights(n, None, 1e-3, "v2").sum()
        score = ln_trm_score(np.exp(x), None, 1e-3, "v2") / Z if Z > 0 else 0.0
        assert res.seq_keep[b] == (score <= 0.03), b


def test_sequence_mask_trm_methods_forward_to_trm_mask():
    lp, rlp, m = random_batch(seed=10, scale=0.03)
    r = sequence_mask("trm-max+avg", lp, rlp, m, delta=2e-3, delta_avg=1e-3)
    _, keep, _ = trm_mask(lp, rlp, m, mode="max+avg", max_threshold=2e-3, avg_threshold=1e-3)
    assert r.seq_keep.tolist() == keep.tolist()
    kl = 0.5 * (lp - rlp) ** 2
    r = sequence_mask("trm-max", lp, rlp, m, delta=1e-3, exact_kl=kl)
    assert r.seq_keep.tolist() == trm_mask(lp, rlp, m, max_threshold=1e-3, exact_kl=kl)[1].tolist()
    assert sequence_mask("none", lp, rlp, m).mask.tolist() == m.tolist()


def test_sequence_mask_errors():
    lp, rlp, m = random_batch(seed=11)
    with pytest.raises(ValueError, match="method must be one of .*trm-max"):
        sequence_mask("trm", lp, rlp, m)
    with pytest.raises(ValueError, match="delta_ser is required"):
        sequence_mask("ser", lp, rlp, m)
    with pytest.raises(ValueError, match="delta is not a parameter"):
        sequence_mask("ser", lp, rlp, m, delta=0.1, delta_ser=0.1)
    with pytest.raises(ValueError, match="exact_kl is only used"):
        sequence_mask("ser", lp, rlp, m, delta_ser=0.1, exact_kl=np.zeros_like(lp))
    with pytest.raises(ValueError, match="low must be <= high"):
        sequence_mask("geo-mask", lp, rlp, m, low=2.0, high=1.0)
    assert set(METHODS) >= {"trm-max", "trm-avg", "trm-max+avg", "ln-trm", "ser", "geo-mask", "seq-tis"}


def test_rs_veto_is_slimes_one_sided_veto_row_by_row():
    rng = np.random.default_rng(11)
    for _ in range(50):
        lp, rlp, m = random_batch(seed=int(rng.integers(1 << 30)), scale=3.0)
        tau = float(np.exp(-rng.uniform(0, 6)))
        res = sequence_mask("rs-veto", lp, rlp, m, tau=tau)
        for b in range(m.shape[0]):
            rho = [math.exp(lp[b, t] - rlp[b, t]) for t in range(m.shape[1]) if m[b, t]]
            assert bool(res.seq_keep[b]) == all(r >= tau for r in rho)  # empty rows kept
    with pytest.raises(ValueError, match="tau"):
        sequence_mask("rs-veto", lp, rlp, m)
