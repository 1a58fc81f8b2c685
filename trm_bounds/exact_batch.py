"""The exact engine for many tiny one-prompt pairs at once (numpy, float64, full enumeration).

`exact_batch(logp_roll, logp_theta, reward)` computes, for B pairs stacked on axis 0
(level k: ``(B, V**k, V)``, reward ``(B, V**T)``; e.g. `trm_bounds.adversarial.random_batch`),
the quantities of docs/theory.md sections 2-5 by enumerating all V**T responses:

    J(pi) = sum_y P^pi(y) R(y),   L' = E_roll[R sum_t (rho_t - 1)],   Error = J_theta - J_roll - L',
    eps = max_c TV(c), delta = max_c KL(c) (every context: rows have full support),
    Dbar_t = E_{d_t^roll}[TV(c_t)],  D_KL^seq = sum_t E_{d_t^roll}[KL(c_t)],
    D_TV^seq = 1/2 sum_y |P^theta(y) - P^roll(y)|,
    and with a baseline b: L_b = E_roll[(R - b) sum_t rho_t].

It is the batched twin of `trm_bounds.exact.exact_quantities` for the audit's search (thousands
of pairs per second, where the general engine takes milliseconds per pair); it assumes one
prompt and rows without zeros (pi_theta << pi_roll), and is tested against the general
engine. `evaluate_bounds_batch` evaluates registered bounds (`trm_bounds.bounds.BOUNDS`) on
the batch: each published bound function broadcasts over arrays (bounds.py), so the
registry's functions are called once on a record whose fields are (B,) / (B, T) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bounds import BOUNDS, PUBLISHED_BOUNDS, UNIFIED_OF
from .divergences import token_kl, token_tv

__all__ = ["exact_batch", "evaluate_bounds_batch", "BatchInputs"]


def exact_batch(logp_roll, logp_theta, reward, baseline: float | None = None) -> dict[str, np.ndarray]:
    """Exact J_roll, J_theta, L' (and L_b), Error and every bound ingredient of B pairs.

    Args: logp_roll, logp_theta: T arrays (B, V**k, V) of log-probs (rows without -inf);
      reward: (B, V**T) in [0, 1]; baseline: b for "surrogate_b" (optional).
    Returns: {"J_roll", "J_theta", "surrogate", "error", "eps", "delta", "dkl_seq", "dtv_seq"}
      of shape (B,), "dbar" (B, T), "T" (int), and "surrogate_b" (B,) with a baseline.
    """
    B, _, V = np.shape(logp_roll[0])
    T = len(logp_roll)
    if len(logp_theta) != T or np.shape(reward) != (B, V**T):
        raise ValueError(f"reward must have shape ({B}, {V**T}) and logp_theta {T} levels")
    n = np.arange(V**T)
    lp_r = np.zeros((B, V**T))
    lp_t = np.zeros((B, V**T))
    rho_minus_1 = np.zeros((B, V**T))
    prefix = np.ones((B, 1))  # d_t^roll over contexts at level t
    dbar, dkl = np.zeros((B, T)), np.zeros(B)
    eps, delta = np.zeros(B), np.zeros(B)
    for kk in range(T):
        ctx, tok = n // V ** (T - kk), (n // V ** (T - 1 - kk)) % V  # context row and token of every response
        a, b = logp_roll[kk][:, ctx, tok], logp_theta[kk][:, ctx, tok]
        lp_r += a
        lp_t += b
        rho_minus_1 += np.expm1(b - a)
        tv = token_tv(logp_roll[kk], logp_theta[kk])  # (B, V**kk)
        kl = token_kl(logp_roll[kk], logp_theta[kk])
        eps, delta = np.maximum(eps, tv.max(-1)), np.maximum(delta, kl.max(-1))
        dbar[:, kk] = np.sum(prefix * tv, -1)
        dkl += np.sum(prefix * kl, -1)
        prefix = (prefix[:, :, None] * np.exp(logp_roll[kk])).reshape(B, -1)
    p_r, p_t, R = np.exp(lp_r), np.exp(lp_t), np.asarray(reward, dtype=np.float64)
    J_roll, J_theta = np.sum(p_r * R, -1), np.sum(p_t * R, -1)
    surrogate = np.sum(p_r * R * rho_minus_1, -1)
    out = {
        "J_roll": J_roll,
        "J_theta": J_theta,
        "surrogate": surrogate,
        "error": J_theta - J_roll - surrogate,
        "eps": np.minimum(eps, 1.0),
        "delta": delta,
        "dkl_seq": dkl,
        "dtv_seq": np.minimum(1.0, 0.5 * np.sum(np.abs(p_t - p_r), -1)),  # min: rounding only
        "dbar": np.minimum(dbar, 1.0),
        "T": T,
    }
    if baseline is not None:  # L_b = E[(R - b) sum_t rho_t] = E[(R - b) (sum_t (rho_t - 1) + T)]
        out["surrogate_b"] = np.sum(p_r * (R - baseline) * (rho_minus_1 + T), -1)
    return out


@dataclass(frozen=True)
class BatchInputs:
    """`trm_bounds.bounds.BoundInputs` fields for B pairs: T (int), eps, delta, dkl_seq, dtv_seq
    (B,), dbar (B, T). Not validated: built from `exact_batch`, whose values are in range."""

    T: int
    eps: np.ndarray
    delta: np.ndarray
    dkl_seq: np.ndarray
    dtv_seq: np.ndarray
    dbar: np.ndarray

    @classmethod
    def from_exact(cls, ex: dict) -> BatchInputs:
        return cls(ex["T"], ex["eps"], ex["delta"], ex["dkl_seq"], ex["dtv_seq"], ex["dbar"])


def evaluate_bounds_batch(
    inputs: BatchInputs, names: tuple[str, ...] = PUBLISHED_BOUNDS
) -> dict[str, np.ndarray]:
    """{name: (B,) array}: the registered bound `name` on every pair of the batch.

    "unified" is min over `trm_bounds.bounds.UNIFIED_OF` (its definition); every other name is
    the registry's function called once on the array record (the published bounds broadcast).
    """
    out = {}
    for name in names:
        if name == "unified":
            val = np.minimum.reduce([np.asarray(BOUNDS[n](inputs), dtype=np.float64) for n in UNIFIED_OF])
        else:
            val = np.asarray(BOUNDS[name](inputs), dtype=np.float64)
        out[name] = np.broadcast_to(val, np.shape(inputs.eps)).copy()
    return out
