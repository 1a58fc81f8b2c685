"""Tests for trm_bounds/masks/advantages.py: group baselines over the kept samples, against a loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trm_bounds.masks import ADVANTAGE_KINDS, group_advantages


def _loop(R, gid, keep, kind, baseline, eps=1e-6):
    out = []
    for i in range(len(R)):
        if not keep[i]:
            out.append(0.0)
            continue
        if kind == "baseline":
            out.append(R[i] - baseline)
            continue
        members = [R[j] for j in range(len(R)) if gid[j] == gid[i] and keep[j]]
        mean = sum(members) / len(members)
        if kind == "drgrpo":
            out.append(R[i] - mean)
            continue
        n = len(members)
        std = math.sqrt(sum((x - mean) ** 2 for x in members) / (n - 1)) if n > 1 else 0.0
        out.append((R[i] - mean) / (std + eps))
    return out


@pytest.mark.parametrize("kind", list(ADVANTAGE_KINDS))
def test_group_advantages_against_a_loop(kind):
    rng = np.random.default_rng(3)
    for _ in range(200):
        B = int(rng.integers(1, 20))
        R = rng.standard_normal(B) if rng.random() < 0.5 else rng.integers(0, 2, B).astype(float)
        gid = rng.integers(0, 5, B)  # groups not contiguous
        keep = rng.random(B) < 0.7
        got = group_advantages(R, gid, keep, kind, baseline=0.3)
        np.testing.assert_allclose(got, _loop(R, gid, keep, kind, 0.3), rtol=1e-12, atol=1e-12)


def test_rejected_samples_do_not_shift_the_baseline():
    R = torch.tensor([1.0, 0.0, 0.0, 100.0])  # one group; the outlier is rejected
    A_all = group_advantages(R, torch.zeros(4, dtype=torch.int64), None, "drgrpo")
    A_kept = group_advantages(R, torch.zeros(4, dtype=torch.int64), torch.tensor([1, 1, 1, 0]), "drgrpo")
    assert A_kept.tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0.0])
    assert A_all[0] < 0  # the leak: with the rejected outlier the good sample looks bad


def test_group_advantages_without_keep_is_plain_grpo_and_validates():
    R = torch.tensor([1.0, 0.0, 1.0, 1.0])
    A = group_advantages(R, torch.tensor([0, 0, 1, 1]))
    assert A[0] > 0 > A[1] and A[2] == A[3] == 0.0  # a constant group has no signal
    with pytest.raises(ValueError, match="group_id"):
        group_advantages(R, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="keep"):
        group_advantages(R, torch.tensor([0, 0, 1, 1]), torch.ones(3))
    with pytest.raises(ValueError, match="kind"):
        group_advantages(R, torch.tensor([0, 0, 1, 1]), kind="rloo")
