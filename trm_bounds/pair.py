"""Policy pairs (pi_roll, pi_theta) over an enumerable tree: the .npz layout, validation,
construction from a policy plus a perturbation, and trajectory sampling.

Layout (docs/formats.md, "Exact policy-pair file"): for t = 1..T,
``logp_roll_{t}``, ``logp_theta_{t}`` of shape ``(P, V**(t-1), V)``, float64 log-probs;
row ``k`` of level ``t`` is the context whose tokens ``y_1..y_{t-1}`` are the base-V digits
of ``k`` (``y_1`` most significant), so the children of row ``k`` at level ``t+1`` are rows
``k*V .. k*V + V-1``; ``-inf`` marks a zero probability. ``reward``: ``(P, V**T)`` in [0, 1],
leaf ``k`` = the response whose tokens are the base-V digits of ``k``. ``prompt_probs``: ``(P,)``.

In Python a level list is indexed 0-based: ``levels[k]`` is level ``t = k + 1``.

`make_pair` makes pi_roll from the training policy pi_theta with a mismatch mechanism of
`trm_bounds.mismatch` (the one vocabulary, target ``tree``): dense, reverse, swap,
precision, moe, step. ``MISMATCHES`` is the view {name: what it does} of those.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._files import wrong_kind_hint
from ._validate import read_npz
from .divergences import token_kl
from .mismatch import MechanismView, resolve_one
from .policies import exact_J_tensor  # noqa: F401  (kept importable here: exact.py reads it from pair)

__all__ = [
    "PolicyPair",
    "validate_pair_arrays",
    "check_level_values",
    "make_pair",
    "MISMATCHES",
    "sample_trajectories",
    "draw_tokens",
    "token_logprobs",
    "token_kl_along",
    "leaf_index",
]

_NORM_TOL = 1e-8  # max |sum_v p(v|c) - 1| accepted for a row of log-probabilities


def _as_numpy(x, name: str) -> np.ndarray:
    """float64 numpy copy-free view of a tensor / array (detached, on CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from exc


def _check_level(name: str, x, shape: tuple[int, ...]) -> None:
    """One level of log-probs: shape, then `check_level_values`."""
    _check_level_shape(name, x, shape)
    check_level_values(name, x)


def _check_level_shape(name: str, x, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: wrong shape {tuple(x.shape)}, expected {shape}")


def check_level_values(name: str, x) -> None:
    """Values of one level of log-probs (rows along the last axis): no NaN, no +inf, no log-prob
    > 0, rows normalised (max |sum_v e^x - 1| <= 1e-8); ValueError naming the level otherwise.

    One comparison pass and one exp pass over the level (numpy input is wrapped, not copied).
    """
    with torch.no_grad():
        xt = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
        xt = xt.to(torch.float64)
        if xt.numel() == 0:
            return
        if not bool((xt <= 0).all()):  # NaN, +inf and positive values all fail this test
            if torch.isnan(xt).any():
                raise ValueError(f"{name} contains NaN")
            if (xt == float("inf")).any():
                raise ValueError(f"{name} contains +inf (a log-probability is <= 0)")
            raise ValueError(f"{name} has log-probabilities > 0 (max {float(xt.max()):g})")
        p = torch.exp(xt)
        total = p[..., 0].clone()
        for v in range(1, p.shape[-1]):  # unrolled: much faster than p.sum(-1) for small V
            total += p[..., v]
        gap = float((total - 1.0).abs().max())
    if gap > _NORM_TOL:
        raise ValueError(f"{name}: rows do not sum to 1 (max |sum-1| = {gap:.3g})")


def validate_pair_arrays(
    logp_roll: Sequence, logp_theta: Sequence, reward, prompt_probs, *, level_values: bool = True
) -> tuple[int, int, int]:
    """Check a pair in the .npz layout; returns (P, V, T) or raises ValueError naming the array.

    Checks: T >= 1 levels each, same T for both, level t of shape (P, V**(t-1), V), no NaN,
    no +inf, every row sums to 1 (to 1e-8); reward (P, V**T) in [0, 1] without NaN;
    prompt_probs (P,) >= 0 summing to 1 (to 1e-9). level_values=False skips the levels'
    value checks (`check_level_values`, one exp pass per level) for a caller that does them
    itself in the same order (the exact engine's fused kernel reads every level anyway).
    """
    if len(logp_roll) < 1:
        raise ValueError("logp_roll_1: missing level (a pair needs T >= 1 levels)")
    if len(logp_theta) != len(logp_roll):
        t = min(len(logp_theta), len(logp_roll)) + 1
        which = "logp_theta" if len(logp_theta) < len(logp_roll) else "logp_roll"
        raise ValueError(
            f"{which}_{t}: missing level (logp_roll has {len(logp_roll)}, logp_theta {len(logp_theta)})"
        )
    T = len(logp_roll)
    first = logp_roll[0]
    if getattr(first, "ndim", 0) != 3 or first.shape[1] != 1:
        raise ValueError(f"logp_roll_1: wrong shape {tuple(np.shape(first))}, expected (P, 1, V)")
    P, _, V = (int(s) for s in first.shape)
    if P < 1 or V < 1:
        raise ValueError(f"logp_roll_1: wrong shape {tuple(first.shape)}, P and V must be >= 1")
    for name, levels in (("logp_roll", logp_roll), ("logp_theta", logp_theta)):
        for k, x in enumerate(levels):
            if level_values:
                _check_level(f"{name}_{k + 1}", x, (P, V**k, V))
            else:
                _check_level_shape(f"{name}_{k + 1}", x, (P, V**k, V))
    R = _as_numpy(reward, "reward")
    if R.shape != (P, V**T):
        raise ValueError(f"reward: wrong shape {R.shape}, expected {(P, V**T)}")
    if np.isnan(R).any():
        raise ValueError("reward contains NaN")
    if R.size and (R.min() < 0 or R.max() > 1):
        raise ValueError(f"reward must lie in [0, 1], got min {R.min():g}, max {R.max():g}")
    check_prompt_probs(prompt_probs, P)
    return P, V, T


def check_prompt_probs(prompt_probs, P: int) -> np.ndarray:
    """prompt_probs as a float64 (P,) array >= 0 summing to 1 (to 1e-9); ValueError naming it otherwise."""
    pp = _as_numpy(prompt_probs, "prompt_probs")
    if pp.shape != (P,):
        raise ValueError(f"prompt_probs: wrong shape {pp.shape}, expected ({P},)")
    if np.isnan(pp).any() or (pp < 0).any():
        raise ValueError("prompt_probs must be >= 0 and not NaN")
    if abs(pp.sum() - 1.0) > 1e-9:
        raise ValueError(f"prompt_probs must sum to 1, got {pp.sum():.12g}")
    return pp


_LEVEL_KEY = re.compile(r"logp_(roll|theta)_(\d+)")


def _level_count(files, fname: str) -> int:
    """T of a pair file whose level arrays are logp_roll_t, logp_theta_t for exactly t = 1..T.

    A gap (levels 1-4 and 6) or a stray number (0, 07) raises ValueError naming the missing
    or unexpected array, instead of silently reading the file as a shorter horizon.
    """
    levels = {"roll": set(), "theta": set()}
    for key in files:
        m = _LEVEL_KEY.fullmatch(key)
        if m:
            if m.group(2) != str(int(m.group(2))) or int(m.group(2)) < 1:
                raise ValueError(f"{key}: level numbers are t = 1..T (no 0, no leading zeros) in {fname}")
            levels[m.group(1)].add(int(m.group(2)))
    T = max(max(v, default=0) for v in levels.values())
    for name, have in levels.items():
        for t in range(1, T + 1):
            if t not in have:
                raise ValueError(f"logp_{name}_{t}: missing level from {fname} (levels up to {T} present)")
    return T


@dataclass(frozen=True)
class PolicyPair:
    """A rollout / training policy pair on the full tree, with reward and prompt law.

    Fields:
      logp_roll: tuple of T arrays/tensors, level t of shape (P, V**(t-1), V): log pi_roll.
      logp_theta: the same for log pi_theta.
      reward: (P, V**T) in [0, 1]; leaf k = base-V digits of k.
      prompt_probs: (P,), the prompt law P(x).
    """

    logp_roll: tuple
    logp_theta: tuple
    reward: object
    prompt_probs: object

    def __post_init__(self):
        object.__setattr__(self, "logp_roll", tuple(self.logp_roll))
        object.__setattr__(self, "logp_theta", tuple(self.logp_theta))

    @property
    def P(self) -> int:
        return int(self.logp_roll[0].shape[0])

    @property
    def V(self) -> int:
        return int(self.logp_roll[0].shape[-1])

    @property
    def T(self) -> int:
        return len(self.logp_roll)

    def validate(self) -> tuple[int, int, int]:
        """(P, V, T), or ValueError naming the offending array."""
        return validate_pair_arrays(self.logp_roll, self.logp_theta, self.reward, self.prompt_probs)

    def arrays(self) -> dict[str, np.ndarray]:
        """The .npz dict (float64 numpy), keys as docs/formats.md."""
        out = {}
        for name, levels in (("logp_roll", self.logp_roll), ("logp_theta", self.logp_theta)):
            for k, x in enumerate(levels):
                out[f"{name}_{k + 1}"] = _as_numpy(x, f"{name}_{k + 1}")
        out["reward"] = _as_numpy(self.reward, "reward")
        out["prompt_probs"] = _as_numpy(self.prompt_probs, "prompt_probs")
        return out

    def save(self, path: str | Path) -> None:
        """Validate, then write the .npz (nothing is written if validation fails)."""
        self.validate()
        np.savez(Path(path), **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> PolicyPair:
        """Read and validate a pair file; ValueError names the missing / malformed array."""
        path = Path(path)
        data = read_npz(path, "pair")
        for key in ("reward", "prompt_probs", "logp_roll_1", "logp_theta_1"):
            if key not in data:
                raise ValueError(f"{key}: missing from {path.name}{wrong_kind_hint(data, 'pair')}")
        T = _level_count(data, path.name)
        arrays = {}
        for key, a in data.items():
            if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
                raise ValueError(f"{key}: must be a real numeric array, got dtype {a.dtype}")
            arrays[key] = a.astype(np.float64, copy=not a.flags.writeable)  # the tensors need writable memory
        R = arrays["reward"]
        if R.ndim == 2 and R.shape[1] != 0:
            V = int(arrays["logp_roll_1"].shape[-1]) if arrays["logp_roll_1"].ndim == 3 else 0
            if V > 1 and R.shape[1] > V**T and R.shape[1] % (V**T) == 0:
                missing = T + 1
                raise ValueError(
                    f"logp_roll_{missing}: missing level "
                    f"(reward has {R.shape[1]} leaves, more than V**T = {V**T})"
                )
        pair = cls(
            logp_roll=tuple(arrays[f"logp_roll_{t}"] for t in range(1, T + 1)),
            logp_theta=tuple(arrays[f"logp_theta_{t}"] for t in range(1, T + 1)),
            reward=R,
            prompt_probs=arrays["prompt_probs"],
        )
        pair.validate()
        return pair

    def to(self, device="cpu") -> PolicyPair:
        """The same pair as float64 torch tensors on `device` (detached)."""
        conv = lambda x: torch.as_tensor(
            _as_numpy(x, "array") if not isinstance(x, torch.Tensor) else x.detach()
        ).to(device, torch.float64)
        return PolicyPair(
            tuple(conv(x) for x in self.logp_roll),
            tuple(conv(x) for x in self.logp_theta),
            conv(self.reward),
            conv(self.prompt_probs),
        )


# --------------------------------------------------------------------------- construction
MISMATCHES = MechanismView("tree", lambda m: f"{m.description} (S = {m.strength}; default {m.default})")


def make_pair(
    policy: torch.nn.Module,
    mismatch: str,
    strength=None,
    *,
    reward,
    prompt_probs=None,
    seed: int = 0,
) -> PolicyPair:
    """Build (pi_roll, pi_theta) from `policy` (= pi_theta unless said otherwise) and a mechanism.

    Args:
      policy: any trm_bounds policy (attributes P, V, T; method log_prob_tree).
      mismatch: a mechanism of trm_bounds.mismatch that applies to a tree (MISMATCHES keys);
        old spellings (sparse, staleness) work with a DeprecationWarning.
      strength: its strength S (None: the mechanism's default); see MISMATCHES.
      reward: (P, V**T) in [0, 1]; prompt_probs: (P,) or None (uniform).
      seed: seeds the perturbation (dense noise, flip sites, router noise).

    Returns:
      PolicyPair of detached float64 CPU tensors.
    """
    mech, strength = resolve_one(mismatch, strength, "tree")
    P = policy.P
    if prompt_probs is None:
        prompt_probs = torch.full((P,), 1.0 / P, dtype=torch.float64)
    prompt_probs = torch.as_tensor(_as_numpy(prompt_probs, "prompt_probs"))
    reward = torch.as_tensor(_as_numpy(reward, "reward"))
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        theta = [x.detach() for x in policy.log_prob_tree()]
    roll, theta = mech.tree(policy, theta, strength, gen, reward, prompt_probs)
    return PolicyPair(tuple(roll), tuple(theta), reward, prompt_probs)


# --------------------------------------------------------------------------- sampling
def _levels_torch(levels: Sequence) -> list[torch.Tensor]:
    return [
        x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64)) for x in levels
    ]


def leaf_index(tokens: torch.Tensor, V: int) -> torch.Tensor:
    """Leaf / context index of token rows (n, t): sum_j y_j V**(t-1-j) (y_1 most significant)."""
    idx = torch.zeros(tokens.shape[0], dtype=torch.int64, device=tokens.device)
    for j in range(tokens.shape[1]):
        idx = idx * V + tokens[:, j]
    return idx


def sample_trajectories(
    logp_levels: Sequence, prompt_probs, n: int, generator: torch.Generator | None = None
) -> dict:
    """Draw n trajectories (x, y_1..y_T) from the tree: x ~ P(x), y_t ~ pi(.|c_t).

    Returns dict: prompt (n,) int64, tokens (n, T) int64, index (n,) int64 leaf index
    (row of `reward`), logp (n, T) float64 = log pi(y_t | c_t). No Python loop over
    trajectories (one vectorized draw per level).
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    levels = _levels_torch(logp_levels)
    pp = torch.as_tensor(_as_numpy(prompt_probs, "prompt_probs"))
    if pp.ndim != 1 or pp.shape[0] != levels[0].shape[0] or (pp < 0).any() or pp.sum() <= 0:
        raise ValueError(f"prompt_probs must be ({levels[0].shape[0]},) non-negative with positive sum")
    prompt = torch.multinomial(pp, int(n), replacement=True, generator=generator)
    return draw_tokens([x.detach().to("cpu", torch.float64) for x in levels], prompt, generator)


def draw_tokens(levels: Sequence[torch.Tensor], prompt: torch.Tensor, generator=None) -> dict:
    """y_t ~ pi(.|c_t), t = 1..T, for given prompts (n,): `sample_trajectories` after its prompt draw.

    levels: T detached float64 CPU tensors (P, V**(t-1), V) of log-probs, not checked (callers
    validated them, or made them with log_softmax). One multinomial draw per level, in order.
    """
    V = levels[0].shape[-1]
    row = torch.zeros(prompt.shape[0], dtype=torch.int64)
    tokens, logps = [], []
    for x in levels:
        lp = x[prompt, row]  # (n, V)
        tok = torch.multinomial(torch.exp(lp), 1, generator=generator)[:, 0]
        tokens.append(tok)
        logps.append(lp.gather(1, tok[:, None])[:, 0])
        row = row * V + tok
    return {"prompt": prompt, "tokens": torch.stack(tokens, 1), "index": row, "logp": torch.stack(logps, 1)}


def token_logprobs(levels: Sequence, prompt, tokens) -> torch.Tensor:
    """log pi(y_t | c_t) along given trajectories: (n,), (n, T) -> (n, T), differentiable in `levels`."""
    levels = _levels_torch(levels)
    prompt = torch.as_tensor(prompt, dtype=torch.int64)
    tokens = torch.as_tensor(tokens, dtype=torch.int64)
    if tokens.ndim != 2 or tokens.shape[1] != len(levels) or prompt.shape != tokens.shape[:1]:
        raise ValueError(
            f"tokens must be (n, {len(levels)}) and prompt (n,), "
            f"got {tuple(tokens.shape)}, {tuple(prompt.shape)}"
        )
    V = levels[0].shape[-1]
    row = torch.zeros_like(prompt)
    out = []
    for t, x in enumerate(levels):
        tok = tokens[:, t].to(x.device)
        out.append(x[prompt.to(x.device), row.to(x.device), tok])
        row = row * V + tokens[:, t]
    return torch.stack(out, 1)


def token_kl_along(levels_roll: Sequence, levels_theta: Sequence, prompt, tokens) -> torch.Tensor:
    """Exact KL(pi_roll(.|c_t) || pi_theta(.|c_t)) at the contexts of given trajectories: (n, T)."""
    lr, lt = _levels_torch(levels_roll), _levels_torch(levels_theta)
    prompt = torch.as_tensor(prompt, dtype=torch.int64)
    tokens = torch.as_tensor(tokens, dtype=torch.int64)
    if tokens.ndim != 2 or tokens.shape[1] != len(lr) or len(lt) != len(lr):
        raise ValueError(f"tokens must be (n, {len(lr)}) and both trees must have {len(lr)} levels")
    V = lr[0].shape[-1]
    row = torch.zeros_like(prompt)
    a, b = [], []
    for t in range(len(lr)):
        a.append(lr[t].detach()[prompt, row])  # (n, V)
        b.append(lt[t].detach()[prompt, row])
        row = row * V + tokens[:, t]
    return token_kl(torch.cat(a), torch.cat(b)).reshape(len(lr), -1).T.contiguous()  # one call, every (t, sample)
