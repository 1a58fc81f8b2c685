"""Adversarial random pairs for testing and measuring the bounds: the one builder (numpy only).

A *pair* here is what `trm_bounds.exact.exact_quantities` takes (docs/theory.md section 2):
log-prob levels ``logp_roll[t-1], logp_theta[t-1]`` of shape ``(P, V**(t-1), V)`` (row =
base-V digits of y_<t, docs/formats.md layout, -inf = probability 0), reward ``(P, V**T)`` in
[0, 1] and the prompt law ``(P,)``. Every row is normalised with
`trm_bounds.divergences.log_softmax` (log1p form), so it is a distribution to rounding even at logits
of 1e3.

Kinds (`ADVERSARIAL_KINDS`), each stressing one step of the proofs:

- ``dense``: pi_theta = pi_roll's logits + Gaussian noise of std 10^U(-3, 0.3);
- ``sparse``: at 20% of contexts the logits are reversed and tripled (a routing flip);
- ``near_det``: logit scale 12 (near-deterministic policies);
- ``zeros_roll`` / ``zeros_theta``: 30% of the tokens get probability 0 under pi_roll /
  pi_theta (pi_theta not << pi_roll; delta = inf);
- ``extreme``: logits of 1e3, perturbations of 1e-6, 1 or 1e3 per entry;
- ``tilted``: the tightness example of `trm_bounds.refined.tight_pair` with noise: pi_theta
  tilts toward higher tokens, more at later levels, with the parity reward;
- ``small_delta``: the paper's regime, max token KL delta <= 1e-3 (noise std 10^U(-4, -2.5)
  on logits of scale 1.5, rescaled when needed), so the bounds are small (1e-6 .. 1e-1) and
  a check with an absolute slack would be vacuous;
- ``near_tied``: `tight_pair` itself embedded in a random pair (levels 1 and 2 of
  pi_roll uniform, of pi_theta tilted by a <= b, parity reward; V = 2 and T = 2 whatever is
  asked), where |Error| = 2 a b is exactly half of adaptive_tv (and of coupling when a = b,
  drawn in half of the pairs): a check against the halved bounds of `trm_bounds.refined` is
  tied to rounding.

`adversarial_pair(rng, kind, P, V, T)` draws one pair; `adversarial_pairs(n, seed, ...)` yields
n of them with the kinds in turn. The first seven kinds consume the generator exactly as
they always have, so seeds pinned in tests keep their pairs.

`random_batch(rng, B, T, V)` draws B one-prompt pairs at once, stacked on a leading axis
(`PairBatch`), for the batched engine `trm_bounds.exact_batch` (the audit's tiny search):
pi_roll logits of scale e^U(log 0.1, log 8), pi_theta = pi_roll + noise of scale
e^U(log 1e-3, log 6) on a random subset of the contexts, and a 0/1 or uniform reward.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from .divergences import log_softmax

__all__ = [
    "ADVERSARIAL_KINDS",
    "PAPER_REGIME_DELTA",
    "Pair",
    "PairBatch",
    "adversarial_pair",
    "adversarial_pairs",
    "random_batch",
]

ADVERSARIAL_KINDS = (
    "dense",
    "sparse",
    "near_det",
    "zeros_roll",
    "zeros_theta",
    "extreme",
    "tilted",
    "small_delta",
    "near_tied",
)
PAPER_REGIME_DELTA = 1e-3  # kind "small_delta" keeps the max token KL at or below this


class Pair(NamedTuple):
    """One pair in the `exact_quantities` argument order."""

    logp_roll: list
    logp_theta: list
    reward: np.ndarray
    prompt_probs: np.ndarray


class PairBatch(NamedTuple):
    """B one-prompt pairs: logp_roll[k], logp_theta[k] (B, V**k, V); reward (B, V**T)."""

    logp_roll: tuple
    logp_theta: tuple
    reward: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """(B, T, V)."""
        B, _, V = self.logp_roll[0].shape
        return B, len(self.logp_roll), V

    def take(self, index) -> PairBatch:
        """The pairs at `index` (an index array or slice over B)."""
        return PairBatch(
            tuple(x[index] for x in self.logp_roll),
            tuple(x[index] for x in self.logp_theta),
            self.reward[index],
        )


def _check_shape(P: int, V: int, T: int, first: str = "P") -> None:
    for name, value, lo in ((first, P, 1), ("V", V, 2), ("T", T, 1)):
        if int(value) != value or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")


def adversarial_pair(rng: np.random.Generator, kind: str, P: int, V: int, T: int) -> Pair:
    """One random exact pair of the given kind (module docstring): a `Pair` of float64 arrays.

    logp_*: T arrays (P, V**(t-1), V); reward (P, V**T) in [0, 1]; prompt_probs (P,)
    (with P > 1, prompt 0 gets probability 0 in about 30% of the pairs).
    """
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"kind must be one of {ADVERSARIAL_KINDS}, got {kind!r}")
    _check_shape(P, V, T)
    if kind == "near_tied":
        return _near_tied(rng, P, V, T)
    scale = {"near_det": 12.0, "extreme": 1e3, "tilted": 0.05}.get(kind, 1.5)
    zr = [scale * rng.standard_normal((P, V**k, V)) for k in range(T)]
    zt = []
    for k, z in enumerate(zr):
        if kind == "sparse":
            flip = rng.random(z.shape[:-1]) < 0.2
            zt.append(np.where(flip[..., None], 3.0 * z[..., ::-1], z))
        elif kind == "extreme":
            zt.append(z + rng.choice([1e-6, 1.0, 1e3], size=z.shape) * rng.standard_normal(z.shape))
        elif kind == "tilted":  # theta tilts toward token 1 at level 1 by a, later levels by b >= a
            tilt = rng.uniform(0.0, 0.6) * (1.0 if k == 0 else rng.uniform(1.0, 4.0))
            zt.append(z + tilt * np.arange(V) * rng.choice([-1.0, 1.0]))
        elif kind == "small_delta":
            zt.append(z + 10 ** rng.uniform(-4, -2.5) * rng.standard_normal(z.shape))
        else:
            zt.append(z + 10 ** rng.uniform(-3, 0.3) * rng.standard_normal(z.shape))
    if kind in ("zeros_roll", "zeros_theta"):
        target = zr if kind == "zeros_roll" else zt
        for k, z in enumerate(target):
            kill = rng.random(z.shape) < 0.3
            kill[..., 0] = False  # every row keeps token 0
            target[k] = np.where(kill, -np.inf, z)
    if kind == "tilted":  # the tightness example's reward: parity of the tokens
        R = _parity_reward(P, V, T)
    elif rng.random() < 0.5:
        R = (rng.random((P, V**T)) < 0.5).astype(np.float64)
    else:
        R = rng.random((P, V**T))
    pp = rng.dirichlet(np.ones(P))
    if P > 1 and rng.random() < 0.3:
        pp[0] = 0.0
        pp /= pp.sum()
    lr = [log_softmax(z) for z in zr]
    lt = [log_softmax(z) for z in zt]
    if kind == "small_delta":
        lt = _shrink_to_delta(lr, lt, PAPER_REGIME_DELTA)
    return Pair(lr, lt, R, pp)


def _parity_reward(P: int, V: int, T: int) -> np.ndarray:
    """R(x, y) = (y_1 + ... + y_T) mod 2, the same for every prompt: (P, V**T)."""
    digits = np.arange(V**T)[:, None] // V ** np.arange(T)[None, ::-1] % V
    return np.broadcast_to((digits.sum(-1) % 2).astype(np.float64), (P, V**T)).copy()


def _token_kl(lr: np.ndarray, lt: np.ndarray) -> np.ndarray:
    """KL(roll || theta) per row, for rows without zeros (kind small_delta): (..., V) -> (...)."""
    return np.sum(np.exp(lr) * (lr - lt), -1)


def _shrink_to_delta(lr: list, lt: list, delta_max: float) -> list:
    """Move pi_theta toward pi_roll in logit space until every row's KL <= delta_max.

    KL(roll || softmax(z_roll + s d)) = O(s^2): halving s divides it by about 4; the loop stops
    at the first s that satisfies every row (at most 60 halvings; s = 0 gives KL = 0).
    """
    d = [t - r for r, t in zip(lr, lt)]
    s = 1.0
    for _ in range(60):
        cand = [log_softmax(r + s * dd) for r, dd in zip(lr, d)]
        if max(float(_token_kl(r, c).max()) for r, c in zip(lr, cand)) <= delta_max:
            return cand
        s /= 2.0
    return [r.copy() for r in lr]


def _near_tied(rng: np.random.Generator, P: int, V: int, T: int) -> Pair:
    """`refined.tight_pair(a, b)` (T = 2, V = 2 forced), random a <= b in (0, 1/2), a = b half the time.

    Every prompt (P of them) gets the same pair; P(x) is uniform. |Error| = 2 a b exactly.
    """
    del V, T  # the tightness example has V = 2, T = 2
    from .refined import tight_pair

    a, b = np.sort(rng.uniform(0.01, 0.49, 2))
    if rng.random() < 0.5:
        a = b
    tp = tight_pair(float(a), float(b))
    lr = [np.log(np.repeat(np.asarray(x, dtype=np.float64), P, axis=0)) for x in tp["roll"]]
    lt = [np.log(np.repeat(np.asarray(x, dtype=np.float64), P, axis=0)) for x in tp["theta"]]
    R = np.repeat(np.asarray(tp["reward"], dtype=np.float64), P, axis=0)
    return Pair(lr, lt, R, np.full(P, 1.0 / P))


def adversarial_pairs(
    n: int, seed: int = 0, kinds: tuple[str, ...] = ADVERSARIAL_KINDS[:7], T_max: int = 4
) -> Iterator[tuple[str, list, list, np.ndarray, np.ndarray]]:
    """Yield (kind, logp_roll, logp_theta, reward, prompt_probs) for n seeded pairs, `kinds` in
    turn; P 1..3, V 2..3, T 1..T_max (V**T capped at 3**T_max by the draw itself).

    The default kinds are the first seven (the audit's halved-constant evidence is pinned to
    them); pass `kinds=ADVERSARIAL_KINDS` for all of them.
    """
    for k in kinds:
        if k not in ADVERSARIAL_KINDS:
            raise ValueError(f"kinds: unknown kind {k!r}; known: {ADVERSARIAL_KINDS}")
    if int(T_max) < 1:
        raise ValueError(f"T_max must be >= 1, got {T_max!r}")
    rng = np.random.default_rng(seed)
    for i in range(int(n)):
        kind = kinds[i % len(kinds)]
        P, V, T = int(rng.integers(1, 4)), int(rng.integers(2, 4)), int(rng.integers(1, int(T_max) + 1))
        yield (kind, *adversarial_pair(rng, kind, P, V, T))


def random_batch(rng: np.random.Generator, B: int, T: int, V: int) -> PairBatch:
    """B random one-prompt pairs stacked on axis 0 (module docstring; the audit's search)."""
    _check_shape(B, V, T, first="B")
    scale = np.exp(rng.uniform(np.log(0.1), np.log(8.0), (B, 1, 1)))
    pert = np.exp(rng.uniform(np.log(1e-3), np.log(6.0), (B, 1, 1)))
    lr, lt = [], []
    for k in range(T):
        z = rng.normal(size=(B, V**k, V)) * scale
        keep = rng.uniform(size=(B, V**k, 1)) < rng.uniform(0.2, 1.0, (B, 1, 1))
        lr.append(log_softmax(z))
        lt.append(log_softmax(z + pert * rng.normal(size=z.shape) * keep))
    reward = np.where(
        rng.uniform(size=(B, 1)) < 0.5, rng.integers(0, 2, (B, V**T)), rng.uniform(size=(B, V**T))
    )
    return PairBatch(tuple(lr), tuple(lt), reward.astype(np.float64))
