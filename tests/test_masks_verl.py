"""Tests for trm_bounds/masks/verl.py: verl parity (rejection masks, IS weights, off-policy metrics).

Expected values come from verl's own output (the shared fixture), from hand computation of the
documented semantics (ECOSYSTEM.md sections 1 and 4), or from slow loop twins written here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _mask_batches import random_batch, small_lr, small_mask
from hypothesis import example, given
from hypothesis import strategies as st

from trm_bounds.masks import (
    VERL_RS_OPTIONS,
    offpolicy_metrics,
    rollout_is_weights,
    rollout_rejection_mask,
)
from trm_bounds.masks.verl import SAFETY_BOUND, clamp_log_ratio


# --------------------------------------------------------------------------- slow twins
def _slow_stat(lr_row, m_row, est, agg):
    """verl's per-option statistic for one row, from the documented semantics (Python floats)."""
    vals = []
    for x, mm in zip(lr_row, m_row):
        if mm:
            x = min(max(float(x), -20.0), 20.0)
            vals.append({"k1": -x, "k2": 0.5 * x * x, "k3": math.exp(x) - 1.0 - x}[est])
    if agg == "max":
        return max(vals) if vals else 0.0
    if agg == "sum":
        return sum(vals)
    return sum(vals) / len(vals) if vals else 0.0


def _slow_rejection_mask(lr, m, options, thresholds):
    """Independent loop implementation of verl's keep rules (no torch)."""
    B, T = lr.shape
    keep = np.ones((B, T), dtype=bool)
    for opt, (lo, up) in zip(options, thresholds):
        level, est = opt.rsplit("_", 1)

        def passes(s, est=est, lo=lo, up=up):
            return math.log(lo) <= s <= math.log(up) if est == "k1" else s <= up

        for b in range(B):
            if level == "token":
                for t in range(T):
                    if m[b, t]:
                        x = min(max(float(lr[b, t]), -20.0), 20.0)
                        s = {"k1": -x, "k2": 0.5 * x * x, "k3": math.exp(x) - 1.0 - x}[est]
                        keep[b, t] &= passes(s)
            else:
                if not passes(_slow_stat(lr[b], m[b], est, level.split("_")[1])):
                    keep[b, :] = False
    return (keep & (m > 0)).astype(m.dtype)


# --------------------------------------------------------------------------- verl fixture parity
def test_rollout_rejection_mask_matches_verl_fixture_bit_for_bit(fixtures_dir):
    cases = json.loads((fixtures_dir / "verl_rejection_masks.json").read_text())
    z = np.load(fixtures_dir / "verl_rejection_masks.npz")
    assert len(cases) >= 14
    for case in cases:
        for conv in (np.asarray, torch.from_numpy):
            mask, metrics = rollout_rejection_mask(
                conv(z["log_ratio"]),
                conv(z["response_mask"]),
                case["rollout_rs"],
                case["rollout_rs_threshold"],
            )
            mask = np.asarray(mask)
            want = z[f"mask_{case['index']}"]
            assert mask.dtype == want.dtype and np.array_equal(mask, want), case["rollout_rs"]
            assert list(metrics) == list(case["metrics"]), case["rollout_rs"]
            for k, v in case["metrics"].items():
                assert metrics[k] == pytest.approx(v, rel=1e-12, abs=1e-15), (case["rollout_rs"], k)


# --------------------------------------------------------------------------- verl semantics by hand
@pytest.mark.parametrize("opt", VERL_RS_OPTIONS)
def test_every_verl_option_matches_slow_twin(opt):
    lp, rlp, m = random_batch(seed=1, scale=0.3)
    lr = lp - rlp
    lr[2, 3] = 30.0  # beyond the clamp
    lr[3, 1] = -25.0
    stats = [
        _slow_stat(lr[b], m[b], opt.rsplit("_", 1)[1], opt.split("_")[1] if opt[0] == "s" else "mean")
        for b in range(1, 6)
    ]
    up = float(np.median(stats)) + 1e-3 if not opt.endswith("k1") else 1.2
    spec = f"0.8_{up}" if opt.endswith("k1") else up
    lo = 0.8 if opt.endswith("k1") else None
    mask, _ = rollout_rejection_mask(lr, m, opt, spec)
    np.testing.assert_array_equal(mask, _slow_rejection_mask(lr, m, [opt], [(lo, up)]))


@given(lr=small_lr, m=small_mask, u=st.floats(1e-3, 2.0), u2=st.floats(1e-3, 2.0))
@example(lr=np.zeros((4, 7)), m=np.zeros((4, 7), np.int8), u=0.1, u2=0.1)
def test_chained_options_are_a_logical_and(lr, m, u, u2):
    if not m.any():
        with pytest.raises(ValueError, match="at least one valid token"):
            rollout_rejection_mask(lr, m, "token_k2,seq_mean_k3", u)
        return
    both, _ = rollout_rejection_mask(lr, m, "token_k2,seq_mean_k3", f"{u},{u2}")
    a, _ = rollout_rejection_mask(lr, m, "token_k2", u)
    b, _ = rollout_rejection_mask(lr, m, "seq_mean_k3", u2)
    np.testing.assert_array_equal(both, a * b)
    np.testing.assert_array_equal(
        both, _slow_rejection_mask(lr, m, ["token_k2", "seq_mean_k3"], [(None, u), (None, u2)])
    )
    shared, _ = rollout_rejection_mask(lr, m, "token_k2,seq_mean_k3", u)  # one value broadcast to both
    np.testing.assert_array_equal(shared, a * rollout_rejection_mask(lr, m, "seq_mean_k3", u)[0])


def test_threshold_equality_is_kept_and_clamp_is_applied():
    x = 0.2
    lr = np.array([[x, -x, 0.0], [30.0, 0.0, 0.0]])
    m = np.ones((2, 3), np.float32)
    mask, _ = rollout_rejection_mask(lr, m, "seq_max_k2", 0.5 * x**2)  # equality -> kept
    assert mask[0].tolist() == [1, 1, 1] and mask[1].tolist() == [0, 0, 0]
    mask, _ = rollout_rejection_mask(lr, m, "seq_max_k2", 200.5)  # k2(30) clamps to k2(20) = 200
    assert mask.sum() == 6
    mask, _ = rollout_rejection_mask(lr, m, "seq_max_k2", 199.0)
    assert mask[1].sum() == 0


def test_asymmetric_k1_bounds_act_on_inverse_ratio():
    # token_k1 "0.5_4.0": keep iff log 0.5 <= -log rho <= log 4, i.e. 1/4 <= rho <= 2 (not 0.5 <= rho <= 4)
    lr = np.log(np.array([[3.0, 0.3, 1.5, 0.2]]))
    mask, _ = rollout_rejection_mask(lr, np.ones((1, 4), np.float32), "token_k1", "0.5_4.0")
    assert mask.tolist() == [[0.0, 1.0, 1.0, 0.0]]
    # a single value u means lower = 1/u
    mask, _ = rollout_rejection_mask(lr, np.ones((1, 4), np.float32), "token_k1", 2.0)
    assert mask.tolist() == [[0.0, 0.0, 1.0, 0.0]]


def test_empty_row_passes_and_seq_fraction_denominators():
    lr = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    m = np.array([[0, 0], [1, 1], [1, 0]], np.float32)
    mask, met = rollout_rejection_mask(lr, m, "seq_max_k2", 0.1)
    assert mask.tolist() == [[0, 0], [0, 0], [1, 0]]
    assert met["rollout_rs_seq_max_k2_seq_masked_fraction"] == pytest.approx(0.5)  # over non-empty rows
    assert met["rollout_rs_seq_masked_fraction"] == pytest.approx(1 / 3)  # over all B rows
    assert met["rollout_rs_masked_fraction"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "rs, th, match",
    [
        ("seq_max_k1", 1.0, "rollout_rs"),
        ("", 1.0, "rollout_rs"),
        ("seq_max_k2", None, "rollout_rs_threshold"),
        ("seq_max_k2", "0.1_0.2", "rollout_rs_threshold"),
        ("seq_max_k2,token_k2", "0.1,0.2,0.3", "rollout_rs_threshold"),
        ("seq_max_k2", -1.0, "rollout_rs_threshold"),
        ("seq_max_k2", "abc", "rollout_rs_threshold"),
        ("token_k1", True, "rollout_rs_threshold"),
    ],
)
def test_rejection_mask_bad_options(rs, th, match):
    with pytest.raises(ValueError, match=match):
        rollout_rejection_mask(np.zeros((2, 3)), np.ones((2, 3)), rs, th)


def test_rejection_mask_bad_arrays():
    with pytest.raises(ValueError, match="response_mask"):
        rollout_rejection_mask(np.zeros((2, 3)), np.ones((2, 4)), "seq_max_k2", 0.1)
    with pytest.raises(ValueError, match="log_ratio contains NaN"):
        rollout_rejection_mask(np.full((2, 3), np.nan), np.ones((2, 3)), "seq_max_k2", 0.1)
    with pytest.raises(ValueError, match="response_mask must hold only 0 and 1"):
        rollout_rejection_mask(np.zeros((2, 3)), np.full((2, 3), 0.5), "seq_max_k2", 0.1)
    out, met = rollout_rejection_mask(np.zeros((0, 3)), np.ones((0, 3)), "seq_max_k2", 0.1)
    assert out.shape == (0, 3) and met == {}


# --------------------------------------------------------------------------- verl IS weights and metrics
def test_is_weights_token_sequence_icepop_and_batch_norm():
    lr = np.log(np.array([[0.5, 1.0, 3.0], [1.2, 1.2, 1.0]]))
    m = np.array([[1, 1, 1], [1, 1, 0]], np.float64)
    w, met = rollout_is_weights(lr, m, "token", 2.0)
    np.testing.assert_allclose(w, [[0.5, 1.0, 2.0], [1.2, 1.2, 0.0]], rtol=1e-15)
    assert met["rollout_is_ratio_fraction_high"] == pytest.approx(1 / 5)  # raw 3.0 > 2
    assert met["rollout_is_ratio_fraction_low"] == pytest.approx(0.0)  # lower = 1/2, 0.5 not below
    w, _ = rollout_is_weights(lr, m, "sequence", 2.0)  # products 1.5 and 1.44
    np.testing.assert_allclose(w, [[1.5, 1.5, 1.5], [1.44, 1.44, 0.0]], rtol=1e-14)
    w, met = rollout_is_weights(lr, m, "token", "0.6_2.5")  # IcePop: zero outside, no clamp
    np.testing.assert_allclose(w, [[0.0, 1.0, 0.0], [1.2, 1.2, 0.0]], rtol=1e-15)
    assert met["rollout_is_oob_ratio"] == pytest.approx(2 / 5)
    w, met = rollout_is_weights(lr, m, "token", 2.0, rollout_is_batch_normalize=True)
    assert (w * m).sum() / m.sum() == pytest.approx(1.0, rel=1e-8)  # verl divides by (count + 1e-8)
    assert met["rollout_is_batch_norm_factor"] == pytest.approx(5.9 / 5)
    w, _ = rollout_is_weights(lr, m, "sequence", 2.0, rollout_is_batch_normalize=True)
    assert w[0, 0] + w[1, 0] == pytest.approx(2.0)  # mean over rows of the row weight is 1
    with pytest.raises(ValueError, match="rollout_is"):
        rollout_is_weights(lr, m, "geometric", 2.0)
    with pytest.raises(ValueError, match="rollout_is_threshold"):
        rollout_is_weights(lr, m, "token", "3_2")


def test_offpolicy_metrics_match_slow_twin():
    lp, rlp, m = random_batch(seed=3)
    got = offpolicy_metrics(lp, rlp, m)
    assert len(got) == 13
    B = lp.shape[0]
    mt, mr, k1s, k3s, r2, n = [], [], 0.0, 0.0, 0.0, float(m.sum())
    chi_seq = []
    for b in range(B):
        idx = [t for t in range(lp.shape[1]) if m[b, t]]
        mt.append(sum(lp[b, t] for t in idx) / (len(idx) + 1e-8))
        mr.append(sum(rlp[b, t] for t in idx) / (len(idx) + 1e-8))
        s = sum(lp[b, t] - rlp[b, t] for t in idx)
        chi_seq.append(math.exp(2 * max(-20, min(20, s))))
        for t in idx:
            x = lp[b, t] - rlp[b, t]
            k1s += -x
            k3s += math.exp(x) - x - 1
            r2 += math.exp(2 * x)
    diff = [r - t for r, t in zip(mr, mt)]
    want = {
        "training_ppl": np.mean([math.exp(-x) for x in mt]),
        "training_log_ppl": -np.mean(mt),
        "kl": k1s / n,
        "k3_kl": k3s / n,
        "rollout_ppl": np.mean([math.exp(-x) for x in mr]),
        "rollout_log_ppl": -np.mean(mr),
        "log_ppl_diff": np.mean(diff),
        "log_ppl_abs_diff": np.mean(np.abs(diff)),
        "log_ppl_diff_max": max(diff),
        "log_ppl_diff_min": min(diff),
        "ppl_ratio": np.mean(np.exp(diff)),
        "chi2_token": r2 / n - 1,
        "chi2_seq": np.mean(chi_seq) - 1,
    }
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k


def test_clamp_log_ratio_is_verls_safety_bound():
    x = torch.tensor([-1e300, -20.5, -20.0, 0.1, 20.0, 25.0, math.inf, -math.inf], dtype=torch.float64)
    assert clamp_log_ratio(x).tolist() == [-20.0, -20.0, -20.0, 0.1, 20.0, 20.0, 20.0, -20.0]
    assert SAFETY_BOUND == 20.0  # verl's value; every threshold below k2 = 200 sees no clamp
