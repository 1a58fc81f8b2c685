"""Adversarial search for the worst |Error| and |Error| / bound at a fixed per-token divergence.

What it searches: binary-vocabulary (V = 2) policy pairs whose context enters through a finite
state (a chain, `trm_bounds.chain`; an enumerable tree is the chain whose states are the
contexts), one prompt, terminal rewards in [0, 1]. The free parameters, per state s:
pi_roll(0|s) = sigmoid(z_s), a signed size c_s = tanh(b_s) and a reward logit r_s.

Fixed divergence by construction (every iterate satisfies it, no penalty):
- fixed delta: KL(pi_roll(.|s) || pi_theta(.|s)) = delta c_s^2 / max_s' c_s'^2, so the largest
  token KL over the states is exactly delta; pi_theta(.|s) = sigmoid(z_s + sign(c_s) lambda_s)
  with lambda_s >= 0 the root of KL = target (the KL is increasing in lambda), found by
  bisection and differentiated by the implicit function theorem (one Newton step whose
  denominator is held fixed: its value is the root, its gradient -dKL/dtheta / dKL/dlambda).
- fixed eps: pi_theta(0|s) = pi_roll(0|s) + sign(c_s) min(eps c_s^2 / max c^2, room), room
  the distance to 0 or 1 (less 1e-9 of it): the largest token TV is eps unless no state has room.
The max runs over all states; the exact engine then takes it over reachable ones, so the
reported divergence can only be smaller (it is recorded as measured).

The objective is computed by an exact differentiable float64 DP (`chain_terms`) that uses the
homogeneity of the chain: every quantity is a sum over t of <mu_t, f_t> with
mu_t = mu_1 M_roll^{t-1} and value vectors M^{T+1-t} R, and all T powers applied to a vector
come from log2(T) batched matrix products (`powers_apply`):
    U^pi_t = M_pi^{T+1-t} R,  Delta_t = U^theta_t - U^roll_t,
    g_t = D U^roll_{t+1},  h_t = D Delta_{t+1}   (D = M_theta - M_roll, state to state),
    Error = sum_t <mu_t, h_t>  (refined.py route B2),  L' = sum_t <mu_t, g_t>,
    Dbar_t = <mu_t, TV>,  D_KL^seq = sum_t <mu_t, KL>,
    E_roll[Z] = sum_t <mu_t, |D| W_{t+1}>,  W_{t+1} = sum_{j < T - t} M_roll^j TV.
D_TV^seq enters the objective only through the proxy min(1, sum_t Dbar_t, sqrt(D_KL^seq / 2))
(an upper bound); reported ratios always come from the exact engines.

Enumerable trees (every context its own state) use `tree_terms`, the same quantities by one
pass per level over the 2^(t-1) contexts of level t (O(2^T) work and memory, no S x S
matrices), so the tree search reaches T = 12 and more (`search_trees`):
    mu_{t+1}(c v) = mu_t(c) pi_roll(v|c),  U^pi_t(c) = sum_v pi(v|c) U^pi_{t+1}(c v),
    h_t(c) = d(c) (Delta_{t+1}(c 0) - Delta_{t+1}(c 1)),
    g_t(c) = d(c) (U^roll_{t+1}(c 0) - U^roll_{t+1}(c 1)),
    W_t(c) = TV(c) + sum_v pi_roll(v|c) W_{t+1}(c v)  (W_{T+1} = 0),
    E_roll[Z] = sum_t sum_c mu_t(c) |d(c)| (W_{t+1}(c 0) + W_{t+1}(c 1)),
with d(c) = pi_theta(0|c) - pi_roll(0|c) = -(pi_theta(1|c) - pi_roll(1|c)) and TV(c) = |d(c)|.

Torch, float64, CPU by default (`device`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .bounds import PUBLISHED_BOUNDS
from .chain import ChainPair, last_k_transition, random_automaton_transition

__all__ = [
    "powers_apply",
    "chain_terms",
    "torch_bounds",
    "SEARCH_BOUNDS",
    "OBJECTIVES",
    "STRUCTURES",
    "structure_transition",
    "tree_transition",
    "search_chains",
    "tree_terms",
    "search_trees",
    "parity_chain",
    "kl_binary",
]

V = 2
# objectives the restarts are spread over: "abs_error" maximises |Error|, a bound key |Error| / bound
OBJECTIVES = (
    "abs_error",
    "unified",
    "adaptive_star",
    "adaptive_tv",
    "adaptive_kl",
    "mix_tv",
    "mix_kl",
    "linear_dbar",
    "coupling",
    "second_order",
)
STRUCTURES = ("random8", "last2", "mod2", "mod4", "sat4")


# --------------------------------------------------------------------------- transitions
def _mod_counter(m: int) -> np.ndarray:
    """State = number of token-1 emissions mod m (m = 2: parity)."""
    s = np.arange(m)
    return np.stack([s, (s + 1) % m], 1).astype(np.int64)


def _sat_counter(m: int) -> np.ndarray:
    """State = number of token-1 emissions, saturating at m - 1."""
    s = np.arange(m)
    return np.stack([s, np.minimum(s + 1, m - 1)], 1).astype(np.int64)


def structure_transition(name: str, seed: int) -> np.ndarray:
    """The (S, 2) transition of a named chain structure (STRUCTURES); seed for random ones."""
    if name == "random8":
        return random_automaton_transition(8, V, np.random.default_rng(seed))
    if name == "last2":
        return last_k_transition(V, 2)
    if name.startswith("mod"):
        return _mod_counter(int(name[3:]))
    if name.startswith("sat"):
        return _sat_counter(int(name[3:]))
    raise ValueError(f"unknown structure {name!r}; known: {', '.join(STRUCTURES)}")


def tree_transition(T: int) -> np.ndarray:
    """The full binary tree of depth T as a chain: state 2^t - 1 + k is context k of level t
    (t = 0..T, y_1 most significant); its children are 2^(t+1) - 1 + 2k + v; leaves loop."""
    S = 2 ** (T + 1) - 1
    s = np.arange(S)
    kids = 2 * s[:, None] + 1 + np.arange(V)[None, :]
    return np.where(kids < S, kids, s[:, None]).astype(np.int64)


# --------------------------------------------------------------------------- the exact DP
def powers_apply(M: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
    """[x, M x, M^2 x, ..., M^(n-1) x] by doubling: (N, S, S), (N, S) -> (N, n, S).

    Uses log2(n) batched products: X_{2m} = [X_m, M^m X_m], M^{2m} = M^m M^m.
    """
    X = x[:, None, :]  # (N, 1, S): rows are M^j x
    P = M
    while X.shape[1] < n:
        X = torch.cat([X, X @ P.transpose(-1, -2)], 1)  # (M^m M^j x)^T = (M^j x)^T (M^m)^T
        P = P @ P
    return X[:, :n]


def _matrices(pr: torch.Tensor, pt: torch.Tensor, trans: torch.Tensor):
    """State-to-state matrices M_roll, M_theta, D = M_theta - M_roll (from the exact difference)
    and |D|, each (N, S, S): M[s, s'] = sum_{v: trans[s, v] = s'} pi(v|s). pr, pt: (N, S, V)."""
    N, S, _ = pr.shape
    idx = trans.expand(N, S, V)
    out = []
    for w in (pr, pt, pt - pr, (pt - pr).abs()):
        out.append(torch.zeros(N, S, S, dtype=pr.dtype, device=pr.device).scatter_add(-1, idx, w))
    return out


def kl_binary(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """KL(Bern(sigmoid z) || Bern(sigmoid w)) over token 0 / 1, from logits, stable."""
    p = torch.sigmoid(z)
    return p * (F.logsigmoid(z) - F.logsigmoid(w)) + (1 - p) * (F.logsigmoid(-z) - F.logsigmoid(-w))


def _kl_binary_from(z: torch.Tensor):
    """w -> kl_binary(z, w) for one z (no grad): its z-only tensors formed once, the same
    operations on the same values, so the same bits as kl_binary."""
    p = torch.sigmoid(z)
    ls_z, ls_mz = F.logsigmoid(z), F.logsigmoid(-z)
    q = 1 - p
    return lambda w: p * (ls_z - F.logsigmoid(w)) + q * (ls_mz - F.logsigmoid(-w))


def chain_terms(
    z_roll: torch.Tensor,
    z_theta: torch.Tensor,
    reward: torch.Tensor,
    trans: torch.Tensor,
    T: int,
    init: int = 0,
) -> dict[str, torch.Tensor]:
    """Exact quantities of N binary chains at horizon T (module docstring), differentiable.

    Args:
      z_roll, z_theta: (N, S) logits of token 0 (pi(0|s) = sigmoid(z)).
      reward: (N, S) terminal reward in [0, 1]; trans: (S, 2) int64; init: start state.
    Returns (N,) tensors error, surrogate, dJ, dkl_seq, second_order, eps, delta, dtv_proxy,
    and dbar (N, T). eps and delta are maxima over all states.
    """
    N, S = z_roll.shape
    pr = torch.stack([torch.sigmoid(z_roll), torch.sigmoid(-z_roll)], -1)  # (N, S, 2)
    pt = torch.stack([torch.sigmoid(z_theta), torch.sigmoid(-z_theta)], -1)
    Mr, Mt, D, Dabs = _matrices(pr, pt, trans)
    tv = (pt[..., 0] - pr[..., 0]).abs()  # (N, S)
    kl = kl_binary(z_roll, z_theta)
    Ur = powers_apply(Mr, reward, T + 1)  # row j = M_roll^j R = U^roll_{T+1-j}
    Ut = powers_apply(Mt, reward, T + 1)
    # U_{t+1} for t = 1..T is row j = T - t, i.e. rows T-1, ..., 0
    Ur_next = Ur[:, :T].flip(1)  # (N, T, S): U^roll_{t+1}
    Delta_next = (Ut[:, :T] - Ur[:, :T]).flip(1)  # Delta_{t+1}
    start = torch.zeros(N, S, dtype=z_roll.dtype, device=z_roll.device)
    start[:, init] = 1.0
    mu = powers_apply(Mr.transpose(-1, -2), start, T)  # (N, T, S): mu_t = mu_1 M^{t-1}
    g = Ur_next @ D.transpose(-1, -2)  # (N, T, S): g_t = D U_{t+1}
    h = Delta_next @ D.transpose(-1, -2)
    pw = powers_apply(Mr, tv, T)  # row j = M^j TV
    W_next = torch.cumsum(pw, 1)  # row i = sum_{j <= i} M^j TV = W_{T-i}
    W_next = torch.cat([torch.zeros_like(W_next[:, :1]), W_next[:, : T - 1]], 1).flip(1)  # W_{t+1}
    Z = (mu * (W_next @ Dabs.transpose(-1, -2))).sum((1, 2))
    dbar = mu @ tv[..., None]  # (N, T, 1)
    dbar = dbar[..., 0]
    dkl = (mu @ kl[..., None]).sum((1, 2))
    error = (mu * h).sum((1, 2))
    surrogate = (mu * g).sum((1, 2))
    return {
        "error": error,
        "surrogate": surrogate,
        "dJ": Delta_next.new_tensor(0.0) + (Ut[:, T] - Ur[:, T])[:, init],
        "dbar": dbar,
        "dkl_seq": dkl,
        "second_order": Z,
        "eps": tv.max(-1).values,
        "delta": kl.max(-1).values,
        "dtv_proxy": torch.minimum(torch.minimum(torch.ones_like(dkl), dbar.sum(-1)), torch.sqrt(dkl / 2)),
    }


def tree_terms(
    z_roll: torch.Tensor, z_theta: torch.Tensor, reward: torch.Tensor, T: int
) -> dict[str, torch.Tensor]:
    """`chain_terms` of N binary enumerable trees of depth T, level by level (module docstring).

    Args:
      z_roll, z_theta: (N, 2^T - 1) token-0 logits of the internal contexts in level order
        (context k of length t - 1 at index 2^(t-1) - 1 + k, y_1 most significant: the states
        of `tree_transition`); reward: (N, 2^T) terminal reward in [0, 1] per full context.
    Returns the keys of `chain_terms`; eps and delta are maxima over all internal contexts.
    """
    N = z_roll.shape[0]
    if z_roll.shape[1] != 2**T - 1 or reward.shape[1] != 2**T:
        raise ValueError(f"T = {T}: need 2^T - 1 = {2**T - 1} logits and 2^T rewards per tree")
    lv = [slice(2 ** (t - 1) - 1, 2**t - 1) for t in range(1, T + 1)]  # level t: index t - 1
    pr, pt = torch.sigmoid(z_roll), torch.sigmoid(z_theta)  # pi(0|c)
    d = pt - pr
    tv, kl = d.abs(), kl_binary(z_roll, z_theta)
    ones = torch.ones(N, 1, dtype=z_roll.dtype, device=z_roll.device)
    mu = [ones]  # mu_t over level t's contexts
    for t in range(T - 1):
        mu.append(torch.stack([mu[t] * pr[:, lv[t]], mu[t] * (1 - pr[:, lv[t]])], -1).reshape(N, -1))
    Ur, Ut, W = reward, reward, torch.zeros_like(reward)  # level T + 1
    err, sur, Z = (torch.zeros(N, dtype=z_roll.dtype, device=z_roll.device) for _ in range(3))
    for t in range(T - 1, -1, -1):  # level t + 1, children at level t + 2
        p, q, dd, m = pr[:, lv[t]], pt[:, lv[t]], d[:, lv[t]], mu[t]
        r0, r1, t0, t1, w0, w1 = Ur[:, 0::2], Ur[:, 1::2], Ut[:, 0::2], Ut[:, 1::2], W[:, 0::2], W[:, 1::2]
        err = err + (m * dd * ((t0 - r0) - (t1 - r1))).sum(-1)
        sur = sur + (m * dd * (r0 - r1)).sum(-1)
        Z = Z + (m * dd.abs() * (w0 + w1)).sum(-1)
        Ur, Ut = p * r0 + (1 - p) * r1, q * t0 + (1 - q) * t1
        W = tv[:, lv[t]] + p * w0 + (1 - p) * w1
    dbar = torch.stack([(mu[t] * tv[:, lv[t]]).sum(-1) for t in range(T)], -1)  # (N, T)
    dkl = sum((mu[t] * kl[:, lv[t]]).sum(-1) for t in range(T))
    return {
        "error": err,
        "surrogate": sur,
        "dJ": (Ut - Ur)[:, 0],
        "dbar": dbar,
        "dkl_seq": dkl,
        "second_order": Z,
        "eps": tv.max(-1).values,
        "delta": kl.max(-1).values,
        "dtv_proxy": torch.minimum(torch.minimum(torch.ones_like(dkl), dbar.sum(-1)), torch.sqrt(dkl / 2)),
    }


# --------------------------------------------------------------------------- bounds in torch
SEARCH_BOUNDS = (*PUBLISHED_BOUNDS, "linear_dbar", "second_order")  # what torch_bounds returns


def torch_bounds(q: dict[str, torch.Tensor], T: int) -> dict[str, torch.Tensor]:
    """The published bounds (docs/theory.md section 5) and second_order on `chain_terms` output, (N,) each.

    D_TV^seq is the proxy q["dtv_proxy"]; the refined bounds are these halved (not listed).
    """
    eps, delta, dbar, dkl = q["eps"][:, None], q["delta"][:, None], q["dbar"], q["dkl_seq"]
    one = torch.ones_like(dkl)
    t = torch.arange(1, T + 1, dtype=dbar.dtype, device=dbar.device)[None, :]  # (1, T)
    sq = lambda x: torch.sqrt(torch.clamp(x, min=0.0))  # noqa: E731
    a = torch.minimum(torch.ones_like(eps), sq(delta / 2))
    past_kl = torch.minimum(torch.ones_like(t), sq((t - 1) * delta / 2)).sum(-1)
    past_tv = torch.minimum(torch.ones_like(t), (t - 1) * eps).sum(-1)
    w_tv = torch.minimum(torch.ones_like(t), (T - t) * eps)
    w_kl = torch.minimum(torch.ones_like(t), sq((T - t) * delta / 2))
    e, d = eps[:, 0], delta[:, 0]
    out = {
        "classical_tv": 2 * T * (T - 1) * e**2,
        "classical_kl": T * (T - 1) * d,
        "linear": 4 * T * e,
        "pm_kl": 4 * a[:, 0] * past_kl,
        "pm_tv": 4 * torch.minimum(one, e) * past_kl,
        "mix_kl": 4 * T * a[:, 0] * torch.minimum(one, sq(dkl / 2)),
        "mix_tv": 4 * T * torch.minimum(one, e) * q["dtv_proxy"],
        "coupling": 4 * torch.minimum(one, e) * past_tv,
        "adaptive_kl": 4 * (dbar * w_kl).sum(-1),
        "adaptive_tv": 4 * (dbar * w_tv).sum(-1),
        "adaptive_star": 4 * (dbar * torch.minimum(w_tv, w_kl)).sum(-1),
        "linear_dbar": 4 * dbar.sum(-1),
        "second_order": q["second_order"],
    }
    out["unified"] = (
        torch.stack([out[n] for n in ("pm_kl", "pm_tv", "mix_kl", "mix_tv", "coupling", "adaptive_star")])
        .min(0)
        .values
    )
    return out


# --------------------------------------------------------------------------- parametrisation
def _solve_kl(z: torch.Tensor, k: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """w = z + sign lambda with KL(sigmoid z || sigmoid w) = k, lambda >= 0; differentiable in z, k."""
    with torch.no_grad():
        kl_from = _kl_binary_from(z)  # the z-only half of kl_binary, formed once for the ~130 calls
        lo, hi = torch.zeros_like(z), torch.ones_like(z)
        for _ in range(80):  # bracket: the KL grows without bound in lambda
            short = kl_from(z + sign * hi) < k
            if not short.any():
                break
            hi = torch.where(short, 2 * hi, hi)
        for _ in range(56):  # relative width 2^-56 of the bracket: below float64 rounding of lambda
            mid = 0.5 * (lo + hi)
            below = kl_from(z + sign * mid) < k
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        lam = 0.5 * (lo + hi)
        slope = sign * (torch.sigmoid(z + sign * lam) - torch.sigmoid(z))  # dKL/dlambda >= 0
    f = kl_binary(z, z + sign * lam) - k
    ok = slope > 1e-300
    step = torch.where(ok, f / torch.where(ok, slope, torch.ones_like(slope)), torch.zeros_like(f))
    return z + sign * (lam - step)


def theta_logits(z: torch.Tensor, c: torch.Tensor, fixed: str, target: float) -> torch.Tensor:
    """pi_theta's token-0 logits with max_s divergence = target (module docstring); (N, S)."""
    size = c**2 / (c**2).max(-1, keepdim=True).values.clamp_min(1e-300)  # in [0, 1], max 1
    sign = torch.where(c >= 0, torch.ones_like(c), -torch.ones_like(c))
    if fixed == "delta":
        return _solve_kl(z, target * size, sign)
    if fixed == "eps":
        p = torch.sigmoid(z)
        room = torch.where(sign > 0, 1 - p, p) * (1 - 1e-9)
        q = p + sign * torch.minimum(target * size, room)
        return torch.log(q) - torch.log1p(-q)
    raise ValueError(f"fixed must be 'delta' or 'eps', got {fixed!r}")


def _ascend(
    n_policy: int,
    n_reward: int,
    terms,
    T: int,
    fixed: str,
    target: float,
    seed: int,
    restarts: int,
    iters: int,
    objectives: tuple[str, ...],
    device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adam from `restarts` seeded random starts, restart n maximising log of objectives[n % len]
    (|Error| or |Error| / bound) of terms(z_roll, z_theta, reward); the final (z, z_theta, reward
    logits); callers take sigmoid row by row (as the pairs have always been made: bit for bit)."""
    gen = torch.Generator().manual_seed(int(seed))
    N = int(restarts)
    z = (torch.randn(N, n_policy, generator=gen, dtype=torch.float64) * 2.0).to(device).requires_grad_()
    b = (torch.randn(N, n_policy, generator=gen, dtype=torch.float64)).to(device).requires_grad_()
    r = (torch.randn(N, n_reward, generator=gen, dtype=torch.float64) * 3.0).to(device).requires_grad_()
    obj = [objectives[n % len(objectives)] for n in range(N)]
    opt = torch.optim.Adam([z, b, r], lr=0.15)
    for _ in range(int(iters)):
        opt.zero_grad()
        zt = theta_logits(z, torch.tanh(b), fixed, target)
        q = terms(z, zt, torch.sigmoid(r))
        bnd = torch_bounds(q, T)
        logerr = torch.log(q["error"].abs() + 1e-300)
        score = torch.stack(
            [
                logerr[n] - (0.0 if o == "abs_error" else torch.log(bnd[o][n] + 1e-300))
                for n, o in enumerate(obj)
            ]
        )
        loss = -score.sum()
        if not torch.isfinite(loss):
            break
        loss.backward()
        for p in (z, b, r):  # a non-finite gradient (a degenerate restart) must not poison the rest
            p.grad = torch.nan_to_num(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
        opt.step()
    with torch.no_grad():
        return z.detach(), theta_logits(z, torch.tanh(b), fixed, target), r.detach()


def search_chains(
    trans: np.ndarray,
    T: int,
    fixed: str,
    target: float,
    seed: int,
    restarts: int = 16,
    iters: int = 60,
    objectives: tuple[str, ...] = OBJECTIVES,
    device="cpu",
) -> list[ChainPair]:
    """Gradient ascent (Adam) from `restarts` random starts, restart n maximising
    log of objectives[n % len] (|Error| or |Error| / bound); returns the final ChainPairs."""
    S = trans.shape[0]
    tr = torch.as_tensor(trans, device=device)
    run = (T, fixed, target, seed, restarts, iters, objectives, device)
    z, zt, r = _ascend(S, S, lambda a, b, c: chain_terms(a, b, c, tr, T), *run)
    return [_to_pair(z[n], zt[n], torch.sigmoid(r[n]), trans, T) for n in range(z.shape[0])]


def search_trees(
    T: int,
    fixed: str,
    target: float,
    seed: int,
    restarts: int = 16,
    iters: int = 60,
    objectives: tuple[str, ...] = OBJECTIVES,
    device="cpu",
) -> list[ChainPair]:
    """`search_chains` on the full binary tree of depth T through `tree_terms` (2^T - 1 free
    contexts, 2^T rewards); returns tree-shaped ChainPairs (`tree_transition`; the leaves'
    own policy rows are never used within T steps and are set to 1/2)."""
    run = (T, fixed, target, seed, restarts, iters, objectives, device)
    z, zt, r = _ascend(2**T - 1, 2**T, lambda a, b, c: tree_terms(a, b, c, T), *run)
    pad = torch.zeros(z.shape[0], 2**T, dtype=z.dtype, device=z.device)
    z, zt = torch.cat([z, pad], 1), torch.cat([zt, pad], 1)
    lead = torch.zeros(2**T - 1, dtype=r.dtype, device=r.device)
    trans = tree_transition(T)
    return [
        _to_pair(z[n], zt[n], torch.cat([lead, torch.sigmoid(r[n])]), trans, T) for n in range(z.shape[0])
    ]


def _to_pair(z, zt, reward, trans, T) -> ChainPair:
    """A ChainPair of binary logits (numpy, float64, log-probs from log-sigmoid)."""
    lr = torch.stack([F.logsigmoid(z), F.logsigmoid(-z)], -1).cpu().numpy()
    lt = torch.stack([F.logsigmoid(zt), F.logsigmoid(-zt)], -1).cpu().numpy()
    return ChainPair(
        T=T,
        transition=trans,
        init_state=np.zeros(1, dtype=np.int64),
        prompt_probs=np.ones(1),
        logp_roll=lr,
        logp_theta=lt,
        reward_final=np.clip(reward.cpu().numpy(), 0.0, 1.0),
    )


# --------------------------------------------------------------------------- structured candidates
def parity_chain(T: int, e: float) -> ChainPair:
    """The parity construction (docs/tightness.md): pi_roll always emits 0, pi_theta emits 1
    with probability e; R = parity of the number of 1s. Exactly: eps = e, delta = -log(1 - e),
    Dbar_t = e, L' = T e, J(theta) - J(roll) = (1 - (1 - 2e)^T) / 2, so
    Error = (1 - (1 - 2e)^T) / 2 - T e and |Error| >= T e - 1/2."""
    if not 0.0 < e < 1.0:
        raise ValueError(f"e must be in (0, 1), got {e!r}")
    row_r = np.array([0.0, -np.inf])
    row_t = np.array([math.log1p(-e), math.log(e)])
    return ChainPair(
        T=T,
        transition=_mod_counter(2),
        init_state=np.zeros(1, dtype=np.int64),
        prompt_probs=np.ones(1),
        logp_roll=np.stack([row_r, row_r]),
        logp_theta=np.stack([row_t, row_t]),
        reward_final=np.array([0.0, 1.0]),
    )
