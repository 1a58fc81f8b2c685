"""Tests for trm_bounds/masks.py: verl/TRL parity, TRM semantics, the method registry, the loss.

Expected values come from verl's own output (the shared fixture), from hand computation of the
documented semantics (ECOSYSTEM.md sections 1, 2 and 5), or from slow loop twins written here.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, note
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trm_bounds.bounds import ln_trm_score, ln_trm_weights
from trm_bounds.masks import (
    LOSS_AGG_MODES,
    METHODS,
    TRL_IS_MODES,
    VERL_RS_OPTIONS,
    masked_policy_loss,
    off_policy_sequence_mask,
    offpolicy_metrics,
    rollout_is_weights,
    rollout_rejection_mask,
    sequence_mask,
    token_divergence,
    trm_mask,
    vllm_importance_sampling_ratio,
)


# --------------------------------------------------------------------------- helpers
def _batch(seed=0, B=6, T=12, scale=0.1, empty_row=True):
    rng = np.random.default_rng(seed)
    rlp = -rng.uniform(0.01, 3.0, (B, T))
    lp = rlp + scale * rng.standard_normal((B, T))
    lengths = rng.integers(1, T + 1, B)
    if empty_row:
        lengths[0] = 0
    m = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)
    return lp, rlp, m


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


small_lr = arrays(np.float64, (4, 7), elements=st.floats(-1.5, 1.5, allow_nan=False, width=64))
small_mask = arrays(np.int8, (4, 7), elements=st.integers(0, 1))


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
    lp, rlp, m = _batch(seed=1, scale=0.3)
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
    lp, rlp, m = _batch(seed=3)
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


# --------------------------------------------------------------------------- TRL
def _slow_trl(lp, rlp, m, mode, lo, hi):
    B, T = lp.shape
    d = [[(lp[b, t] - rlp[b, t]) if m[b, t] else 0.0 for t in range(T)] for b in range(B)]
    if mode.startswith("sequence"):
        r = [[math.exp(sum(row))] for row in d]
    else:
        r = [[math.exp(x) for x in row] for row in d]
    out = []
    for row in r:
        new = []
        for x in row:
            if mode.endswith("truncate"):
                x = x if lo is None else max(x, lo)
                x = x if hi is None else min(x, hi)
            elif (lo is not None and x < lo) or (hi is not None and x > hi):
                x = 0.0
            new.append(x)
        out.append(new)
    return np.array(out)


@pytest.mark.parametrize("mode", TRL_IS_MODES)
@pytest.mark.parametrize("clip", [(None, 3.0), (0.5, 5.0), (0.5, None)])
def test_trl_importance_sampling_modes(mode, clip):
    lp, rlp, m = _batch(seed=4, scale=0.6)
    got = vllm_importance_sampling_ratio(lp, rlp, m, mode, *clip)
    assert got.shape == ((6, 1) if mode.startswith("sequence") else (6, 12))
    np.testing.assert_allclose(got, _slow_trl(lp, rlp, m, mode, *clip), rtol=1e-12)


def test_trl_sequence_modes_use_the_product_without_clamp():
    lp = np.log(np.array([[2.0, 2.0], [1.0, 0.5]]))
    m = np.ones((2, 2))
    r = vllm_importance_sampling_ratio(lp, np.zeros((2, 2)), m, "sequence_mask", None, 3.0)
    np.testing.assert_allclose(r, [[0.0], [0.5]])  # 2 * 2 = 4 > 3 masked
    r = vllm_importance_sampling_ratio(lp, np.zeros((2, 2)), m, "sequence_truncate", None, 3.0)
    np.testing.assert_allclose(r, [[3.0], [0.5]])
    ten = np.full((1, 3), 10.0)
    r = vllm_importance_sampling_ratio(
        ten, np.zeros((1, 3)), np.ones((1, 3)), "sequence_truncate", None, 1e20
    )
    assert r[0, 0] == pytest.approx(math.exp(30.0))  # no +-20 clamp in TRL
    with pytest.raises(ValueError, match="mode"):
        vllm_importance_sampling_ratio(lp, lp, m, "geometric")
    with pytest.raises(ValueError, match="clip_min and clip_max"):
        vllm_importance_sampling_ratio(lp, lp, m, "token_truncate", None, None)


def test_trl_off_policy_sequence_mask():
    lp = np.array([[-1.0, -1.0], [-1.0, -1.0], [-1.0, 0.0]])
    rlp = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # mean k1 = 1, 1, 0.5 (row 2: one valid token)
    m = np.array([[1, 1], [1, 1], [1, 0]])
    keep = off_policy_sequence_mask(np.array([1.0, -1.0, -1.0]), lp, rlp, m, threshold=0.9)
    assert keep.tolist() == [[True], [False], [False]]
    keep = off_policy_sequence_mask(np.array([1.0, -1.0, -1.0]), lp, rlp, m, threshold=1.0)
    assert keep.tolist() == [[True], [True], [True]]


# --------------------------------------------------------------------------- TRM
@given(lr=small_lr, m=small_mask, delta=st.floats(1e-4, 1.0))
@example(lr=np.full((4, 7), 0.2), m=np.ones((4, 7), np.int8), delta=0.5 * 0.2**2)
def test_trm_max_k2_equals_verl_seq_max_k2(lr, m, delta):
    assume(m.any())  # verl refuses a batch without a valid token (tested on its own)
    mask, keep, _ = trm_mask(lr, np.zeros_like(lr), m, mode="max", max_threshold=delta)
    want, _ = rollout_rejection_mask(lr, m, "seq_max_k2", delta)
    assert mask.dtype == m.dtype
    np.testing.assert_array_equal(mask, want.astype(m.dtype))


@given(
    lr=small_lr,
    m=small_mask,
    d1=st.floats(0.0, 0.5),
    d2=st.floats(0.0, 0.5),
    mode=st.sampled_from(["max", "avg", "max+avg"]),
)
def test_trm_mask_monotone_in_threshold(lr, m, d1, d2, mode):
    lo, hi = sorted((d1, d2))
    _, k_lo, _ = trm_mask(lr, np.zeros_like(lr), m, mode=mode, max_threshold=lo, avg_threshold=lo)
    _, k_hi, _ = trm_mask(lr, np.zeros_like(lr), m, mode=mode, max_threshold=hi, avg_threshold=hi)
    note(f"lo={lo} hi={hi} k_lo={k_lo} k_hi={k_hi}")
    assert np.all(~k_lo | k_hi)


kl_arrays = arrays(np.float64, (4, 7), elements=st.floats(0.0, 0.01, allow_nan=False) | st.just(np.inf))


@given(kl=kl_arrays, m=small_mask, delta=st.floats(0.0, 0.01))
@example(kl=np.full((4, 7), 1e-3), m=np.ones((4, 7), np.int8), delta=1e-3)
def test_trm_max_exact_kl_keeps_iff_every_token_within_delta(kl, m, delta):
    lp, rlp = np.zeros((4, 7)), np.zeros((4, 7))
    _, keep, _ = trm_mask(lp, rlp, m, mode="max", max_threshold=delta, exact_kl=kl)
    want = [all(kl[b, t] <= delta for t in range(7) if m[b, t]) for b in range(4)]
    assert keep.tolist() == want
    _, keep, _ = trm_mask(lp, rlp, m, mode="avg", avg_threshold=delta, exact_kl=kl)
    means = [np.mean([kl[b, t] for t in range(7) if m[b, t]]) if m[b].any() else 0.0 for b in range(4)]
    assert keep.tolist() == [bool(x <= delta) for x in means]


@given(x=arrays(np.float64, (20,), elements=st.floats(-30, 30, allow_nan=False)))
@example(x=np.array([1e-12, -1e-12, 0.0, 20.0, -20.0, np.log(0.01), np.log(100.0)] + [0.5] * 13))
def test_k2_symmetric_and_k3_nonnegative(x):
    np.testing.assert_array_equal(token_divergence(x, "k2"), token_divergence(-x, "k2"))
    assert (token_divergence(x, "k3") >= 0).all()
    assert (token_divergence(x.astype(np.float32), "k3") >= 0).all()


def test_k2_k3_published_values():
    # THEORY.md C16: k2(0.01) = k2(100) printed 10.6; k3(0.01) printed 3.6 (one decimal)
    k2 = token_divergence(np.log([0.01, 100.0]), "k2").tolist()
    k3 = float(token_divergence(np.log([0.01]), "k3")[0])
    assert [round(x, 1) for x in k2] == [10.6, 10.6] and round(k3, 1) == 3.6
    # and the closed forms to rounding: k2 = (ln 100)^2 / 2, k3 = rho - 1 - ln rho at rho = 0.01
    assert k2 == pytest.approx([0.5 * math.log(100.0) ** 2] * 2, rel=1e-15)
    assert k3 == pytest.approx(0.01 - 1 - math.log(0.01), rel=1e-15)


def test_trm_mask_empty_rows_all_masked_and_metrics():
    lp, rlp, m = _batch(seed=5, scale=0.02)
    mask, keep, met = trm_mask(lp, rlp, m, mode="max+avg", max_threshold=1e-3, avg_threshold=1e-3)
    assert keep[0] and mask[0].sum() == 0  # empty row: kept vacuously, nothing in the loss
    _, rs = rollout_rejection_mask(lp - rlp, m, "seq_max_k2,seq_mean_k3", "0.001,0.001")
    for k, v in rs.items():  # verl aliases equal verl's own metrics
        assert met[k] == v
    n_rej = sum(1 for b in range(6) if m[b].any() and not keep[b])
    assert met["trm/seq_masked_fraction"] == pytest.approx(n_rej / 5)
    assert met["trm/acceptance"] == pytest.approx(1 - n_rej / 5)
    z = np.zeros_like(m)
    mask, keep, met = trm_mask(lp, rlp, z, mode="max", max_threshold=0.1)
    assert mask.sum() == 0 and keep.all() and met["trm/num_seqs"] == 0 and met["trm/acceptance"] == 1.0


def test_trm_mask_input_errors_name_the_argument():
    lp, rlp, m = _batch(seed=6)
    bad = lp.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="log_prob contains NaN"):
        trm_mask(bad, rlp, m, max_threshold=0.1)
    bad = rlp.copy()
    bad[1, 0] = -np.inf
    with pytest.raises(ValueError, match="rollout_log_prob contains -inf"):
        trm_mask(lp, bad, m, max_threshold=0.1)
    bad[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"rollout_log_prob contains \+inf"):
        trm_mask(lp, bad, m, max_threshold=0.1)
    with pytest.raises(ValueError, match="rollout_log_prob has shape"):
        trm_mask(lp, rlp[:, :-1], m, max_threshold=0.1)
    with pytest.raises(ValueError, match="response_mask has shape"):
        trm_mask(lp, rlp, m[:-1], max_threshold=0.1)
    with pytest.raises(ValueError, match="exact_kl has shape"):
        trm_mask(lp, rlp, m, max_threshold=0.1, exact_kl=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="exact_kl must be >= 0"):
        trm_mask(lp, rlp, m, max_threshold=0.1, exact_kl=-np.ones_like(lp))
    with pytest.raises(ValueError, match="max_threshold is required"):
        trm_mask(lp, rlp, m, mode="max")
    with pytest.raises(ValueError, match="avg_threshold"):
        trm_mask(lp, rlp, m, mode="avg", avg_threshold=-1.0)
    with pytest.raises(ValueError, match="max_estimator"):
        trm_mask(lp, rlp, m, max_threshold=0.1, max_estimator="k1")
    with pytest.raises(ValueError, match="log_prob must be a floating-point"):
        trm_mask(lp.astype(np.int64), rlp, m, max_threshold=0.1)
    # padding may hold anything; -inf log_prob at a valid token means rho = 0: rejected
    pad = lp.copy()
    pad[m == 0] = np.nan
    a = trm_mask(pad, rlp, m, max_threshold=0.1)[1]
    assert np.array_equal(a, trm_mask(lp, rlp, m, max_threshold=0.1)[1])
    neg = lp.copy()
    neg[1, 0] = -np.inf
    assert not trm_mask(neg, rlp, m, max_threshold=100.0)[1][1]


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(half):
    lp, rlp, m = _batch(seed=7, scale=0.05)
    lp_h, rlp_h = torch.tensor(lp).to(half), torch.tensor(rlp).to(half)
    mask_m = torch.tensor(m).to(torch.bool)
    mask, keep, met = trm_mask(lp_h, rlp_h, mask_m, mode="max+avg", max_threshold=2e-3, avg_threshold=1e-3)
    mask32, keep32, met32 = trm_mask(
        lp_h.float(), rlp_h.float(), mask_m, mode="max+avg", max_threshold=2e-3, avg_threshold=1e-3
    )
    assert mask.dtype == torch.bool and torch.equal(keep, keep32) and met == met32
    lr_h = lp_h - rlp_h
    assert token_divergence(lr_h, "k2").dtype == torch.float32
    res = sequence_mask("ser", lp_h, rlp_h, mask_m, delta_ser=0.05)
    assert res.weights.dtype == torch.float32


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
    lp, rlp, m = _batch(seed=8, scale=0.08, T=16)
    res = sequence_mask(name, lp, rlp, m, **METHOD_PARAMS[name])
    keep, W = _slow_method(name, lp, rlp, m, **METHOD_PARAMS[name])
    assert res.seq_keep.tolist() == keep
    np.testing.assert_allclose(res.weights, W, rtol=1e-12, atol=1e-15)
    assert res.mask.dtype == m.dtype
    assert 0.0 <= res.metrics[f"{name}/acceptance"] <= 1.0


def test_ln_trm_v2_and_holes_use_the_rows_own_length():
    lp, rlp, m = _batch(seed=9, scale=0.05, T=10, empty_row=False)
    m[2, 3] = 0  # a hole: t counts valid tokens only
    res = sequence_mask("ln-trm", lp, rlp, m, delta_w=0.03, delta=1e-3, version="v2")
    for b, x in _rows(lp, rlp, m):
        n = len(x)
        Z = ln_trm_weights(n, None, 1e-3, "v2").sum()
        score = ln_trm_score(np.exp(x), None, 1e-3, "v2") / Z if Z > 0 else 0.0
        assert res.seq_keep[b] == (score <= 0.03), b


def test_sequence_mask_trm_methods_forward_to_trm_mask():
    lp, rlp, m = _batch(seed=10, scale=0.03)
    r = sequence_mask("trm-max+avg", lp, rlp, m, delta=2e-3, delta_avg=1e-3)
    _, keep, _ = trm_mask(lp, rlp, m, mode="max+avg", max_threshold=2e-3, avg_threshold=1e-3)
    assert r.seq_keep.tolist() == keep.tolist()
    kl = 0.5 * (lp - rlp) ** 2
    r = sequence_mask("trm-max", lp, rlp, m, delta=1e-3, exact_kl=kl)
    assert r.seq_keep.tolist() == trm_mask(lp, rlp, m, max_threshold=1e-3, exact_kl=kl)[1].tolist()
    assert sequence_mask("none", lp, rlp, m).mask.tolist() == m.tolist()


def test_sequence_mask_errors():
    lp, rlp, m = _batch(seed=11)
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


# --------------------------------------------------------------------------- loss
def _slow_loss(L, m, keep, mode, normalize, factor=None):
    B, T = L.shape
    kept = [[bool(m[b, t]) and bool(keep[b]) for t in range(T)] for b in range(B)]
    den_tok = [[bool(m[b, t]) for t in range(T)] for b in range(B)] if normalize == "total" else kept
    num = [sum(L[b, t] for t in range(T) if kept[b][t]) for b in range(B)]
    if mode == "token-mean":
        return sum(num) / max(1, sum(map(sum, den_tok)))
    if mode == "seq-mean-token-mean":
        num = [num[b] / max(1, sum(den_tok[b])) for b in range(B)]
    n_seq = B if normalize == "total" else sum(any(r) for r in kept)
    out = sum(num) / max(1, n_seq)
    return out / (factor or T) if mode == "seq-mean-token-sum-norm" else out


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("normalize", ["total", "kept"])
def test_masked_policy_loss_matches_slow_twin(mode, normalize):
    lp, rlp, m = _batch(seed=12)
    L = np.random.default_rng(0).standard_normal(m.shape)
    keep = np.array([True, False, True, True, False, True])
    got = masked_policy_loss(L, m, keep, loss_agg_mode=mode, normalize=normalize)
    assert float(got) == pytest.approx(_slow_loss(L, m, keep, mode, normalize), rel=1e-12)
    got = masked_policy_loss(L, m, keep, loss_agg_mode=mode, normalize=normalize, loss_scale_factor=7)
    assert float(got) == pytest.approx(_slow_loss(L, m, keep, mode, normalize, 7), rel=1e-12)


def test_masked_policy_loss_total_vs_kept_by_hand_and_gradient():
    L = torch.tensor([[1.0, 1.0], [4.0, 4.0]], requires_grad=True)
    m = torch.ones(2, 2)
    keep = torch.tensor([True, False])
    assert masked_policy_loss(L, m, keep, normalize="total").item() == pytest.approx(0.5)  # 2 / 4 tokens
    assert masked_policy_loss(L, m, keep, normalize="kept").item() == pytest.approx(1.0)  # 2 / 2 tokens
    assert masked_policy_loss(L, m, keep, loss_agg_mode="seq-mean-token-sum").item() == pytest.approx(1.0)
    out = masked_policy_loss(L, m, keep)
    out.backward()
    assert L.grad.tolist() == [[0.25, 0.25], [0.0, 0.0]]
    nan = torch.tensor([[1.0, float("nan")], [1.0, 1.0]])
    assert masked_policy_loss(nan, torch.tensor([[1, 0], [1, 1]]), None).item() == pytest.approx(1.0)
    assert masked_policy_loss(L, m, torch.zeros(2, dtype=torch.bool), normalize="kept").item() == 0.0
    with pytest.raises(ValueError, match="seq_keep must have shape"):
        masked_policy_loss(L, m, torch.ones(3))
    with pytest.raises(ValueError, match="normalize"):
        masked_policy_loss(L, m, keep, normalize="batch")
    with pytest.raises(ValueError, match="loss_agg_mode"):
        masked_policy_loss(L, m, keep, loss_agg_mode="sum")


def test_trl_sequence_mask_with_total_normalisation_is_trl_dapo():
    # TRL: per_token_loss * ratio, divided by all active tokens (mask never edited)
    lp, rlp, m = _batch(seed=13, scale=0.3)
    L = np.random.default_rng(1).standard_normal(m.shape)
    ratio = vllm_importance_sampling_ratio(lp, rlp, m, "sequence_mask", None, 3.0)
    trl = float((L * ratio * m).sum() / m.sum())
    res = sequence_mask("seq-mis", lp, rlp, m, high=3.0)
    ours = masked_policy_loss(L * res.weights, m, res.seq_keep, normalize="total")
    assert float(ours) == pytest.approx(trl, rel=1e-12)
