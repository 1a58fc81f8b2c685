"""The audit's own random search for a counterexample to |Error| <= bound (claims C01, S9).

Random one-prompt pairs (`trm_bounds.adversarial.random_batch`, T in 1..4, V in 2..3),
evaluated exactly by the batched engine `trm_bounds.exact_batch` and the bound registry
(`evaluate_bounds_batch`), plus a hill-climb on the pairs that are worst for the unified bound
(small random moves of pi_theta, kept when |Error| / B* grows). It reports, per bound key,
the worst |Error| / bound (and twice that: the ratio to the halved bound of section 9). A
numeric search: evidence, never a proof.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..adversarial import PairBatch, random_batch
from ..divergences import log_softmax
from ..exact_batch import BatchInputs, evaluate_bounds_batch, exact_batch

__all__ = ["Search", "tiny_search", "ROUNDING"]

ROUNDING = 1e-14  # per position: J_theta - J_roll - L' cancels terms of size <= 1, each rounded to ~1e-16
_SHAPES = ((1, 2), (2, 3), (3, 2), (4, 2), (2, 3), (3, 3))  # (T, V) of batch i % 6


@dataclass(frozen=True)
class Search:
    """Result of the search: worst |Error| / bound per bound key, at full and halved constants."""

    instances: int
    worst_ratio: dict
    worst_ratio_halved: dict
    description: str


def _ratios(pairs: PairBatch) -> dict[str, np.ndarray]:
    """{bound key: (B,) |Error| beyond ROUNDING * T, divided by the bound} (0/0 = 0, x/0 = inf)."""
    ex = exact_batch(*pairs)
    bnd = evaluate_bounds_batch(BatchInputs.from_exact(ex))
    err = np.maximum(np.abs(ex["error"]) - ROUNDING * ex["T"], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {n: np.where(b > 0, err / b, np.where(err > 0, np.inf, 0.0)) for n, b in bnd.items()}


def tiny_search(n_batches: int = 6, batch: int = 400, seed: int = 0) -> Search:
    """`n_batches` batches of `batch` random pairs, each followed by 15 hill-climb rounds on its
    32 pairs worst for the unified bound; seeded, so the result is the same on every run."""
    rng = np.random.default_rng(seed)
    worst: dict[str, float] = {}
    worst_h: dict[str, float] = {}
    total = 0

    def keep_worst(ratios: dict[str, np.ndarray]) -> None:
        for n, r in ratios.items():
            worst[n] = max(worst.get(n, 0.0), float(np.max(r)))
            worst_h[n] = max(worst_h.get(n, 0.0), 2.0 * float(np.max(r)))

    for i in range(n_batches):
        T, V = _SHAPES[i % 6]
        pairs = random_batch(rng, batch, T, V)
        ratios = _ratios(pairs)
        total += batch
        best = np.argsort(-ratios["unified"])[:32]
        cur, cur_score = pairs.take(best), ratios["unified"][best]
        for _ in range(15):
            moved = cur._replace(
                logp_theta=tuple(log_softmax(x + 0.3 * rng.normal(size=x.shape)) for x in cur.logp_theta)
            )
            r_new = _ratios(moved)
            total += len(best)
            keep_worst(r_new)
            better = r_new["unified"] > cur_score
            cur = cur._replace(
                logp_theta=tuple(
                    np.where(better[:, None, None], m, c) for m, c in zip(moved.logp_theta, cur.logp_theta)
                )
            )
            cur_score = np.maximum(cur_score, r_new["unified"])
        keep_worst(ratios)
    return Search(
        total,
        worst,
        worst_h,
        f"{total} exactly enumerated one-prompt pairs (T <= 4, V <= 3), "
        f"random plus a hill-climb on |Error|/B*, seed {seed}; |Error| counted beyond a rounding "
        f"allowance of {ROUNDING:g} T",
    )
