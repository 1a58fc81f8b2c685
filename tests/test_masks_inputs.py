"""Tests for trm_bounds/masks/inputs.py: the checking and dtype rules every mask function shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _mask_batches import random_batch

from trm_bounds.masks import sequence_mask, token_divergence, trm_mask
from trm_bounds.masks.inputs import (
    as_float_tensor,
    as_tensor,
    check_choice,
    check_threshold,
    check_values,
    compute_dtype,
    first_index,
    prepare_inputs,
    to_output,
    valid_positions,
)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(half):
    lp, rlp, m = random_batch(seed=7, scale=0.05)
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


def test_prepare_inputs_gives_log_rho_with_zero_padding_in_the_promoted_dtype():
    lp = np.array([[-1.0, -2.0, np.nan], [-0.5, np.inf, -np.inf]], np.float32)
    rlp = np.array([[-1.5, -2.0, 7.0], [-1.0, -3.0, -np.inf]])
    m = np.array([[1, 1, 0], [1, 0, 0]], np.int8)
    lr, valid, mt, was_numpy = prepare_inputs(lp, rlp, m)
    assert lr.dtype == torch.float64 and was_numpy and mt.dtype == torch.int8
    assert lr.tolist() == [[0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]  # padding (even NaN/inf) is 0
    assert valid.tolist() == [[True, True, False], [True, False, False]]
    neg = lp.copy()
    neg[0, 0] = -np.inf  # pi_theta gives the sampled token probability 0: log rho = -inf, allowed
    assert prepare_inputs(neg, rlp, m)[0][0, 0] == -math.inf
    lr32, *_ = prepare_inputs(torch.tensor(lp), torch.tensor(rlp, dtype=torch.float32), torch.tensor(m))
    assert lr32.dtype == torch.float32


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda a: a["log_prob"].__setitem__((0, 1), np.nan),
            r"^log_prob contains NaN at a valid position \(0, 1\)",
        ),
        (lambda a: a["log_prob"].__setitem__((1, 0), np.inf), r"^log_prob contains \+inf"),
        (lambda a: a["rollout_log_prob"].__setitem__((0, 0), -np.inf), r"^rollout_log_prob contains -inf"),
        (
            lambda a: a.__setitem__("rollout_log_prob", a["rollout_log_prob"][:, :2]),
            "^rollout_log_prob has shape",
        ),
        (
            lambda a: a.__setitem__("response_mask", np.full((2, 3), 0.5)),
            "^response_mask must hold only 0 and 1",
        ),
        (lambda a: a.__setitem__("response_mask", np.full((2, 3), np.nan)), "^response_mask contains NaN"),
        (
            lambda a: a.__setitem__("log_prob", np.zeros((2, 3), np.int64)),
            "^log_prob must be a floating-point",
        ),
        (lambda a: a.__setitem__("log_prob", np.zeros(3)), r"^log_prob must have shape \(B, T\)"),
        (
            lambda a: a.__setitem__("log_prob", object()),
            "^log_prob must be a floating-point|^log_prob must be a numeric",
        ),
    ],
)
def test_prepare_inputs_errors_name_the_argument(change, match):
    args = {
        "log_prob": np.full((2, 3), -1.0),
        "rollout_log_prob": np.full((2, 3), -1.0),
        "response_mask": np.ones((2, 3)),
    }
    change(args)
    with pytest.raises(ValueError, match=match):
        prepare_inputs(**args)


def test_float_and_mask_rules():
    for dtype, want in (
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ):
        t, was_numpy = as_float_tensor(torch.zeros(2, 2, dtype=dtype), "x")
        assert t.dtype == want and not was_numpy
        assert compute_dtype(t) == want
    x = torch.ones(2, requires_grad=True)
    assert not as_tensor(x * 2, "x")[0].requires_grad  # masks are not differentiable
    with pytest.raises(ValueError, match="^x must be a numeric array"):
        as_tensor({"a": 1}, "x")
    b = torch.tensor([[True, False]])
    assert valid_positions(b) is b
    assert valid_positions(torch.tensor([[1.0, 0.0]])).tolist() == [[True, False]]
    assert first_index(torch.tensor([[False, False], [False, True]])) == (1, 1)
    out = to_output(torch.ones(2), True)
    assert isinstance(out, np.ndarray) and isinstance(to_output(torch.ones(2), False), torch.Tensor)


def test_values_choices_and_thresholds():
    t = torch.tensor([[-math.inf, 0.0]])
    valid = torch.tensor([[True, True]])
    check_values("log_prob", t, valid, allow_neg_inf=True)  # returns quietly
    with pytest.raises(ValueError, match=r"^rollout_log_prob contains -inf at a valid position \(0, 0\)"):
        check_values("rollout_log_prob", t, valid, allow_neg_inf=False)
    check_values(
        "rollout_log_prob", t, torch.tensor([[False, True]]), allow_neg_inf=False
    )  # padding: ignored
    check_choice("mode", "max", ("max", "avg"))
    with pytest.raises(ValueError, match="^mode must be one of 'max', 'avg'; got 'min'"):
        check_choice("mode", "min", ("max", "avg"))
    assert check_threshold("delta", 0) == 0.0 and check_threshold("delta", np.float32(0.5)) == 0.5
    with pytest.raises(ValueError, match="^delta is required"):
        check_threshold("delta", None)
    for bad in (-1e-9, math.inf, math.nan):
        with pytest.raises(ValueError, match="^delta"):
            check_threshold("delta", bad)
