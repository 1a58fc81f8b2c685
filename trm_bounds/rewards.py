"""Reward families on the leaves of the tree, values in [0, 1].

Every function returns a float64 tensor of shape ``(P, V**T)``: entry ``[x, k]`` is
R(x, y) for the response y whose tokens are the base-V digits of k (y_1 most
significant), the docs/formats.md leaf order. No Python loop over leaves: token
positions are peeled off the leaf index one digit at a time (O(T V**T)).

With an absorbing EOS token, the response length is the position of the first EOS
(T if none); `length_reward` and `eos` arguments use that length.
"""

from __future__ import annotations

import torch

__all__ = [
    "leaf_digits",
    "response_length",
    "table_reward",
    "random_reward",
    "match_target_reward",
    "count_reward",
    "parity_reward",
    "length_reward",
    "REWARDS",
    "make_reward",
]


def _check(P: int, V: int, T: int) -> None:
    for name, v in (("P", P), ("V", V), ("T", T)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def leaf_digits(V: int, T: int, j: int) -> torch.Tensor:
    """(V**T,) int64: token y_{j+1} (0-based position j) of every leaf."""
    if not 0 <= j < T:
        raise ValueError(f"j must be in [0, {T}), got {j}")
    return (torch.arange(V**T, dtype=torch.int64) // V ** (T - 1 - j)) % V


def response_length(V: int, T: int, eos: int | None) -> torch.Tensor:
    """(V**T,) int64: 1-based position of the first EOS in each leaf (T if none / eos None)."""
    length = torch.full((V**T,), T, dtype=torch.int64)
    if eos is None:
        return length
    for j in reversed(range(T)):  # the last assignment is the first EOS
        length = torch.where(leaf_digits(V, T, j) == eos, j + 1, length)
    return length


def table_reward(table) -> torch.Tensor:
    """A given table (P, V**T), checked to lie in [0, 1] without NaN."""
    R = torch.as_tensor(table, dtype=torch.float64)
    if R.ndim != 2:
        raise ValueError(f"reward table must be (P, V**T), got shape {tuple(R.shape)}")
    if torch.isnan(R).any():
        raise ValueError("reward table contains NaN")
    if R.numel() and (R.min() < 0 or R.max() > 1):
        raise ValueError(
            f"reward table must lie in [0, 1], got min {float(R.min()):g}, max {float(R.max()):g}"
        )
    return R


def random_reward(P: int, V: int, T: int, *, seed: int = 0, binary: bool = False) -> torch.Tensor:
    """R ~ U[0, 1] i.i.d. per leaf (or Bernoulli(1/2) when binary)."""
    _check(P, V, T)
    gen = torch.Generator().manual_seed(int(seed))
    R = torch.rand((P, V**T), generator=gen, dtype=torch.float64)
    return (R < 0.5).to(torch.float64) if binary else R


def match_target_reward(
    P: int, V: int, T: int, *, target=None, seed: int = 0, partial: bool = True
) -> torch.Tensor:
    """R = fraction of positions with y_t = target_x[t] (partial) or 1[y = target_x] (exact).

    target: (P, T) int tokens, or None for a random target per prompt (seeded).
    """
    _check(P, V, T)
    if target is None:
        gen = torch.Generator().manual_seed(int(seed))
        target = torch.randint(0, V, (P, T), generator=gen)
    target = torch.as_tensor(target, dtype=torch.int64)
    if tuple(target.shape) != (P, T) or (target < 0).any() or (target >= V).any():
        raise ValueError(f"target must be ({P}, {T}) tokens in [0, {V})")
    hits = torch.zeros((P, V**T), dtype=torch.float64)
    for j in range(T):
        hits += (leaf_digits(V, T, j)[None, :] == target[:, j : j + 1]).to(torch.float64)
    return hits / T if partial else (hits == T).to(torch.float64)


def count_reward(P: int, V: int, T: int, *, token: int = 0, target_count: int | None = None) -> torch.Tensor:
    """Counting task: R = 1[#{t: y_t = token} = target_count] (default target_count = T // 2),
    the same for every prompt."""
    _check(P, V, T)
    if not 0 <= token < V:
        raise ValueError(f"token must be in [0, {V}), got {token}")
    target_count = T // 2 if target_count is None else int(target_count)
    count = sum((leaf_digits(V, T, j) == token).to(torch.int64) for j in range(T))
    return (count == target_count).to(torch.float64)[None].expand(P, -1).clone()


def parity_reward(P: int, V: int, T: int, *, token: int = 1) -> torch.Tensor:
    """Parity task: R = 1[#{t: y_t = token} is even], the same for every prompt."""
    _check(P, V, T)
    if not 0 <= token < V:
        raise ValueError(f"token must be in [0, {V}), got {token}")
    count = sum((leaf_digits(V, T, j) == token).to(torch.int64) for j in range(T))
    return (count % 2 == 0).to(torch.float64)[None].expand(P, -1).clone()


def length_reward(P: int, V: int, T: int, *, eos: int, target_length: int | None = None) -> torch.Tensor:
    """Length-dependent reward: R = 1 - |L - L*| / T with L the response length (first EOS)
    and L* = target_length (default T // 2 + 1); in [0, 1] since |L - L*| <= T - 1."""
    _check(P, V, T)
    if not 0 <= eos < V:
        raise ValueError(f"eos must be in [0, {V}), got {eos}")
    L_star = T // 2 + 1 if target_length is None else int(target_length)
    if not 1 <= L_star <= T:
        raise ValueError(f"target_length must be in [1, {T}], got {L_star}")
    L = response_length(V, T, eos).to(torch.float64)
    return (1.0 - (L - L_star).abs() / T)[None].expand(P, -1).clone()


REWARDS = {
    "random": "R ~ U[0, 1] per leaf (seeded)",
    "match": "fraction of positions matching a random per-prompt target",
    "count": "1[number of token-0 = T // 2]",
    "parity": "1[number of token-1 is even]",
    "length": "1 - |L - L*| / T, L = position of the first EOS (needs eos)",
}


def make_reward(name: str, P: int, V: int, T: int, *, seed: int = 0, eos: int | None = None) -> torch.Tensor:
    """The reward family `name` (a key of REWARDS) with its defaults."""
    if name == "random":
        return random_reward(P, V, T, seed=seed)
    if name == "match":
        return match_target_reward(P, V, T, seed=seed)
    if name == "count":
        return count_reward(P, V, T)
    if name == "parity":
        return parity_reward(P, V, T)
    if name == "length":
        if eos is None:
            raise ValueError("reward 'length' needs an EOS token (--eos)")
        return length_reward(P, V, T, eos=eos)
    raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {name!r}")
