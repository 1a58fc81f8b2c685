"""Tests for trm_bounds/pair.py: .npz round trip and validation, perturbations, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trm_bounds.divergences import token_kl
from trm_bounds.pair import (
    MISMATCHES,
    PolicyPair,
    make_pair,
    sample_trajectories,
    token_kl_along,
    token_logprobs,
)
from trm_bounds.policies import MoEConfig, MoEPolicy, TabularPolicy
from trm_bounds.rewards import random_reward


def _pair(seed=0, P=2, V=3, T=3, mismatch="dense", strength=0.3):
    pol = TabularPolicy(P, V, T, seed=seed)
    return make_pair(pol, mismatch, strength, reward=random_reward(P, V, T, seed=seed), seed=seed)


def test_save_load_round_trip(tmp_path):
    pair = _pair()
    pair.save(tmp_path / "p.npz")
    back = PolicyPair.load(tmp_path / "p.npz")
    assert (back.P, back.V, back.T) == (2, 3, 3)
    for a, b in zip(pair.logp_roll + pair.logp_theta, back.logp_roll + back.logp_theta):
        assert np.array_equal(np.asarray(a), b)


@pytest.mark.parametrize(
    "mutate, word",
    [
        (lambda a: a.__setitem__("logp_roll", a["logp_roll"][:2]), "logp_roll_3"),
        (lambda a: a["logp_theta"].__setitem__(1, a["logp_theta"][1][:, :2]), "logp_theta_2"),
        (
            lambda a: a["logp_roll"].__setitem__(2, a["logp_roll"][2] + np.log(0.8)),
            "logp_roll_3: rows do not sum",
        ),
        (lambda a: a.__setitem__("reward", a["reward"] + 1.0), "reward"),
        (lambda a: a["logp_theta"][0].__setitem__((0, 0, 0), np.nan), "logp_theta_1 contains NaN"),
        (lambda a: a.__setitem__("prompt_probs", np.array([0.7, 0.7])), "prompt_probs"),
    ],
)
def test_validation_names_the_array_and_writes_nothing(tmp_path, mutate, word):
    pair = _pair()
    a = {
        "logp_roll": [np.asarray(x).copy() for x in pair.logp_roll],
        "logp_theta": [np.asarray(x).copy() for x in pair.logp_theta],
        "reward": np.asarray(pair.reward).copy(),
        "prompt_probs": np.asarray(pair.prompt_probs).copy(),
    }
    mutate(a)
    bad = PolicyPair(tuple(a["logp_roll"]), tuple(a["logp_theta"]), a["reward"], a["prompt_probs"])
    with pytest.raises(ValueError, match=word.replace("(", r"\(")):
        bad.save(tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.parametrize("mismatch", sorted(MISMATCHES))
def test_every_mismatch_gives_a_valid_pair_that_differs(mismatch):
    if mismatch == "moe":
        pol = MoEPolicy(MoEConfig(P=1, V=2, T=4, router_scale=0.3))
        strength = 1.0
    else:
        pol = TabularPolicy(2, 2, 4, seed=1)
        strength = 0.3 if mismatch != "precision" else None  # None: its default, bf16
    pair = make_pair(pol, mismatch, strength, reward=random_reward(pol.P, 2, 4), seed=2)
    assert pair.validate() == (pol.P, 2, 4)
    assert any(not torch.allclose(a, b) for a, b in zip(pair.logp_roll, pair.logp_theta))
    with pytest.raises(ValueError, match="mismatch"):
        make_pair(pol, "nonsense", 0.1, reward=pair.reward)


def test_sampling_frequencies_match_exact_leaf_probabilities():
    pair = _pair(P=2, V=2, T=3)
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    s = sample_trajectories(pair.logp_roll, pair.prompt_probs, n, generator=gen)
    assert s["tokens"].shape == (n, 3) and s["tokens"].dtype == torch.int64
    # exact leaf law, by a loop over leaves (the slow twin)
    counts = torch.zeros(2, 8)
    counts.index_put_((s["prompt"], s["index"]), torch.ones(n), accumulate=True)
    pp = torch.as_tensor(pair.prompt_probs)
    for x in range(2):
        for k in range(8):
            y = [(k >> 2) & 1, (k >> 1) & 1, k & 1]
            row, lp = 0, 0.0
            for t in range(3):
                lp += float(pair.logp_roll[t][x, row, y[t]])
                row = row * 2 + y[t]
            p = float(pp[x]) * math.exp(lp)
            assert abs(counts[x, k] / n - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-4
    # log-probs along the samples agree with the helper, under the same tree
    assert torch.allclose(token_logprobs(pair.logp_roll, s["prompt"], s["tokens"]), s["logp"])


def test_token_kl_along_matches_per_context_kl():
    pair = _pair(P=1, V=3, T=3)
    s = sample_trajectories(pair.logp_roll, pair.prompt_probs, 50, generator=torch.Generator().manual_seed(1))
    kl = token_kl_along(pair.logp_roll, pair.logp_theta, s["prompt"], s["tokens"])
    for i in range(50):
        row = 0
        for t in range(3):
            want = token_kl(pair.logp_roll[t][0, row], pair.logp_theta[t][0, row])
            assert float(kl[i, t]) == pytest.approx(float(want), abs=1e-15)
            row = row * 3 + int(s["tokens"][i, t])


# --------------------------------------------------------------------------- check_level_values
def test_check_level_values_names_each_kind_of_bad_value():
    """Each failure has its own message naming the level (NaN, +inf, > 0 with its max, row sums)."""
    from trm_bounds.pair import check_level_values

    half = math.log(0.5)
    with pytest.raises(ValueError, match=r"^lvl contains NaN$"):
        check_level_values("lvl", np.array([[half, np.nan]]))
    with pytest.raises(ValueError, match=r"^lvl contains \+inf"):
        check_level_values("lvl", np.array([[0.0, np.inf]]))
    # a positive log-prob whose row still sums to more than 1: the "> 0" message, with the max
    with pytest.raises(ValueError, match=r"^lvl has log-probabilities > 0 \(max 0\.25\)$"):
        check_level_values("lvl", np.array([[0.25, -np.inf]]))
    with pytest.raises(ValueError, match=r"^lvl has log-probabilities > 0"):
        check_level_values("lvl", np.array([[0.5]]))  # a single element is checked too
    with pytest.raises(ValueError, match=r"^lvl: rows do not sum to 1"):
        check_level_values("lvl", np.array([[half, half], [half, -np.inf]]))
    check_level_values("lvl", np.zeros((0, 3)))  # an empty level has nothing to check
    check_level_values("lvl", np.array([[half, half], [0.0, -np.inf]]))


def test_check_level_values_reads_tensors_with_grad_and_checks_in_float64():
    """A tensor that requires grad is read (detached); float32 input is checked in float64:
    this row sums to 1 + 2e-9 in float64 but to 1 + 6e-8 in float32 arithmetic."""
    from trm_bounds.pair import check_level_values

    x = torch.log(torch.tensor([[0.25, 0.75]], dtype=torch.float64)).requires_grad_(True)
    check_level_values("lvl", x)
    with pytest.raises(ValueError, match="NaN"):
        check_level_values("lvl", torch.tensor([[0.0, math.nan]], requires_grad=True))
    x32 = np.array([[-2.989664316177368, -0.05161368474364281]], dtype=np.float32)
    assert abs(float(np.exp(x32.astype(np.float64)).sum()) - 1.0) < 1e-8
    check_level_values("lvl", x32)


def test_validate_pair_arrays_level_counts_shapes_and_level_values_flag():
    """T = 1 is a pair; a missing level is named; level_values=False still checks the shapes but
    not the values (the fused exact kernel checks those itself)."""
    from trm_bounds.pair import validate_pair_arrays

    half = math.log(0.5)
    lvl1 = np.full((1, 1, 2), half)
    lvl2 = np.full((1, 2, 2), half)
    R, pp = np.zeros((1, 2)), np.ones(1)
    assert validate_pair_arrays([lvl1], [lvl1], R, pp) == (1, 2, 1)
    with pytest.raises(ValueError, match=r"^logp_roll_1: missing level \(a pair needs T >= 1 levels\)$"):
        validate_pair_arrays([], [], R, pp)
    R2 = np.zeros((1, 4))
    with pytest.raises(ValueError, match=r"^logp_theta_2: missing level \(logp_roll has 2, logp_theta 1\)$"):
        validate_pair_arrays([lvl1, lvl2], [lvl1], R2, pp)
    with pytest.raises(ValueError, match=r"^logp_roll_2: missing level \(logp_roll has 1, logp_theta 2\)$"):
        validate_pair_arrays([lvl1], [lvl1, lvl2], R2, pp)
    with pytest.raises(ValueError, match=r"^logp_roll_1: wrong shape \(1, 2\), expected \(P, 1, V\)$"):
        validate_pair_arrays([lvl1[0]], [lvl1[0]], R, pp)
    with pytest.raises(ValueError, match=r"^logp_roll_1: wrong shape \(1, 2, 2\), expected \(P, 1, V\)$"):
        validate_pair_arrays([lvl2], [lvl2], R, pp)
    bad = np.full((1, 1, 2), 0.5)  # log-probs > 0
    with pytest.raises(ValueError, match="logp_theta_1 has log-probabilities > 0"):
        validate_pair_arrays([lvl1], [bad], R, pp)
    assert validate_pair_arrays([lvl1], [bad], R, pp, level_values=False) == (1, 2, 1)
    one = np.zeros((1, 1, 1))  # V = 1: one token, log-prob 0
    assert validate_pair_arrays([one], [one], np.zeros((1, 1)), pp) == (1, 1, 1)
    with pytest.raises(ValueError, match=r"^logp_roll_1: wrong shape \(1, 1, 0\), P and V must be >= 1$"):
        validate_pair_arrays([np.zeros((1, 1, 0))], [np.zeros((1, 1, 0))], np.zeros((1, 1)), pp)
    with pytest.raises(ValueError, match=r"^reward must be a numeric array, got str$"):
        validate_pair_arrays([lvl1], [lvl1], "abc", pp)
    with pytest.raises(ValueError, match=r"logp_theta_1: wrong shape \(1, 1, 3\), expected \(1, 1, 2\)"):
        validate_pair_arrays([lvl1], [np.full((1, 1, 3), half)], R, pp, level_values=False)


def test_validate_pair_arrays_reward_and_prompt_probs_messages():
    """The reward / prompt_probs checks name the array; a prompt of probability 0 is allowed."""
    from trm_bounds.pair import validate_pair_arrays

    lv = np.full((2, 1, 2), math.log(0.5))
    R = np.zeros((2, 2))
    assert validate_pair_arrays([lv], [lv], R, np.array([1.0, 0.0])) == (2, 2, 1)
    with pytest.raises(ValueError, match=r"^reward: wrong shape \(2, 3\), expected \(2, 2\)$"):
        validate_pair_arrays([lv], [lv], np.zeros((2, 3)), np.full(2, 0.5))
    with pytest.raises(ValueError, match=r"^reward contains NaN$"):
        validate_pair_arrays([lv], [lv], np.array([[0.0, np.nan], [0.0, 0.0]]), np.full(2, 0.5))
    with pytest.raises(ValueError, match=r"^prompt_probs must be a numeric array, got str$"):
        validate_pair_arrays([lv], [lv], R, "x")
    for bad in ([1.5, -0.5], [np.nan, 1.0]):
        with pytest.raises(ValueError, match=r"^prompt_probs must be >= 0 and not NaN$"):
            validate_pair_arrays([lv], [lv], R, np.array(bad))
