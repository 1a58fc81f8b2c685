"""Finite-state ("chain") policy pairs and their exact long-horizon engine (docs/theory.md 1-4).

A chain pair is a policy pair whose context c_t = (x, y_<t) enters only through a finite
state: s_1 = init_state[x], s_{t+1} = transition[s_t, y_t], y_t ~ pi(. | s_t) with log-probs
`logp[s, v]` (or `logp[t-1, s, v]`, time-dependent). The reward is

    R(x, y) = reward_final[s_{T+1}] + (1/T) sum_t reward_step[s_t, y_t]   in [0, 1].

Every context-level quantity whose integrand depends on c_t only through s_t (values,
g_t, token TV/KL, their expectations and maxima) is computed EXACTLY by two recursions
over state marginals, in O(T S V) time (dense S x S operators when the chain is
time-homogeneous and small, gather/scatter otherwise):

- backward (remaining-horizon values under pi_roll, shared by every prompt):
      U_{T+1}(s) = reward_final[s]
      q_t(s, v)  = reward_step[s, v] / T + U_{t+1}(transition[s, v])
      U_t(s)     = sum_v pi_roll(v|s) q_t(s, v)
      g_t(s)     = sum_v (pi_theta - pi_roll)(v|s) q_t(s, v)     (the g_t of docs/theory.md 2)
      Delta_t(s) = U^theta_t(s) - U_t(s) = g_t(s) + sum_v pi_theta(v|s) Delta_{t+1}(transition[s, v])
      h_t(s)     = sum_v (pi_theta - pi_roll)(v|s) Delta_{t+1}(transition[s, v])
  (the past step rewards of c_t drop out of g_t because sum_v (pi_theta - pi_roll) = 0).
- forward (state marginals mu_t^pi(s) = sum_{c_t -> s} d_t^pi(c_t), mu_1 = law of init_state[x]):
      mu_{t+1}(s') = sum_{s, v: transition[s, v] = s'} mu_t(s) pi(v|s).

Then J_roll = <mu_1, U_1>, J_theta - J_roll = <mu_1, Delta_1>, L' = sum_t <mu_t^roll, g_t>,
Error = <mu_1, Delta_1> - L', Dbar_t = <mu_t^roll, TV_t>, D_KL^seq = sum_t <mu_t^roll, KL_t>;
eps, delta and max|g_t| are maxima over the reachable states (positive probability under
pi_roll or under pi_theta, propagated as exact booleans).

Second-order (ratio) form. Telescoping <mu_t^roll, Delta_t> - <mu_t^roll, g_t> =
<mu_t^roll, M_theta Delta_{t+1}> = <mu_{t+1}^roll, Delta_{t+1}> + <mu_t^roll, h_t> gives

    Error = sum_t <mu_t^roll, h_t>            (always; no cancellation of O(1) terms).

When pi_theta << pi_roll on roll-reachable states, conditioning the ratio identity
-Delta = E_roll[R sum_t (rho_t - 1)(prod_{j>t} rho_j - 1)] on c_{t+1} turns
E_roll[R (prod_{j>t} rho_j - 1) | c_{t+1}] into Delta_{t+1}(s_{t+1}) (the past rewards
multiply E[prod rho - 1 | c_{t+1}] = 0), so -Delta is exactly this sum: it is reported as
`error_ratio_identity`. Without absolute continuity the ratio form is undefined and
`error_ratio_identity` is None (the JSON `notes` say why).

What the chain does NOT determine: the TV of laws over whole contexts (D_TV^seq and
TV(d_t^theta, d_t^roll)). Different contexts with the same state are different outcomes.
Proven bounds used instead (`*_upper`, `*_lower`, never called the value):

1. Reduction. Given x, both laws of y depend on x only through s_1 = init_state[x], so
   TV over (x, y) = sum_x P(x) TV(P^roll(.|s_1(x)), P^theta(.|s_1(x))) = E_x of the per-prompt
   TV; the same holds for prefixes c_t. We bound per prompt and average (or max).
2. Greedy coupling (upper). Run both policies from the same context; while the two
   token prefixes agree (hence the states agree) draw the next tokens from a maximal
   coupling of pi_roll(.|s), pi_theta(.|s) (equal with probability 1 - TV_t(s)); after the
   first disagreement continue independently. The marginals are exactly P^roll and P^theta,
   so TV(d_{t+1}^theta, d_{t+1}^roll | x) <= P(prefixes differ after t tokens) =
   sum_{u<=t} <a_u, TV_u>, where a_u is the sub-probability of "still agreeing, in state s",
   a_1 = delta_{s_1}, a_{u+1}(s') = sum_{transition[s, v] = s'} a_u(s) min(pi_roll, pi_theta)(v|s).
   Since a_u <= mu_u^roll, this is <= sum_{u<=t} Dbar_u (the hybrid-argument bound).
3. Pinsker and Bretagnolle-Huber on the exact prefix KLs, in both directions
   (TV is symmetric): TV <= min(sqrt(K/2), sqrt(1 - exp(-K))) for K = KL(roll||theta) of the
   prefix laws = sum_{u<t} <mu_u^roll, KL_u> (chain rule), and K' = KL(theta||roll) likewise.
   The upper bound used is min(1, 2., 3.) per prompt, then E_x (joint) or max_x.
4. Lower bounds (data processing: s_t and R are functions of the context):
   TV(d_t^theta, d_t^roll) >= TV(mu_t^theta, mu_t^roll), and D_TV^seq >= max(max_t of those,
   TV(mu_{T+1}^theta, mu_{T+1}^roll), |J_theta - J_roll|).

Layers: chain sits beside exact.py (same level); it imports divergences and bounds only.

One concept, kept in one module although it is long: the finite-state chain - its file
(`ChainPair`), its exact engine (`chain_quantities`, with the optional fused kernel in
`_chain_kernel`), its conversions to and from enumerable trees, and the random chains the
studies and tests draw from.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import _chain_kernel
from ._compute import check_device, engine_threads, kernel_threads
from ._files import wrong_kind_hint
from ._resources import check_memory, format_bytes
from ._validate import check_finite_or_inf, check_horizon, read_npz, scalar
from .bounds import BoundInputs, evaluate_bounds
from .divergences import log_softmax, token_kl, token_tv
from .mismatch import MechanismView, resolve_one
from .second_order import second_order_chain

__all__ = [
    "ChainPair",
    "chain_quantities",
    "chain_quantities_batch",
    "evaluate_chain_file",
    "chain_to_tree",
    "tree_to_chain",
    "last_k_transition",
    "random_automaton_transition",
    "counter_transition",
    "random_chain_pair",
    "MISMATCHES",
]

_NORM_TOL = 1e-9  # |logsumexp(row)| allowed for a row of log-probabilities
_REWARD_TOL = 1e-12  # rounding allowed in max(reward_final) + max(reward_step) <= 1


# --------------------------------------------------------------------------- the pair record
@dataclass(frozen=True)
class ChainPair:
    """A finite-state policy pair (docs/formats.md "Finite-state pair file").

    Fields (S states, V tokens, P prompts, horizon T):
      T: horizon >= 1.
      transition: int64 (S, V); next state after emitting v in state s.
      init_state: int64 (P,); start state s_1 of each prompt.
      prompt_probs: float64 (P,); P(x), non-negative, sums to 1.
      logp_roll, logp_theta: float64 (S, V) (same at every t) or (T, S, V) (row t-1 at time t);
        log pi(v | s); -inf marks a zero probability; each row normalised.
      reward_final: float64 (S,); reward_step: float64 (S, V) (zeros if absent);
        both >= 0 and max(reward_final) + max(reward_step) <= 1, so R is in [0, 1].
    """

    T: int
    transition: np.ndarray = field(repr=False)
    init_state: np.ndarray = field(repr=False)
    prompt_probs: np.ndarray = field(repr=False)
    logp_roll: np.ndarray = field(repr=False)
    logp_theta: np.ndarray = field(repr=False)
    reward_final: np.ndarray = field(repr=False)
    reward_step: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        T = int(check_horizon(self.T))
        trans = _int_array("transition", self.transition, ndim=2)
        S, V = trans.shape
        if S < 1 or V < 1:
            raise ValueError(f"transition must have shape (S, V) with S, V >= 1, got {trans.shape}")
        if trans.min() < 0 or trans.max() >= S:
            raise ValueError(
                f"transition entries must be states in [0, {S}), got range [{trans.min()}, {trans.max()}]"
            )
        init = _int_array("init_state", self.init_state, ndim=1)
        if init.size < 1 or init.min() < 0 or init.max() >= S:
            raise ValueError(f"init_state must be a non-empty (P,) array of states in [0, {S})")
        probs = check_finite_or_inf("prompt_probs", self.prompt_probs)
        if probs.shape != init.shape:
            raise ValueError(f"prompt_probs has shape {probs.shape} but init_state has {init.shape}")
        if (probs < 0).any() or not np.isfinite(probs).all():
            raise ValueError("prompt_probs must be finite and >= 0")
        if abs(probs.sum() - 1.0) > _NORM_TOL:
            raise ValueError(f"prompt_probs must sum to 1, got {probs.sum()!r}")
        lr = _check_logp("logp_roll", self.logp_roll, T, S, V)
        lth = _check_logp("logp_theta", self.logp_theta, T, S, V)
        if lr.shape != lth.shape:
            raise ValueError(f"logp_theta has shape {lth.shape} but logp_roll has {lr.shape}")
        rf = check_finite_or_inf("reward_final", self.reward_final)
        if rf.shape != (S,):
            raise ValueError(f"reward_final must have shape ({S},), got {rf.shape}")
        rs = (
            np.zeros((S, V))
            if self.reward_step is None
            else check_finite_or_inf("reward_step", self.reward_step)
        )
        if rs.shape != (S, V):
            raise ValueError(f"reward_step must have shape ({S}, {V}), got {rs.shape}")
        for name, r in (("reward_final", rf), ("reward_step", rs)):
            if not np.isfinite(r).all() or (r < 0).any():
                raise ValueError(f"{name} must be finite and >= 0")
        if rf.max() + rs.max() > 1.0 + _REWARD_TOL:
            raise ValueError(
                f"reward_final and reward_step: max(reward_final) + max(reward_step) must be <= 1 "
                f"(so R is in [0, 1]), got {rf.max():g} + {rs.max():g}"
            )
        for name, value in (
            ("T", T),
            ("transition", trans),
            ("init_state", init),
            ("prompt_probs", probs),
            ("logp_roll", lr),
            ("logp_theta", lth),
            ("reward_final", rf),
            ("reward_step", rs),
        ):
            if isinstance(value, np.ndarray) and not _adoptable(value):
                value = value.copy()
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    S = property(lambda self: self.transition.shape[0], doc="number of states")
    V = property(lambda self: self.transition.shape[1], doc="vocabulary size")
    P = property(lambda self: self.init_state.shape[0], doc="number of prompts")
    time_dependent = property(lambda self: self.logp_roll.ndim == 3, doc="logits vary with t")

    def with_horizon(self, T: int) -> ChainPair:
        """The same pair at horizon T (time-dependent logits: T <= the stored horizon, a prefix)."""
        T = int(scalar("T", check_horizon(T)))
        lr, lth = self.logp_roll, self.logp_theta
        if self.time_dependent:
            if T > lr.shape[0]:
                raise ValueError(f"T = {T} exceeds the {lr.shape[0]} time steps of the time-dependent logits")
            lr, lth = lr[:T], lth[:T]
        return ChainPair(
            T,
            self.transition,
            self.init_state,
            self.prompt_probs,
            lr,
            lth,
            self.reward_final,
            self.reward_step,
        )

    def save(self, path: str | Path) -> None:
        """Write the docs/formats.md chain `.npz` (keys T, transition, init_state, ...)."""
        np.savez(
            path,
            T=np.int64(self.T),
            transition=self.transition,
            init_state=self.init_state,
            prompt_probs=self.prompt_probs,
            logp_roll=self.logp_roll,
            logp_theta=self.logp_theta,
            reward_final=self.reward_final,
            reward_step=self.reward_step,
        )

    @classmethod
    def load(cls, path: str | Path) -> ChainPair:
        """Read and validate a chain `.npz`; ValueError names the missing or bad field."""
        data = read_npz(path, "chain")
        required = (
            "T",
            "transition",
            "init_state",
            "prompt_probs",
            "logp_roll",
            "logp_theta",
            "reward_final",
        )
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"chain: {path} lacks {', '.join(missing)}{wrong_kind_hint(data, 'chain')}")
        T = data["T"]
        if T.shape != () or T.dtype.kind not in "iuf":
            raise ValueError(f"T must be an integer scalar, got shape {T.shape} dtype {T.dtype}")
        return cls(
            T=T.item(),
            transition=data["transition"],
            init_state=data["init_state"],
            prompt_probs=data["prompt_probs"],
            logp_roll=data["logp_roll"],
            logp_theta=data["logp_theta"],
            reward_final=data["reward_final"],
            reward_step=data.get("reward_step"),
        )


def _adoptable(x: np.ndarray) -> bool:
    """A read-only array owning its memory (e.g. from `ChainPair.load` or another ChainPair):
    stored without a copy. Anything else is copied, so later writes by the caller cannot
    change the pair."""
    return not x.flags.writeable and x.flags.owndata


def _int_array(name: str, value, ndim: int) -> np.ndarray:
    x = np.asarray(value)
    if x.dtype.kind not in "iu":
        if x.dtype.kind == "f" and np.isfinite(x).all() and (x == np.floor(x)).all():
            x = x.astype(np.int64)
        else:
            raise ValueError(f"{name} must be an integer array, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {x.shape}")
    return x.astype(np.int64)


def _rows_normalised(x: np.ndarray, block: int = 2**16) -> bool:
    """True when every row (last axis) has |log sum_v e^x| <= _NORM_TOL, in cache-sized blocks.

    A fast pre-check: rows of log-probabilities have max <= 0 and sum of e^x near 1, so no
    max shift is needed, and |log s| <= tol is e^-tol <= s <= e^tol (no log per row; the row
    sums as one matrix-vector product). NaN and +inf give a NaN / inf sum, a row of -inf a zero
    sum: False, and the caller's exact check then names the problem. Large inputs are split
    between the free cores (numpy releases the GIL in exp and matmul).
    """
    rows = x.reshape(-1, x.shape[-1])
    n_threads = min(kernel_threads(), 2) if rows.size >= 2**22 else 1
    if n_threads == 1:
        return _rows_normalised_part(rows, block)
    half = rows.shape[0] // 2
    parts = [rows[:half], rows[half:]]
    result = [True, True]

    def work(i):
        result[i] = _rows_normalised_part(parts[i], block)

    worker = threading.Thread(target=work, args=(1,), name="chain-validate")
    worker.start()
    try:
        work(0)
    finally:
        worker.join()
    return result[0] and result[1]


def _rows_normalised_part(rows: np.ndarray, block: int) -> bool:
    """`_rows_normalised` of a (n, V) array, in one thread."""
    V = rows.shape[-1]
    step = max(1, block // max(1, V))
    buf = np.empty((min(step, rows.shape[0]), V))
    ones = np.ones(V)
    lo, hi = math.exp(-_NORM_TOL), math.exp(_NORM_TOL)
    with np.errstate(all="ignore"):
        for i in range(0, rows.shape[0], step):
            part = rows[i : i + step]
            e = np.exp(part, out=buf[: part.shape[0]])
            s = e @ ones
            if not ((s >= lo) & (s <= hi)).all():
                return False
    return True


def _check_logp(name: str, value, T: int, S: int, V: int) -> np.ndarray:
    """Log-probabilities (S, V) or (T', S, V) with T' >= T rows: no NaN / +inf, rows normalised."""
    fast = isinstance(value, np.ndarray) and value.dtype == np.float64  # NaN: found by the row check
    x = value if fast else check_finite_or_inf(name, value)
    if x.shape == (S, V):
        pass
    elif x.ndim == 3 and x.shape[1:] == (S, V):
        if x.shape[0] != T:
            raise ValueError(f"{name} is time-dependent with {x.shape[0]} steps but T = {T}")
    else:
        raise ValueError(f"{name} must have shape ({S}, {V}) or ({T}, {S}, {V}), got {x.shape}")
    if _rows_normalised(x):
        return x
    check_finite_or_inf(name, x)  # names a NaN
    if (x == np.inf).any():
        raise ValueError(f"{name} contains +inf (a log-probability is <= 0)")
    with np.errstate(invalid="ignore"):  # all -inf rows give nan here, caught below
        hi = x.max(-1, keepdims=True)
        lse = (hi + np.log(np.exp(x - hi).sum(-1, keepdims=True)))[..., 0]
    bad = ~(np.abs(lse) <= _NORM_TOL)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} rows must be normalised log-probabilities; row {idx} has logsumexp {lse[idx]!r}"
        )
    return x


# --------------------------------------------------------------------------- the engine
@dataclass
class _Batch:
    """N pairs sharing (S, V, T, time-dependence, B), as torch float64 tensors on `device`.

    lr, lth: (N, Tp, S, V), Tp in {1, T}; trans: (N, S, V) int64; starts: (N, B, S) start laws
    of the B prompt groups (one-hot on their start state); w: (N, B) their prompt mass;
    rf: (N, S); rs: (N, S, V); T: horizon.
    """

    lr: torch.Tensor
    lth: torch.Tensor
    trans: torch.Tensor
    starts: torch.Tensor
    w: torch.Tensor
    rf: torch.Tensor
    rs: torch.Tensor
    T: int


def _prompt_groups(pair: ChainPair) -> tuple[np.ndarray, np.ndarray]:
    """Distinct start states of prompts with P(x) > 0 and their total mass: (B,), (B,)."""
    pos = pair.prompt_probs > 0
    states, inv = np.unique(pair.init_state[pos], return_inverse=True)
    mass = np.bincount(inv, weights=pair.prompt_probs[pos], minlength=len(states))
    return states, mass


def _check_batch(pairs: list[ChainPair]) -> None:
    """ValueError unless the pairs share S, V, T, time-dependence and the number of start states."""
    first = pairs[0]
    B = len(_prompt_groups(first)[0])
    for p in pairs:
        same = (p.S, p.V, p.T, p.time_dependent) == (first.S, first.V, first.T, first.time_dependent)
        if not same or len(_prompt_groups(p)[0]) != B:
            raise ValueError("pairs: a batch needs equal S, V, T, time-dependence and number of start states")


def _run_kernel(pair: ChainPair, threads: int) -> dict:
    """One pair through the fused CPU kernel (`_chain_kernel.run`; two passes side by side when
    threads >= 2)."""
    states, mass = _prompt_groups(pair)
    lr, lth = (x[None] if x.ndim == 2 else x for x in (pair.logp_roll, pair.logp_theta))
    return _chain_kernel.run(
        lr, lth, pair.transition, states, mass, pair.reward_final, pair.reward_step, pair.T, threads
    )


def _make_batch(pairs: list[ChainPair], device) -> _Batch:
    first = pairs[0]
    groups = [_prompt_groups(p) for p in pairs]
    B = len(groups[0][0])
    S = first.S

    def stack(xs, dtype=torch.float64):
        return torch.as_tensor(np.stack(xs), dtype=dtype, device=device)

    def levels(lp):  # (S, V) -> (1, S, V); (T, S, V) stays
        return lp[None] if lp.ndim == 2 else lp

    starts = np.zeros((len(pairs), B, S))
    for n, (st, _) in enumerate(groups):
        starts[n, np.arange(B), st] = 1.0
    return _Batch(
        lr=stack([levels(p.logp_roll) for p in pairs]),
        lth=stack([levels(p.logp_theta) for p in pairs]),
        trans=stack([p.transition for p in pairs], torch.int64),
        starts=torch.as_tensor(starts, dtype=torch.float64, device=device),
        w=stack([m for _, m in groups]),
        rf=stack([p.reward_final for p in pairs]),
        rs=stack([p.reward_step for p in pairs]),
        T=first.T,
    )


def _prob_diff(lr: torch.Tensor, lth: torch.Tensor) -> torch.Tensor:
    """pi_theta - pi_roll from log-probs, to relative rounding: e^hi (1 - e^{lo - hi}) with sign.

    Exact at -inf (one side zero gives the other probability; both zero gives 0).
    """
    hi, lo = torch.maximum(lr, lth), torch.minimum(lr, lth)
    gap = torch.where(torch.isneginf(hi), torch.zeros_like(hi), lo - hi)  # <= 0; -inf if lo = 0 < hi
    mag = torch.exp(hi) * (-torch.expm1(gap))
    mag = torch.where(torch.isneginf(hi), torch.zeros_like(mag), mag)
    return torch.where(lth >= lr, mag, -mag)


# Forward kernels, in this order along the K axis of the forward state X (N, K, B, S):
#   0 roll: mu^roll;  1 theta: mu^theta;  2 agree: the coupling's still-agreeing mass a_t;
#   3 reach_roll, 4 reach_theta: 0/1 indicators of roll- / theta-reachable states.
_K = 5


def _token_terms(b: _Batch):
    """Per-state token divergences at every stored step, torch (N, Tp, S): tv, kl, klrev, and
    acv: 1 where pi_theta puts mass on a token pi_roll cannot emit."""
    tv = token_tv(b.lr, b.lth)
    # KL is +inf exactly where one side has a token the other cannot emit, even when that
    # token's probability underflows (token_kl sees exp(-1000) = 0 as outside the support)
    off_theta = (~torch.isneginf(b.lr) & torch.isneginf(b.lth)).any(-1)
    off_roll = (torch.isneginf(b.lr) & ~torch.isneginf(b.lth)).any(-1)
    kl = torch.where(off_theta, torch.full_like(tv, math.inf), token_kl(b.lr, b.lth))
    klrev = torch.where(off_roll, torch.full_like(tv, math.inf), token_kl(b.lth, b.lr))
    return tv, kl, klrev, off_roll.double()


class _Ops:
    """Everything the two recursions need, on one backend, plus their one-step operators.

    Backend: numpy on the CPU (small per-step arrays: numpy's per-call cost is far below
    torch's), torch on any other device. Operators: dense S x S matrices (homogeneous chains
    with S <= 2 V, where a matmul beats a scatter) or gather/scatter over (S, V). Every
    route gives the same numbers (tests compare them).
    """

    def __init__(self, b: _Batch, dense: bool | None, backend: str):
        N, Tp, S, V = b.lr.shape
        self.N, self.S, self.V, self.T, self.Tp = N, S, V, b.T, Tp
        tv, kl, klrev, acv = _token_terms(b)
        fin = lambda x: torch.where(torch.isinf(x), torch.zeros_like(x), x)  # noqa: E731
        isinf = lambda x: torch.isinf(x).double()  # noqa: E731
        zero = torch.zeros_like(tv)
        pr, pth = torch.exp(b.lr), torch.exp(b.lth)
        D = _prob_diff(b.lr, b.lth)  # (N, Tp, S, V)
        W = torch.stack(  # (N, Tp, K, S, V) forward weights; supports from -inf, exact under underflow
            [pr, pth, torch.exp(torch.minimum(b.lr, b.lth)), (~torch.isneginf(b.lr)).double()]
            + [(~torch.isneginf(b.lth)).double()],
            dim=2,
        )
        Fc = torch.stack(  # constant per-step integrands per kernel, (N, Tp, K, S, 2)
            [
                torch.stack([tv, fin(kl)], -1),  # roll rows: Dbar_t, D_KL^seq increments
                torch.stack([tv, fin(klrev)], -1),  # theta rows: Dbar^theta_t, reverse-KL increments
                torch.stack([tv, zero], -1),  # agree rows: coupling failure increments
                torch.stack([isinf(kl), acv], -1),  # reach_roll rows: infinite KL, absolute continuity
                torch.stack([isinf(klrev), zero], -1),  # reach_theta rows: infinite reverse KL
            ],
            dim=2,
        )
        if dense is None:
            dense = Tp == 1 and S <= 2 * V and N * (_K + 2) * S * S <= 2**24
        self.dense = dense
        arrays = dict(
            W=W,
            Fc=Fc,
            PD=torch.stack([pr, D], 2),  # (N, Tp, 2, S, V)
            c_roll=(pr * b.rs[:, None]).sum(-1) / b.T,  # (N, Tp, S): sum_v pi_roll r / T
            c_diff=(D * b.rs[:, None]).sum(-1) / b.T,
            starts=b.starts,
            w=b.w,
            rf=b.rf,
            tv=tv,
            kl=kl,
        )
        if dense:
            idx = b.trans[:, None, None].expand(N, Tp, _K + 2, S, V)
            vals = torch.cat([W, pr[:, :, None], D[:, :, None]], dim=2)  # (N, Tp, K+2, S, V)
            M = torch.zeros(N, Tp, _K + 2, S, S, dtype=torch.float64, device=b.lr.device)
            M.scatter_add_(-1, idx, vals)  # M[..., s, s'] = sum_{v: trans[s, v] = s'} vals[..., s, v]
            arrays["M_fwd"] = M[:, :, :_K]  # (N, Tp, K, S, S)
            M_back = torch.cat([M[:, :, _K], M[:, :, _K + 1]], dim=-2)  # (N, Tp, 2S, S)
            arrays["M_back_T"] = M_back.transpose(-1, -2).contiguous()  # (N, Tp, S, 2S)
        self.numpy = backend == "numpy"
        for name, x in arrays.items():
            setattr(self, name, x.cpu().numpy() if self.numpy else x)
        trans = b.trans.reshape(N, S * V)
        # flat index into an (N, 2, S) array of [U, Delta]: (n 2 + c) S + trans[n, s, v]
        base = (
            torch.arange(N, device=trans.device)[:, None, None] * 2
            + torch.arange(2, device=trans.device)[:, None]
        )
        gather = (base * S + trans[:, None, :]).reshape(-1)  # (N 2 S V,)
        if self.numpy:
            self.gather_idx, self.scatter_idx = gather.cpu().numpy(), trans.cpu().numpy()
        else:
            self.gather_idx, self.scatter_idx = gather, trans[:, None]
        self.device = b.lr.device

    def empty(self, *shape, dtype=None):
        if self.numpy:
            return np.empty(shape, dtype=np.bool_ if dtype == "bool" else np.float64)
        return torch.empty(shape, dtype=torch.bool if dtype == "bool" else torch.float64, device=self.device)

    def _scatter(self, vals):
        """vals (N, R, S V) -> (N, R, S): out[n, r, s'] = sum_{i: trans_flat[n, i] = s'} vals[n, r, i]."""
        N, R, _ = vals.shape
        S = self.S
        if self.numpy:
            if getattr(self, "_flat_R", None) != R:  # (n R + r) S + trans[n, i], built once per R
                base = (np.arange(N)[:, None, None] * R + np.arange(R)[None, :, None]) * S
                self._flat, self._flat_R = (base + self.scatter_idx[:, None, :]).ravel(), R
            return np.bincount(self._flat, weights=vals.ravel(), minlength=N * R * S).reshape(N, R, S)
        out = torch.zeros(N, R, S, dtype=vals.dtype, device=vals.device)
        return out.scatter_add_(-1, self.scatter_idx.expand(N, R, vals.shape[-1]), vals)

    def forward(self, X, k: int):
        """X (N, K, B, S) at time t = k + 1 -> X at t + 1 (reach rows clamped to 0/1)."""
        j = k if self.Tp > 1 else 0
        if self.dense:
            Y = X @ self.M_fwd[:, j]
        else:
            N, K, B, S = X.shape
            prod = (X[..., None] * self.W[:, j, :, None]).reshape(N, K * B, S * self.V)
            Y = self._scatter(prod).reshape(N, K, B, S)
        Y[:, 3:] = (Y[:, 3:] > 0) * 1.0
        return Y

    def backward(self, UD, k: int):
        """[U_{t+1}, Delta_{t+1}] (N, 2, S) at t = k + 1 -> ([U_t, Delta_t], g_t, h_t)."""
        j = k if self.Tp > 1 else 0
        if self.dense:
            Z = UD @ self.M_back_T[:, j]  # (N, 2, 2S): [U, Delta] M_roll^T, [U, Delta] M_diff^T
            roll, diff = Z[..., : self.S], Z[..., self.S :]
        else:
            N, S, V = self.N, self.S, self.V
            G = UD.reshape(-1)[self.gather_idx].reshape(N, 1, 2, S, V)  # U, Delta at next states
            both = (self.PD[:, j, :, None] * G).sum(-1)  # (N, 2 kernels [pi_roll, diff], 2, S)
            roll, diff = both[:, 0], both[:, 1]
        U = self.c_roll[:, j] + roll[:, 0]
        g = self.c_diff[:, j] + diff[:, 0]
        h = diff[:, 1]
        Delta = g + roll[:, 1] + h  # = g + sum_v pi_theta Delta_{t+1}[trans]
        return (np.stack if self.numpy else torch.stack)([U, Delta], 1), g, h


def _run_dp(b: _Batch, dense: bool | None = None, backend: str | None = None) -> dict[str, np.ndarray]:
    """The two recursions for a batch; raw per-step, per-group numpy arrays (see `_finish`)."""
    if backend is None:
        backend = "numpy" if b.lr.device.type == "cpu" else "torch"
    ops = _Ops(b, dense, backend)
    N, Tp, S, V = b.lr.shape
    T, B = b.T, b.starts.shape[1]
    stack = np.stack if ops.numpy else torch.stack

    # backward: U_t, Delta_t; store g_t and h_t (N, T, S, 2)
    gh = ops.empty(N, T, S, 2)
    UD = stack([ops.rf, 0.0 * ops.rf], 1)  # (N, 2, S)
    for k in range(T - 1, -1, -1):
        UD, g, h = ops.backward(UD, k)
        gh[:, k, :, 0], gh[:, k, :, 1] = g, h

    # forward: stats per step (T, N, K, B, 2) and (T, N, 2, B, 2); reachable union (N, T, S)
    X = 1.0 * stack([ops.starts] * _K, 1)  # (N, K, B, S)
    stat_c = ops.empty(T, N, _K, B, 2)
    stat_g = ops.empty(T, N, 2, B, 2)
    reach = ops.empty(N, T, S, dtype="bool")
    state_tv = ops.empty(T + 1, N)
    w = ops.w[:, None, None, :]  # (N, 1, 1, B)
    for k in range(T):
        j = k if Tp > 1 else 0
        stat_c[k] = X @ ops.Fc[:, j]
        stat_g[k] = X[:, :2] @ gh[:, k, None]
        reach[:, k] = X[:, 3:].sum((1, 2)) > 0
        mu = (w @ X[:, :2])[:, :, 0]  # (N, 2, S) joint state marginals
        state_tv[k] = 0.5 * abs(mu[:, 1] - mu[:, 0]).sum(-1)
        X = ops.forward(X, k)
    mu = (w @ X[:, :2])[:, :, 0]
    state_tv[T] = 0.5 * abs(mu[:, 1] - mu[:, 0]).sum(-1)
    U1 = ops.starts @ UD.transpose(0, 2, 1) if ops.numpy else ops.starts @ UD.transpose(1, 2)  # (N, B, 2)
    raw = dict(U1=U1, stat_c=stat_c, stat_g=stat_g, reach=reach, state_tv=state_tv, gh=gh)
    raw.update(tv=ops.tv, kl=ops.kl, w=ops.w)
    return {k: (v if isinstance(v, np.ndarray) else v.detach().cpu().numpy()) for k, v in raw.items()}


def _tv_upper(fail: np.ndarray, K: np.ndarray, Krev: np.ndarray) -> np.ndarray:
    """min(1, coupling failure, Pinsker and Bretagnolle-Huber on K and on Krev), elementwise."""
    with np.errstate(over="ignore"):
        out = np.minimum(1.0, fail)
        for kk in (K, Krev):
            out = np.minimum(out, np.sqrt(kk / 2.0))
            out = np.minimum(out, np.sqrt(-np.expm1(-kk)))
    return out


def _per_pair(raw: dict[str, np.ndarray], n: int) -> dict:
    """Pair n of `_run_dp`'s batch arrays, reduced to what `_finish` reads (as `_chain_kernel.run`)."""
    reach = raw["reach"][n]  # (T, S)
    tv = np.broadcast_to(raw["tv"][n], reach.shape)
    kl = np.broadcast_to(raw["kl"][n], reach.shape)
    stat_c = raw["stat_c"][:, n]  # (T, K, B, 2)
    w = raw["w"][n]
    # per group, per step: KL increments (finite part + infinite flags), coupling failure increments
    kl_inc = np.where(stat_c[:, 3, :, 0] > 0, np.inf, stat_c[:, 0, :, 1])  # (T, B)
    klrev_inc = np.where(stat_c[:, 4, :, 0] > 0, np.inf, stat_c[:, 1, :, 1])
    fail_inc = stat_c[:, 2, :, 0]
    pre = lambda x: np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, 0)], 0)  # noqa: E731  (T+1, B)
    K, Krev, fail = pre(kl_inc), pre(klrev_inc), pre(fail_inc)
    upper = _tv_upper(fail, K, Krev)  # (T + 1, B): row j bounds the TV of the laws of (x, y_1..y_j)
    upper[0] = 0.0  # d_1 = P(x) for both policies
    return {
        "U1": raw["U1"][n],
        "w": w,
        "stat_g_sum": raw["stat_g"][:, n].sum(0),
        "state_tv": raw["state_tv"][:, n],
        "dbar": np.minimum(1.0, stat_c[:, 0, :, 0] @ w),  # (T,); the cap only absorbs rounding
        "ctx_upper": np.minimum(1.0, upper @ w),  # (T + 1,)
        "upper_T": upper[-1],
        "dkl_seq": float(w @ K[-1]),
        "ac_ok": not (stat_c[:, 3, :, 1] > 0).any(),
        "eps": float(np.where(reach, tv, 0.0).max()),
        "delta": float(np.where(reach, kl, 0.0).max()),
        "g_inf": np.where(reach, np.abs(raw["gh"][n][..., 0]), 0.0).max(-1),
    }


def _finish(r: dict, T: int) -> dict:
    """Assemble the docs/formats.md chain JSON dict of one pair from its reduced raw arrays:
    U1 (B, 2), w (B,), stat_g_sum (2, B, 2) (sums over t of the roll, theta rows of <mu_t, g_t>
    and <mu_t, h_t>), dbar (T,), state_tv (T + 1,), ctx_upper (T + 1,) (row j: the context-TV
    upper bound of the laws of (x, y_1..y_j), averaged over prompts), upper_T (B,) (row T per
    prompt group), dkl_seq, ac_ok (pi_theta << pi_roll on roll-reachable states), g_inf (T,),
    eps, delta."""
    stat_g = r["stat_g_sum"]  # (2, B, 2)
    state_tv = r["state_tv"]  # (T + 1,)
    w = r["w"]  # (B,)
    U1 = r["U1"]  # (B, 2)
    J_roll = float(w @ U1[:, 0])
    dJ = float(w @ U1[:, 1])  # J_theta - J_roll, computed without cancellation
    surrogate = float(w @ stat_g[0, :, 0])
    second_order = float(w @ stat_g[0, :, 1])
    pdi = float(w @ stat_g[1, :, 0])  # sum_t <mu_t^theta, g_t> = J_theta - J_roll (PDI)
    dbar = r["dbar"]
    dkl_seq = r["dkl_seq"]
    eps, delta, g_inf = r["eps"], r["delta"], r["g_inf"]
    notes = []
    if r["ac_ok"]:
        ratio = second_order  # -Delta of the ratio identity, evaluated by the h_t recursion
    else:
        ratio = None
        notes.append(
            "error_ratio_identity is undefined: pi_theta puts mass on a token that pi_roll cannot emit "
            "in a roll-reachable state (pi_theta is not absolutely continuous w.r.t. pi_roll)"
        )
    notes.append(
        "dtv_seq and context_tv are not determined by the state chain: reported as proven upper bounds "
        "(greedy coupling, Pinsker and Bretagnolle-Huber on exact prefix KLs, per prompt) and lower bounds "
        "(TV of state marginals, |J_theta - J_roll|)"
    )
    ctx_upper = r["ctx_upper"][:T]
    dtv_upper = float(r["ctx_upper"][T])
    lower_ctx = np.minimum(ctx_upper, state_tv[:T])
    dtv_lower = float(min(dtv_upper, max(state_tv.max(), abs(dJ))))
    inputs = BoundInputs(
        T=T,
        eps=min(1.0, eps),
        delta=delta,
        dkl_seq=dkl_seq,
        dtv_seq=dtv_upper,
        dbar=dbar,
        sources={
            "eps": "exact",
            "delta": "exact",
            "dkl_seq": "exact",
            "dbar": "exact",
            "dtv_seq": "upper_bound: dtv_seq_upper (coupling / Pinsker / Bretagnolle-Huber per prompt)",
        },
    )
    J_theta = J_roll + dJ
    return {
        "T": T,
        "J_roll": J_roll,
        "J_theta": J_theta,
        "surrogate": surrogate,
        "error": dJ - surrogate,
        "error_ratio_identity": ratio,
        "error_second_order": second_order,
        "error_pdi": pdi - surrogate,
        "eps": min(1.0, eps),
        "delta": delta,
        "dkl_seq": dkl_seq,
        "dtv_seq_upper": dtv_upper,
        "dtv_seq_max_prompt_upper": float(min(1.0, r["upper_T"][w > 0].max())),
        "dtv_seq_lower": dtv_lower,
        "dbar": dbar.tolist(),
        "context_tv_upper": ctx_upper.tolist(),
        "context_tv_lower": lower_ctx.tolist(),
        "g_inf": np.asarray(g_inf, dtype=np.float64).tolist(),
        "bounds": evaluate_bounds(inputs),
        "bound_inputs": inputs.to_json()["sources"],
        "notes": notes,
    }


MAX_CHAIN_STEPS = 2**20  # work guard on T (the fused kernel: ~3 ns per (t, s, v) and pass on one core)
RESULT_BYTES_PER_STEP = 192  # per t and pair: 4 JSON lists of Python floats (32 B each), _finish's arrays
LEVEL_BYTES_PER_STEP = 1024  # per t and pair, level-by-level route: step records (700 B measured at S=3 V=2)


def chain_bytes(T: int, S: int, V: int, n_pairs: int = 1, time_dependent: bool = True,
                fused: bool = False, groups: int = 1) -> int:  # fmt: skip
    """Estimated bytes the engine allocates for n_pairs pairs (beyond the pairs' own arrays).

    Every route keeps the result of every pair: RESULT_BYTES_PER_STEP per t. On top of it, for one
    pair at a time:
    - fused kernel (`_chain_kernel.run`): `bytes_per_step` per t (4 float64 outputs, S / 8 bits of
      reachability; time-dependent: the (T, S) g table), the optional g/h/e and state-marginal
      tables (at most TABLE_ENTRIES float64) and O(S V) scratch. A homogeneous chain streams in
      O(S V) + O(T) memory.
    - level-by-level route (all pairs at once): LEVEL_BYTES_PER_STEP + 40 S per t (the (T, S)
      tables of g_t, h_t and reachability and their reductions) and 64 S V per stored step of
      the logits (one step when homogeneous, T otherwise: the stacked operators), plus dense
      S x S operators when S <= 2 V.
    """
    result = n_pairs * T * RESULT_BYTES_PER_STEP
    if fused:
        table = _chain_kernel.table_entries(T, S, groups)
        tables = 8 * table if table <= _chain_kernel.TABLE_ENTRIES else 0
        scratch = 8 * S * V * 6 + 8 * S * (16 + 2 * groups)  # homogeneous: token arrays once
        if time_dependent:  # per pass 5 token buffers of a block, per-state terms (forward), constants
            nb = min(T, max(1, _chain_kernel.BLOCK_ENTRIES // (S * V)))  # (backward); both passes at once
            scratch += 8 * nb * S * (10 * V + _chain_kernel.N_ST + 3)
        return result + T * _chain_kernel.bytes_per_step(S, time_dependent) + tables + scratch
    steps = T if time_dependent else 1
    dense = 8 * (_K + 2) * S * S * steps if S <= 2 * V else 0
    per_pair = T * (LEVEL_BYTES_PER_STEP + 40 * S) + steps * 64 * S * V + dense
    return result + n_pairs * per_pair


def _check_steps(T: int) -> None:
    """ValueError naming T when the horizon exceeds MAX_CHAIN_STEPS (before any work)."""
    if T > MAX_CHAIN_STEPS:
        raise ValueError(
            f"T = {T} exceeds the chain engine's {MAX_CHAIN_STEPS} = 2**20 steps (it reports every per-t "
            f"quantity: at least {format_bytes(T * RESULT_BYTES_PER_STEP)} of result); use a shorter horizon"
        )


def check_chain_size(T: int, S: int, V: int, n_pairs: int = 1, time_dependent: bool = True,
                     fused: bool = False, groups: int = 1) -> None:  # fmt: skip
    """ValueError naming T, before any work, when the chain engine would take too many steps or more
    memory than is available: steps <= MAX_CHAIN_STEPS, memory `chain_bytes` (per route) checked
    by `_resources.check_memory` (the estimate is in the message)."""
    _check_steps(T)
    route = "fused kernel" if fused else "level-by-level route"
    check_memory(
        "T",
        chain_bytes(T, S, V, n_pairs, time_dependent, fused, groups),
        f"the chain engine ({route}, {'time-dependent' if time_dependent else 'homogeneous'}, S = {S}, "
        f"V = {V}) over T = {T} steps",
    )


def chain_quantities_batch(
    pairs: list[ChainPair], device="cpu", dense: bool | None = None, backend: str | None = None
) -> list[dict]:
    """Exact quantities of many chain pairs at once (one DP over a leading batch axis).

    Pairs must share S, V, T, time-dependence and the number of distinct start states;
    group others into separate calls. Returns one dict per pair, as `chain_quantities`.
    `dense` forces the dense-matrix (True) or gather/scatter (False) step operators;
    `backend` ("numpy" or "torch"; default numpy on the CPU, torch elsewhere) the array library.
    """
    if not pairs:
        raise ValueError("pairs must be a non-empty list of ChainPair")
    for p in pairs:
        if not isinstance(p, ChainPair):
            raise ValueError(f"pairs must hold ChainPair records, got {type(p).__name__}")
    if backend not in (None, "numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    device = check_device(device)
    _check_batch(pairs)
    first = pairs[0]
    fused = device.type == "cpu" and dense is None and backend is None and _chain_kernel.available()
    check_chain_size(
        first.T, first.S, first.V, len(pairs), first.time_dependent, fused, len(_prompt_groups(first)[0])
    )
    if fused:
        threads = kernel_threads()
        raws = [_run_kernel(p, threads) for p in pairs]  # the fused kernel, pair by pair
        second = [r["second_order"] for r in raws]  # E_roll[Z], second_order_chain's recursion in the kernel
    else:
        with torch.no_grad(), engine_threads():  # torch on 1 thread: per-step ops collapse under load
            b = _make_batch(pairs, device)
            raw = _run_dp(b, dense, backend)
        raws = [_per_pair(raw, n) for n in range(len(pairs))]
        second = [None] * len(pairs)
    out = [_finish(r, p.T) for r, p in zip(raws, pairs)]
    for pair, d, z in zip(pairs, out, second):  # E_roll[Z]: the state recursion of trm_bounds.second_order
        if d["error_ratio_identity"] is not None:  # defined exactly when pi_theta << pi_roll
            d["bounds"]["second_order"] = second_order_chain(pair) if z is None else z
    return out


def chain_quantities(
    pair: ChainPair, device="cpu", dense: bool | None = None, backend: str | None = None
) -> dict:
    """Exact J, L', Error, eps, delta, Dbar_t, D_KL^seq, max|g_t| of a chain pair, plus
    proven bounds on D_TV^seq and TV(d_t^theta, d_t^roll) (module docstring).

    Returns the docs/formats.md chain JSON as a dict: J_roll, J_theta, surrogate, error,
    error_ratio_identity (None when undefined), eps, delta, dkl_seq, dbar (T,), g_inf (T,),
    dtv_seq_upper, dtv_seq_max_prompt_upper, context_tv_upper (T,), bounds (on those
    inputs); beside them error_second_order (= sum_t <mu_t^roll, h_t>, always defined),
    error_pdi (Error from the performance-difference form), dtv_seq_lower,
    context_tv_lower, bound_inputs (sources) and notes. O(T S V) time; memory as `chain_bytes`
    (fused kernel, homogeneous: O(S V) + O(T)).
    """
    return chain_quantities_batch([pair], device, dense, backend)[0]


def evaluate_chain_file(path: str | Path, device="cpu", T: int | None = None) -> dict:
    """Load a chain `.npz`, optionally override its horizon, and return `chain_quantities`."""
    check_device(device)  # before reading anything
    if T is not None:
        T = int(scalar("T", check_horizon(T)))
        _check_steps(T)  # before loading; memory once S, V are known (chain_quantities)
    pair = ChainPair.load(path)
    if T is not None:
        pair = pair.with_horizon(T)
    return chain_quantities(pair, device=device)


# --------------------------------------------------------------------------- conversions
def chain_to_tree(pair: ChainPair) -> dict[str, np.ndarray]:
    """Enumerate a chain pair as a tabular pair (docs/formats.md "Exact policy-pair file").

    Returns {"logp_roll_{t}", "logp_theta_{t}": (P, V**(t-1), V) for t = 1..T, "reward":
    (P, V**T), "prompt_probs": (P,)}; row k of level t is the context whose tokens are the
    base-V digits of k (y_1 most significant). Memory O(P V**T): small T only.
    """
    P, V, T = pair.P, pair.V, pair.T
    if P * V**T > 2**26:
        raise ValueError(f"T = {T}: P V**T = {P * V**T} contexts is too many to enumerate")
    out: dict[str, np.ndarray] = {}
    st = pair.init_state[:, None]  # (P, 1): state of each context at level t (t = 1)
    step = np.zeros((P, 1))  # sum_{u<t} reward_step[s_u, y_u] of each context
    for t in range(1, T + 1):
        k = t - 1
        lr = pair.logp_roll[k] if pair.time_dependent else pair.logp_roll
        lth = pair.logp_theta[k] if pair.time_dependent else pair.logp_theta
        out[f"logp_roll_{t}"] = lr[st]  # (P, V**(t-1), V)
        out[f"logp_theta_{t}"] = lth[st]
        step = (step[:, :, None] + pair.reward_step[st]).reshape(P, -1)  # (P, V**t), row = k V + v
        st = pair.transition[st].reshape(P, -1)  # (P, V**t)
    out["reward"] = pair.reward_final[st] + step / T
    out["prompt_probs"] = pair.prompt_probs.copy()
    return out


def tree_to_chain(tree: dict[str, np.ndarray]) -> ChainPair:
    """A tabular pair (the dict layout of `chain_to_tree`) as the smallest level-wise chain.

    States: for each level t = 1..T+1, the classes of contexts that are equivalent (same
    roll and theta log-prob rows and, child by child, equivalent children; at level T+1,
    the same reward). Each state lives at one level, so the logits are time-homogeneous
    (S, V); reward_step = 0 and reward_final holds the leaf rewards. A chain whose logits
    depend only on the state converts back to a chain of at most T+1 times as many states
    (the same state at several times becomes several states), with the same quantities.
    """
    T = 0
    while f"logp_roll_{T + 1}" in tree:
        T += 1
    if T < 1:
        raise ValueError("tree must hold logp_roll_1 .. logp_roll_T")
    reward = np.asarray(tree["reward"], dtype=np.float64)
    P = reward.shape[0]
    V = tree["logp_roll_1"].shape[-1]
    # classes of level T+1 contexts: equal reward
    leaf_vals, cls = np.unique(reward.reshape(-1), return_inverse=True)  # cls: (P V**T,)
    offsets = [0]
    rows_r, rows_th, children = [], [], []
    sizes = [len(leaf_vals)]
    for t in range(T, 0, -1):
        lr = np.asarray(tree[f"logp_roll_{t}"], dtype=np.float64).reshape(-1, V)  # (P V**(t-1), V)
        lth = np.asarray(tree[f"logp_theta_{t}"], dtype=np.float64).reshape(-1, V)
        kids = cls.reshape(-1, V)  # class (within level t+1) of each child
        key = np.concatenate([lr, lth, kids.astype(np.float64)], axis=1)
        uniq, first, cls = np.unique(key, axis=0, return_index=True, return_inverse=True)
        cls = cls.reshape(-1)
        rows_r.append(lr[first])
        rows_th.append(lth[first])
        children.append(kids[first])
        sizes.append(len(uniq))
    # state ids: level T+1 first (0 .. n_leaf-1), then level T, T-1, ..., 1
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    S = int(offsets[-1])
    logp_r = np.full((S, V), -np.log(V))
    logp_th = np.full((S, V), -np.log(V))
    trans = np.zeros((S, V), dtype=np.int64)
    trans[: sizes[0]] = np.arange(sizes[0])[:, None]  # leaves: self-loops, never used at t <= T
    for i in range(T):  # i-th processed level is t = T - i, its children live at block i
        lo, hi = offsets[i + 1], offsets[i + 2]
        logp_r[lo:hi], logp_th[lo:hi] = rows_r[i], rows_th[i]
        trans[lo:hi] = offsets[i] + children[i]
    reward_final = np.zeros(S)
    reward_final[: sizes[0]] = leaf_vals
    init = offsets[T] + cls.reshape(P)
    return ChainPair(
        T=T,
        transition=trans,
        init_state=init,
        prompt_probs=tree["prompt_probs"],
        logp_roll=logp_r,
        logp_theta=logp_th,
        reward_final=reward_final,
        reward_step=np.zeros((S, V)),
    )


# --------------------------------------------------------------------------- chain families
def last_k_transition(V: int, k: int) -> np.ndarray:
    """State = the last k tokens (base-V number, oldest most significant): S = V**k.

    transition[s, v] = (s V + v) mod V**k; start in state 0 (k copies of token 0).
    """
    if V < 1 or k < 0:
        raise ValueError(f"V must be >= 1 and k >= 0, got V={V}, k={k}")
    S = V**k
    s = np.arange(S)[:, None]
    return ((s * V + np.arange(V)[None, :]) % S).astype(np.int64)


def random_automaton_transition(S: int, V: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random deterministic automaton: transition[s, v] iid uniform on [0, S)."""
    if S < 1 or V < 1:
        raise ValueError(f"S and V must be >= 1, got S={S}, V={V}")
    return rng.integers(0, S, size=(S, V)).astype(np.int64)


def counter_transition(S: int, V: int, token: int = 0) -> np.ndarray:
    """State = how many times `token` was emitted, saturating at S - 1: a slowly mixing chain."""
    if S < 1 or V < 1 or not 0 <= token < V:
        raise ValueError(f"need S, V >= 1 and 0 <= token < V, got S={S}, V={V}, token={token}")
    trans = np.repeat(np.arange(S)[:, None], V, axis=1)
    trans[:, token] = np.minimum(np.arange(S) + 1, S - 1)
    return trans.astype(np.int64)


MISMATCHES = MechanismView("chain", lambda m: m.chain)  # {name: (logits, S, rng) -> logits}, mismatch.py


def random_chain_pair(
    transition: np.ndarray,
    mismatch: str,
    strength,
    T: int,
    seed: int = 0,
    temperature: float = 1.5,
    reward: str = "final",
) -> ChainPair:
    """A random softmax policy on a given chain, and a mismatched copy (MISMATCHES).

    pi_roll = softmax(temperature * N(0, 1) logits per state); pi_theta = softmax of the
    logits perturbed by `mismatch`, a mechanism of trm_bounds.mismatch that applies to a
    chain (dense, reverse, swap, drift; old spellings sparse = swap, stale = drift work with a
    DeprecationWarning) of strength `strength` (None: its default). Rewards: "final" ->
    reward_final ~ U(0, 1) per state; "step" -> reward_step ~ U(0, 1); "both" -> each halved.
    One prompt, start state 0.
    """
    mech, strength = resolve_one(mismatch, strength, "chain")
    if reward not in ("final", "step", "both"):
        raise ValueError(f"reward must be 'final', 'step' or 'both', got {reward!r}")
    rng = np.random.default_rng(seed)
    S, V = transition.shape
    logits = temperature * rng.standard_normal((S, V))
    logits_theta = mech.chain(logits, strength, rng)
    rf, rs = rng.random(S), rng.random((S, V))
    scale_f, scale_s = {"final": (1.0, 0.0), "step": (0.0, 1.0), "both": (0.5, 0.5)}[reward]
    return ChainPair(
        T=T,
        transition=transition,
        init_state=np.zeros(1, dtype=np.int64),
        prompt_probs=np.ones(1),
        logp_roll=log_softmax(np.asarray(logits, dtype=np.float64)),
        logp_theta=log_softmax(np.asarray(logits_theta, dtype=np.float64)),
        reward_final=scale_f * rf,
        reward_step=scale_s * rs,
    )
