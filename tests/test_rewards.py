"""Tests for trm_bounds/rewards.py: every family against a loop over leaves in the INTERFACES.md
leaf order, the [0, 1] range, seeding, the `make_reward` registry, and argument errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trm_bounds.rewards import (
    REWARDS,
    count_reward,
    leaf_digits,
    length_reward,
    make_reward,
    match_target_reward,
    parity_reward,
    random_reward,
    response_length,
    table_reward,
)


def _digits(k, V, T):
    """Tokens y_1..y_T of leaf k: its base-V digits, y_1 most significant."""
    return [(k // V ** (T - 1 - j)) % V for j in range(T)]


@given(V=st.integers(2, 3), T=st.integers(1, 4), seed=st.integers(0, 100))
def test_reward_families_match_a_loop_over_leaves(V, T, seed):
    P = 2
    target = torch.randint(0, V, (P, T), generator=torch.Generator().manual_seed(seed))
    match = match_target_reward(P, V, T, target=target)
    exact = match_target_reward(P, V, T, target=target, partial=False)
    count = count_reward(P, V, T, token=0, target_count=T // 2)
    parity = parity_reward(P, V, T, token=1)
    length = length_reward(P, V, T, eos=V - 1)
    L = response_length(V, T, V - 1)
    for k in range(V**T):
        y = _digits(k, V, T)
        assert [int(leaf_digits(V, T, j)[k]) for j in range(T)] == y
        first = next((j + 1 for j, v in enumerate(y) if v == V - 1), T)
        assert L[k] == first
        assert length[0, k] == 1.0 - abs(first - (T // 2 + 1)) / T
        assert count[1, k] == float(y.count(0) == T // 2)
        assert parity[0, k] == float(y.count(1) % 2 == 0)
        for x in range(P):
            hits = sum(a == b for a, b in zip(y, target[x].tolist()))
            assert match[x, k] == hits / T
            assert exact[x, k] == float(hits == T)
    for R in (match, exact, count, parity, length, random_reward(P, V, T, seed=seed)):
        assert R.shape == (P, V**T) and R.dtype == torch.float64
        assert bool((R >= 0).all()) and bool((R <= 1).all())


def test_response_length_without_eos_is_T():
    assert response_length(3, 2, None).tolist() == [2] * 9


def test_random_reward_is_seeded_and_binary_is_0_or_1():
    a, b = random_reward(2, 2, 3, seed=5), random_reward(2, 2, 3, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, random_reward(2, 2, 3, seed=6))
    binary = random_reward(4, 2, 4, seed=0, binary=True)
    assert set(binary.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_make_reward_builds_every_listed_family(name):
    R = make_reward(name, 2, 3, 3, seed=1, eos=2)
    assert R.shape == (2, 27) and bool((R >= 0).all()) and bool((R <= 1).all())
    assert torch.equal(R, make_reward(name, 2, 3, 3, seed=1, eos=2))  # deterministic given the seed


def test_make_reward_dispatches_to_the_family_with_its_defaults():
    assert torch.equal(make_reward("random", 1, 2, 3, seed=4), random_reward(1, 2, 3, seed=4))
    assert torch.equal(make_reward("match", 1, 2, 3, seed=4), match_target_reward(1, 2, 3, seed=4))
    assert torch.equal(make_reward("count", 1, 2, 3), count_reward(1, 2, 3))
    assert torch.equal(make_reward("parity", 1, 2, 3), parity_reward(1, 2, 3))
    assert torch.equal(make_reward("length", 1, 2, 3, eos=1), length_reward(1, 2, 3, eos=1))


def test_table_reward_keeps_a_valid_table_and_refuses_bad_ones():
    table = [[0.0, 0.25, 1.0, 0.5]]
    R = table_reward(table)
    assert R.dtype == torch.float64 and R.tolist() == table
    with pytest.raises(ValueError, match=r"^reward table must be \(P, V\*\*T\), got shape \(4,\)"):
        table_reward([0.0, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="^reward table contains NaN"):
        table_reward([[0.0, float("nan")]])
    with pytest.raises(ValueError, match=r"^reward table must lie in \[0, 1\], got min -0.1, max 1"):
        table_reward([[-0.1, 1.0]])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: random_reward(0, 2, 3), "P must be an integer >= 1"),
        (lambda: random_reward(1, True, 3), "V must be an integer >= 1"),
        (lambda: count_reward(1, 2, 2.0), "T must be an integer >= 1"),
        (lambda: leaf_digits(2, 3, 3), "j must be in [0, 3)"),
        (lambda: match_target_reward(1, 2, 2, target=[[0, 2]]), "target must be (1, 2) tokens in [0, 2)"),
        (lambda: count_reward(1, 2, 2, token=2), "token must be in [0, 2)"),
        (lambda: parity_reward(1, 2, 2, token=-1), "token must be in [0, 2)"),
        (lambda: length_reward(1, 2, 2, eos=5), "eos must be in [0, 2)"),
        (lambda: length_reward(1, 2, 2, eos=0, target_length=3), "target_length must be in [1, 2]"),
        (lambda: make_reward("length", 1, 2, 2), "reward 'length' needs an EOS token"),
        (lambda: make_reward("nope", 1, 2, 2), "reward must be one of random, match"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message), str(info.value)
