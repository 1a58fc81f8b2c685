"""The second-order bound |Error| <= E_roll[Z] and the per-sequence statistics of the sample certificate.

Per sequence y ~ pi_roll, with rho_t = pi_theta(y_t|c_t) / pi_roll(y_t|c_t) at the sampled token:

    S = sum_t (1 - rho_t)_+                     in [0, T]:  E_roll[S] = sum_t Dbar_t
    D = (1 - prod_t rho_t)_+                    in [0, 1]:  E_roll[D] = D_TV^seq
    Z = sum_t |rho_t - 1| sum_{s>t} (1 - rho_s)_+   >= 0:   |Error| <= E_roll[Z]

The two identities need no support condition: E_{v~pi_roll}[(1 - rho(v))_+] =
sum_v (pi_roll - pi_theta)_+(v) = TV (both rows sum to 1), and the same on whole sequences.
The bound needs rewards with max R - min R <= 1 and pi_theta << pi_roll (docs/certify.md,
section 4, proves it). Its exact value on an enumerable tree or a state chain is computed by
one backward recursion,

    W_t(c) = E_roll[sum_{s>=t} (1 - rho_s)_+ | c_t = c] = TV(c) + sum_v pi_roll(v|c) W_{t+1}(c v),
    E_t(c) = E_roll[sum_{t'>=t} |rho_t' - 1| W_{t'+1}(c_{t'+1}) | c_t = c]
           = sum_v |pi_theta - pi_roll|(v|c) W_{t+1}(c v) + sum_v pi_roll(v|c) E_{t+1}(c v),

W_{T+1} = E_{T+1} = 0, E_roll[Z] = sum_x P(x) E_1(x). (|pi_theta - pi_roll| = pi_roll |rho - 1|
needs pi_theta << pi_roll; without it the recursion still bounds |Error| but is not E_roll[Z].)
Numpy, float64; differences of probabilities from log-probs without cancellation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "sequence_statistics",
    "second_order_tree",
    "second_order_chain",
]


def _abs_diff(la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """|e^a - e^b| from log-values: e^max(a,b) (1 - e^-|a-b|); 0 where both are -inf."""
    hi = np.maximum(la, lb)
    with np.errstate(invalid="ignore"):  # -inf - -inf where both probabilities are 0; zeroed below
        gap = np.abs(la - lb)
    gap = np.where(np.isnan(gap), np.inf, gap)
    out = np.exp(hi) * -np.expm1(-gap)
    return np.where(np.isneginf(hi), 0.0, out)


def sequence_statistics(log_ratio: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """S, D, Z of THEORY-free per-sequence form (module docstring) from sampled-token log-ratios.

    Args:
      log_ratio: (B, T) float64, log rho_t = log pi_theta - log pi_roll at the sampled token
        (-inf allowed: rho = 0; +inf not allowed). Positions with valid = False are ignored.
      valid: (B, T) bool, the response mask.

    Returns:
      dict of (B,) float64 arrays: "S" (in [0, T]), "D" (in [0, 1]), "Z" (>= 0, may be +inf when
      some rho_t overflows), "tokens" (valid count). A row without valid token has S = D = Z = 0.
    """
    lr = np.where(valid, np.asarray(log_ratio, dtype=np.float64), 0.0)
    u = -np.expm1(np.minimum(lr, 0.0))  # (1 - rho)_+ in [0, 1], exact near rho = 1
    S = u.sum(-1)
    D = 0.0 - np.expm1(np.minimum(lr.sum(-1), 0.0))  # (1 - prod rho)_+, +0.0 not -0.0; -inf gives 1
    future = np.cumsum(u[:, ::-1], -1)[:, ::-1] - u  # sum_{s>t} (1 - rho_s)_+
    with np.errstate(over="ignore"):  # rho = e^700+ overflows to inf: Z = inf, said by the caller
        dev = np.abs(np.expm1(lr))  # |rho_t - 1|
    Z = (np.where(future > 0, dev, 0.0) * future).sum(-1)  # 0 * inf = 0 where nothing follows
    return {"S": S, "D": D, "Z": Z, "tokens": valid.sum(-1).astype(np.int64)}


def second_order_tree(logp_roll: Sequence, logp_theta: Sequence, prompt_probs) -> float:
    """E_roll[Z] on an enumerable tree (levels (P, V**(t-1), V) of log-probs; prompt law (P,)).

    Exact to rounding when pi_theta << pi_roll (the caller checks; otherwise the number is the
    recursion's value, an upper bound on |Error| but not E_roll[Z]). O(P V**T) time and memory.
    """
    T = len(logp_roll)
    V = np.asarray(logp_roll[0]).shape[-1]
    W = np.zeros(1)
    E = np.zeros(1)
    for k in range(T - 1, -1, -1):
        lr = np.asarray(logp_roll[k], dtype=np.float64).reshape(-1, V)  # (P V**k, V)
        lt = np.asarray(logp_theta[k], dtype=np.float64).reshape(-1, V)
        pr = np.exp(lr)
        dp = _abs_diff(lr, lt)  # (n, V)
        Wn = np.broadcast_to(W, (lr.shape[0] * V,)).reshape(-1, V)  # W_{k+2} of the children
        En = np.broadcast_to(E, (lr.shape[0] * V,)).reshape(-1, V)
        E = (dp * Wn).sum(-1) + (pr * En).sum(-1)
        W = 0.5 * dp.sum(-1) + (pr * Wn).sum(-1)  # TV(c) + E_roll[W_{t+1}]
    return float(np.dot(np.asarray(prompt_probs, dtype=np.float64), E))


def second_order_chain(pair) -> float:
    """E_roll[Z] of a `trm_bounds.chain.ChainPair` by the state recursion; O(T S V) time.

    Same caveat as `second_order_tree` when pi_theta is not absolutely continuous w.r.t. pi_roll.
    """
    T = int(pair.T)
    lr_all = np.asarray(pair.logp_roll, dtype=np.float64)
    lt_all = np.asarray(pair.logp_theta, dtype=np.float64)
    trans = np.asarray(pair.transition)
    S = trans.shape[0]
    W = np.zeros(S)
    E = np.zeros(S)
    for k in range(T - 1, -1, -1):
        lr = lr_all[k] if lr_all.ndim == 3 else lr_all  # (S, V)
        lt = lt_all[k] if lt_all.ndim == 3 else lt_all
        pr = np.exp(lr)
        dp = _abs_diff(lr, lt)
        Wn, En = W[trans], E[trans]  # (S, V): values at the next state
        E = (dp * Wn).sum(-1) + (pr * En).sum(-1)
        W = 0.5 * dp.sum(-1) + (pr * Wn).sum(-1)
    return float(np.dot(np.asarray(pair.prompt_probs, dtype=np.float64), E[np.asarray(pair.init_state)]))
