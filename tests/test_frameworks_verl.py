"""Parity with the installed verl (``pip install -e '.[frameworks]'``, verl 0.9.1) on random inputs.

Masks are compared bit for bit (values and dtype), metrics to float rounding. float32/float64 in
the default compute mode and bfloat16 in ``compute_dtype="input"`` (verl's own bf16 arithmetic)
match verl exactly; bfloat16 in the default float32 mode equals verl run on the float32 copy.
Without verl these tests skip (the fixture tests in test_masks_verl.py still run).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from _framework_cases import DTYPES, boundary_or_random, random_case, same_metrics

from trm_bounds.masks import (
    VERL_RS_OPTIONS,
    masked_policy_loss,
    offpolicy_metrics,
    rollout_correction,
    rollout_is_weights,
    rollout_rejection_mask,
    trm_mask,
    verl_preset,
)
from trm_bounds.masks.verl import VERL_PRESETS

helper = pytest.importorskip(
    "verl.trainer.ppo.rollout_corr_helper", reason="verl not installed (pip install -e '.[frameworks]')"
)
core_algos = pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl not installed")
algorithm = pytest.importorskip("verl.trainer.config.algorithm", reason="verl not installed")

N_CASES = 400  # random cases per dtype per function (each case draws options and thresholds)
REL = {"float64": 1e-12, "float32": 2e-6, "bfloat16": 2e-6}


def _mode(dtype_name):
    """The compute mode that is bit for bit with verl for this input dtype."""
    return "input" if dtype_name == "bfloat16" else "float32"


def _rs_spec(rng, lr, valid):
    """(rollout_rs, rollout_rs_threshold) of 1-3 random options, thresholds at boundaries or random."""
    k = int(rng.integers(1, 4))
    opts = list(rng.choice(VERL_RS_OPTIONS, size=k, replace=False))
    lrs = torch.clamp(lr, -20, 20)
    stats = {"k2": 0.5 * lrs**2, "k3": torch.exp(lrs) - 1.0 - lrs}
    ths = []
    for opt in opts:
        if opt.endswith("k1"):
            lo, up = math.exp(-rng.uniform(0, 2)), math.exp(rng.uniform(0, 2))  # asymmetric
            ths.append(f"{lo!r}_{up!r}" if rng.random() < 0.7 else repr(up))
        else:
            ths.append(repr(boundary_or_random(rng, stats[opt[-2:]], valid, 1e-4, 50.0)))
    if rng.random() < 0.2:
        opts.append(opts[0])  # duplicates are dropped, order kept: thresholds count unique options
    if len(set(opts)) == 1 or rng.random() < 0.2:
        ths = [ths[0]] if not opts[0].endswith("k1") and all(not o.endswith("k1") for o in opts) else ths
    return ",".join(opts), ",".join(ths)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_rejection_mask_matches_verl(dtype_name):
    rng = np.random.default_rng(1000 + list(DTYPES).index(dtype_name))
    dtype, n_equal_boundary = DTYPES[dtype_name], 0
    for case in range(N_CASES):
        lp, rlp, m = random_case(rng, dtype)
        lr = lp - rlp
        valid = m.bool()
        rs, th = _rs_spec(rng, lr, valid)
        want_mask, want = helper.compute_rollout_rejection_mask(lr, m, rs, th)
        got_mask, got = rollout_rejection_mask(lr, m, rs, th, compute_dtype=_mode(dtype_name))
        assert got_mask.dtype == want_mask.dtype == m.dtype, (case, rs, th)
        assert torch.equal(got_mask, want_mask), (case, rs, th)
        msg = same_metrics(got, want, REL[dtype_name])
        assert msg is None, (case, rs, th, msg)
        n_equal_boundary += any(f"{float(t)!r}" == t for t in th.split(",") if "_" not in t)
    assert n_equal_boundary > N_CASES // 10  # boundary thresholds were really drawn


def test_bf16_in_float32_mode_is_verl_on_the_float32_copy():
    rng = np.random.default_rng(7)
    differ = 0
    for _ in range(N_CASES // 2):
        lp, rlp, m = random_case(rng, torch.bfloat16)
        lr = lp - rlp
        rs, th = _rs_spec(rng, lr, m.bool())
        want_mask, want = helper.compute_rollout_rejection_mask(lr.float(), m, rs, th)
        got_mask, got = rollout_rejection_mask(lr, m, rs, th)
        assert torch.equal(got_mask, want_mask)
        assert same_metrics(got, want, 2e-6) is None
        bf_mask, _ = helper.compute_rollout_rejection_mask(lr, m, rs, th)
        differ += not torch.equal(bf_mask, want_mask)
    assert differ > 0  # verl's own bf16 arithmetic flips some of these decisions (why "input" exists)


def test_issue_example_bf16_k3():
    # one token, log rho = 0.045654 in bf16, token_k3 threshold 0.0011: verl's bf16 k3 = 0.0012207 rejects,
    # the accurate k3 (0.0010582) keeps; compute_dtype="input" reproduces verl
    lr = torch.tensor([[0.045654]], dtype=torch.bfloat16)
    m = torch.ones(1, 1)
    want, _ = helper.compute_rollout_rejection_mask(lr, m, "token_k3", 0.0011)
    same, _ = rollout_rejection_mask(lr, m, "token_k3", 0.0011, compute_dtype="input")
    accurate, _ = rollout_rejection_mask(lr, m, "token_k3", 0.0011)
    assert want.item() == same.item() == 0.0 and accurate.item() == 1.0


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_is_weights_match_verl(dtype_name):
    rng = np.random.default_rng(2000 + list(DTYPES).index(dtype_name))
    dtype = DTYPES[dtype_name]
    for case in range(N_CASES):
        lp, rlp, m = random_case(rng, dtype)
        lr = lp - rlp
        level = ["token", "sequence"][int(rng.integers(0, 2))]
        up = boundary_or_random(rng, torch.exp(torch.clamp(lr, -20, 20)), m.bool(), 0.5, 10.0)
        th = up if rng.random() < 0.5 else f"{min(float(np.exp(-rng.uniform(0, 3))), up)!r}_{up!r}"
        norm = bool(rng.random() < 0.3)
        try:
            want_w, want = helper.compute_rollout_correction_weights(lr, m, level, th, norm)
        except ZeroDivisionError:  # verl #7559: IcePop rejected every token, ESS = 1 / 0
            got_w, got = rollout_is_weights(lr, m, level, th, norm, compute_dtype=_mode(dtype_name))
            assert got["rollout_is_eff_sample_size"] == 0.0 and not got_w.any()
            continue
        got_w, got = rollout_is_weights(lr, m, level, th, norm, compute_dtype=_mode(dtype_name))
        assert got_w.dtype == want_w.dtype, (case, got_w.dtype, want_w.dtype)
        assert torch.equal(got_w, want_w), (case, level, th, norm)
        msg = same_metrics(got, want, REL[dtype_name])
        assert msg is None, (case, level, th, norm, msg)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_offpolicy_metrics_match_verl(dtype_name):
    rng = np.random.default_rng(3000 + list(DTYPES).index(dtype_name))
    for _ in range(N_CASES // 2):
        lp, rlp, m = random_case(rng, DTYPES[dtype_name])
        want = helper.compute_offpolicy_metrics(lp, rlp, m)
        got = offpolicy_metrics(lp, rlp, m, compute_dtype=_mode(dtype_name))
        assert same_metrics(got, want, REL[dtype_name]) is None
        got_p = offpolicy_metrics(lp, rlp, m, compute_dtype=_mode(dtype_name), metrics_prefix="rollout_corr/")
        assert set(got_p) == {f"rollout_corr/{k}" for k in want}


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_trm_max_is_verl_seq_max_k2(dtype_name):
    rng = np.random.default_rng(4000 + list(DTYPES).index(dtype_name))
    for _ in range(N_CASES):
        lp, rlp, m = random_case(rng, DTYPES[dtype_name])
        lr = lp - rlp
        lrs = torch.clamp(lr, -20, 20)
        d = boundary_or_random(rng, 0.5 * lrs**2, m.bool(), 1e-4, 50.0)
        want, _ = helper.compute_rollout_rejection_mask(lr, m, "seq_max_k2", d)
        got, keep, _ = trm_mask(lp, rlp, m, mode="max", max_threshold=d, compute_dtype=_mode(dtype_name))
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", sorted(VERL_PRESETS))
def test_presets_are_verls(name):
    cls = algorithm.RolloutCorrectionConfig
    make = getattr(cls, name)
    fields = tuple(verl_preset(name))
    cfg = make()
    assert verl_preset(name) == {f: getattr(cfg, f) for f in fields}
    params = inspect.signature(make).parameters  # non-default parameters map the same way
    other = {p: (0.25 if "lower" in p else "0.9_1.1" if "rs" in p and "k1" in str(cfg.rollout_rs) else 3.5)
             for p in params}  # fmt: skip
    cfg2 = make(**other)
    assert verl_preset(name, **other) == {f: getattr(cfg2, f) for f in fields}


def test_every_verl_preset_is_mapped():
    cls = algorithm.RolloutCorrectionConfig
    presets = {
        n for n, f in vars(cls).items()
        if isinstance(f, classmethod) and "RolloutCorrectionConfig" in str(inspect.signature(getattr(cls, n)))
    }  # fmt: skip
    assert presets == set(VERL_PRESETS)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_rollout_correction_with_presets_matches_verl(dtype_name):
    rng = np.random.default_rng(5000 + list(DTYPES).index(dtype_name))
    names = sorted(VERL_PRESETS)
    for case in range(len(names) * 8):
        name = names[case % len(names)]
        lp, rlp, m = random_case(rng, DTYPES[dtype_name])
        p = verl_preset(name)
        try:
            want_w, want_m, want = helper.compute_rollout_correction_and_rejection_mask(
                lp, rlp, m, p["rollout_is"], p["rollout_is_threshold"], p["rollout_is_batch_normalize"],
                p["rollout_rs"], p["rollout_rs_threshold"],
            )  # fmt: skip
        except ZeroDivisionError:
            continue  # verl #7559 (IcePop, all weights 0); covered in test_is_weights_match_verl
        got_w, got_m, got = rollout_correction(lp, rlp, m, preset=name, compute_dtype=_mode(dtype_name))
        assert torch.equal(got_m, want_m), (name, case)
        if want_w is None:
            assert got_w is None
        else:
            assert torch.equal(got_w, want_w.batch["rollout_is_weights"]), (name, case)
        assert same_metrics(got, want, REL[dtype_name]) is None, name


def test_token_sum_and_loss_modes_match_verl_agg_loss():
    rng = np.random.default_rng(6)
    modes = ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean"]
    modes.append("seq-mean-token-sum-norm")
    for case in range(200):
        lp, rlp, m = random_case(rng, torch.float64)
        mf = m.to(torch.float64)
        keep = torch.from_numpy(rng.random(m.shape[0]) < 0.7)
        kept = mf * keep[:, None]
        if not kept.any():
            continue
        loss = torch.from_numpy(rng.standard_normal(m.shape))
        mode = modes[case % len(modes)]
        want = core_algos.agg_loss(loss, kept, mode)  # verl edits the mask: normalize="kept"
        got = masked_policy_loss(loss, m, keep, loss_agg_mode=mode, normalize="kept")
        rel = 1e-7 if mode == "seq-mean-token-mean" else 1e-12  # verl divides by n_b + 1e-8
        assert float(got) == pytest.approx(float(want), rel=rel, abs=1e-12), mode
        if mode.startswith("seq-mean"):  # the TRM paper's 1/B: verl with global_batch_size = B
            want = core_algos.agg_loss(loss, kept, mode, global_batch_size=m.shape[0])
            got = masked_policy_loss(loss, m, keep, loss_agg_mode=mode, normalize="total")
            if mode != "seq-mean-token-mean":  # there n_b is the kept count in verl, the valid count here
                assert float(got) == pytest.approx(float(want), rel=1e-12, abs=1e-12), mode
