"""The exact engine: every quantity of docs/theory.md sections 2-5 on an enumerable tree.

Given the two log-prob trees (level t: ``(P, V**(t-1), V)``, row k = base-V digits of
y_<t, see `trm_bounds.pair`), the reward ``(P, V**T)`` and the prompt law ``(P,)``, it
computes in float64, with no Python loop over trajectories:

- forward, level by level: context laws ``d_t^roll``, ``d_t^theta`` (kept as log-probs,
  so differences and TVs are exact to rounding), token KL / TV per context;
- backward from the reward leaves: ``Q_t(c, v) = E_roll[R | c, y_t = v]`` and
  ``V_t(c) = sum_v pi_roll(v|c) Q_t(c, v)`` (and the same under pi_theta for the ratio
  identity), ``g_t(c) = sum_v (pi_theta - pi_roll)(v|c) Q_t(c, v)``.

Then ``L' = sum_t E_{d_t^roll}[g_t]`` (g-form, defined even where pi_roll has zeros) and
``Error = sum_t sum_c (d_t^theta - d_t^roll)(c) g_t(c)`` (= J(theta) - J(roll) - L' by the
performance-difference identity; this grouping keeps full relative precision when the
error is second-order small). The ratio identity is evaluated as
``-Delta = sum_t E_{d_t^roll}[ sum_v (pi_theta - pi_roll)(v|c) (Q_t^theta - Q_t^roll)(c, v) ]``
(conditioning ``prod_{j>t} rho_j`` on c_{t+1} turns it into ``Q^theta / Q^roll``); it is
null, with a note, when pi_theta is not absolutely continuous w.r.t. pi_roll on a
roll-reachable context.

The same backward pass runs the recursion of the second-order bound (`trm_bounds.second_order`:
W_t = TV + E_roll[W_{t+1}], E_t = sum_v |pi_theta - pi_roll| W_{t+1} + E_roll[E_{t+1}]), so
bounds["second_order"] = sum_x P(x) E_1(x) costs no extra pass; `second_order_tree` stays the
independent implementation the tests compare it with.

Large trees are chunked: the levels above a split level are done whole, each subtree
below a split-level row (at most `chunk_leaves` leaves) is done on its own, and only the
split level's values travel between them; memory is O(chunk_leaves + P V**split).
Costs: O(V**T) time for everything except the future-trajectory TV sup, which is
O(T V**T) and computed only on request (``future_tv=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import _tree_kernel
from ._compute import check_device as _check_device
from ._compute import engine_threads
from .bounds import BoundInputs, evaluate_bounds, ln_trm_weights
from .divergences import sum_last as _vsum
from .divergences import token_kl, token_tv
from .pair import _NORM_TOL, PolicyPair, check_level_values, validate_pair_arrays

__all__ = ["exact_quantities", "exact_J", "evaluate_pair_file", "MASK_RULES", "DEFAULT_CHUNK_LEAVES"]

DEFAULT_CHUNK_LEAVES = 2**18  # larger chunks were slower and erratic on 2 shared cores
MASK_RULES = {
    "max": "TRM-Max: M = 1[max_t KL(c_t) <= delta]",
    "avg": "TRM-Avg: M = 1[(1/T) sum_t KL(c_t) <= delta_avg]",
    "max+avg": "both tests must pass",
}
_NEG_INF = -float("inf")


def exact_J(levels: Sequence, reward, prompt_probs, device="cpu") -> float:
    """J(pi) = E_{x ~ P, y ~ pi}[R(x, y)], exactly (one forward pass, float64).

    levels: T arrays (P, V**(t-1), V) of log pi; reward (P, V**T); prompt_probs (P,).
    No validation (this is the trainer's per-step call): pass valid trees.
    """
    from .pair import exact_J_tensor

    device = _check_device(device)
    with torch.no_grad():
        lv = [_t(x, device) for x in levels]
        return float(exact_J_tensor(lv, _t(reward, device), _t(prompt_probs, device)))


def _t(x, device) -> torch.Tensor:
    """float64 tensor on `device`, detached; numpy input is wrapped without a copy on CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64)).to(device)


def _exp_diff_finite(b, a, ea, eb) -> torch.Tensor:
    """e^b - e^a for finite log-values with ea = e^a, eb = e^b already known (same precision
    as `_exp_diff`): e^a expm1(b - a) if b <= a, else -e^b expm1(a - b)."""
    d = b - a
    e = torch.expm1(-d.abs())  # in (-1, 0]
    return torch.where(d <= 0, ea * e, -eb * e)


def _exp_diff(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """e^b - e^a from log-values, exact to relative rounding (no cancellation):

    e^b - e^a = sign(b - a) e^max(a,b) (1 - e^-|b - a|),   0 where both are -inf.
    """
    hi = torch.maximum(a, b)
    gap = (b - a).abs()
    gap = torch.where(torch.isnan(gap), torch.full_like(gap, float("inf")), gap)  # -inf - -inf
    out = torch.exp(hi) * (-torch.expm1(-gap))
    out = torch.where(b < a, -out, out)
    return torch.where(torch.isneginf(hi), torch.zeros_like(out), out)


class _Acc:
    """Running sums / maxima over all levels and chunks (0-d or (T,) tensors on device)."""

    def __init__(self, T: int, P: int, device, K: int):
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)
        self.eps, self.delta = z(()), z(())
        self.dkl_t, self.dbar, self.ctx_tv, self.erho = z(T), z(T), z(T), z(T)  # per level sums
        self.lprime, self.pdi, self.err, self.ratio = z(T), z(T), z(T), z(T)
        self.h = z(K, T)  # sum_c d_roll(c) sum_v pi_theta(v|c) Q_t^{(i)}(c, v)
        self.g_masked = z(T)
        self.g_inf = z(T)
        self.J_roll, self.J_theta = z(()), z(())
        self.joint_prompt = z(P)  # 1/2 sum_y |P(x) (P^theta - P^roll)(y|x)| per prompt
        self.violation = torch.zeros((), dtype=torch.bool, device=device)
        self.any_roll_zero = False


def exact_quantities(
    logp_roll: Sequence,
    logp_theta: Sequence,
    reward,
    prompt_probs,
    *,
    baseline: float | None = None,
    mask: dict | None = None,
    future_tv: bool = False,
    device="cpu",
    chunk_leaves: int = DEFAULT_CHUNK_LEAVES,
    validate: bool = True,
) -> dict:
    """Every exact quantity of a pair (docs/theory.md sections 2-5, 7), as a JSON-ready dict.

    Args:
      logp_roll, logp_theta: T levels, level t of shape (P, V**(t-1), V), log-probs
        (numpy or torch; -inf = zero probability).
      reward: (P, V**T) in [0, 1]. prompt_probs: (P,), sums to 1.
      baseline: b for L_b = E_roll[(R - b) sum_t rho_t] (computed as
        sum_t E_{d_t^roll}[sum_v pi_theta(v|c) (Q_t(c, v) - b)], the g-form of the same sum).
      mask: {"rule": "max"|"avg"|"max+avg", "delta": .., "delta_avg": ..}: TRM sequence mask
        M(x, y) from the exact token KL along y; adds acceptance E_roll[M], the masked
        analysis surrogate E_roll[M R sum_t (rho_t - 1)] (g-form with reward M R) and, with a
        baseline, E_roll[M (R - b) sum_t rho_t].
      future_tv: also compute sup over reachable c_{t+1} of the TV between the two laws of
        y_{t+1..T} given c_{t+1}, per t (O(T V**T): on request only).
      device: torch device ("cpu", "cuda"). chunk_leaves: max leaves per subtree chunk.
      validate: check shapes / normalisation / ranges first (ValueError naming the array).

    Returns:
      dict with the docs/formats.md keys J_roll, J_theta, surrogate (L'), error
      (J_theta - J_roll - L'), error_ratio_identity (-Delta or None), eps, delta, dkl_seq,
      dtv_seq (joint), dtv_seq_max_prompt, dbar, context_tv, g_inf (lists of T), bounds
      (every registered bound on exact inputs), notes (list of str); and T, P, V, leaves,
      abs_continuous, pdi (sum_t E_{d^theta}[g_t]), ln_trm_expected_W, ln_trm_bound,
      surrogate_b / baseline, acceptance / surrogate_masked / mask, future_tv.
    """
    device = _check_device(device)
    kernel = device.type == "cpu" and _tree_kernel.available()
    if validate:  # on the kernel route the level values are checked inside its pass (same messages)
        P, V, T = validate_pair_arrays(logp_roll, logp_theta, reward, prompt_probs, level_values=not kernel)
    else:
        T, (P, _, V) = len(logp_roll), tuple(logp_roll[0].shape)
    if chunk_leaves < 1:
        raise ValueError(f"chunk_leaves must be >= 1, got {chunk_leaves}")
    mask = _check_mask(mask)
    baseline = _check_baseline(baseline)
    with torch.no_grad(), engine_threads() as n_threads:
        out = _run_engine(logp_roll, logp_theta, reward, prompt_probs, P, V, T, baseline, mask, device,
                          int(chunk_leaves), n_threads, kernel and validate)  # fmt: skip
    if future_tv:
        with torch.no_grad(), engine_threads():
            out["future_tv"] = _future_tv_of(logp_roll, logp_theta, prompt_probs, P, V, T, device)
        out["notes"].append(
            "future_tv[t-1] = sup over c_{t+1} reachable under either policy of the TV "
            "of the two laws of y_{t+1..T}"
        )
    return out


def _run_engine(logp_roll, logp_theta, reward, prompt_probs, P, V, T, baseline, mask, device, chunk_leaves,
                n_threads, check_levels) -> dict:  # fmt: skip
    """The engine proper: fused kernel below the split level on the CPU (when numba is there),
    level-by-level torch otherwise; returns `_assemble`'s dict. check_levels: the kernel route
    checks the level values (`check_level_values`) in its pass and raises before returning."""
    lr = [_t(x, device).reshape(-1, V) for x in logp_roll]  # level k: (P V**k, V)
    lt = [_t(x, device).reshape(-1, V) for x in logp_theta]
    R = _t(reward, device).reshape(-1)  # (P V**T,)
    pp = _t(prompt_probs, device)
    K = 3 if mask else 1
    acc = _Acc(T, P, device, K)
    eng = _Engine(lr, lt, R, P, V, T, K, mask, acc)
    eng.need_h = baseline is not None
    kernel = device.type == "cpu" and _tree_kernel.available()
    # the torch passes run on levels 0..s-1 only on the kernel route: -inf scans of those levels
    s_torch = _kernel_split(P, V, T) if kernel else T
    acc.any_roll_zero = any(bool(torch.isneginf(x).any()) for x in lr[:s_torch])
    eng.full_support = (
        bool((pp > 0).all())
        and not acc.any_roll_zero
        and not any(bool(torch.isneginf(x).any()) for x in lt[:s_torch])
    )

    ld0 = torch.log(pp)  # log d_1: (P,)
    path0 = torch.zeros(P, dtype=torch.float64, device=device)
    if kernel:
        Vr1, Vt1, WE1 = _kernel_engine(eng, s_torch, ld0, path0, n_threads, check_levels)
        return _assemble(acc, eng, pp, Vr1, Vt1, WE1, P, V, T, baseline, mask)
    s, groups = _split(P, V, T, chunk_leaves)
    if s == 0:
        parts = [eng.subtree(0, a, b, ld0[a:b], ld0[a:b], path0[a:b], path0[a:b]) for a, b in groups]
        Vr1, Vt1, WE1 = (torch.cat(x, -1) for x in zip(*parts))  # (K, P), (P,), (2, P)
    else:
        top = eng.forward_levels(0, s, 0, P, ld0, ld0.clone(), path0, path0.clone())  # levels 0..s-1 whole
        ld_r, ld_t, pmax, psum = top["next"]  # rows of level s: (P V**s,)
        parts = [eng.subtree(s, a, b, ld_r[a:b], ld_t[a:b], pmax[a:b], psum[a:b]) for a, b in groups]
        Qr, Qt, WE = (torch.cat(x, -1) for x in zip(*parts))  # (K, P V**s), (P V**s,), (2, P V**s)
        Vr1, Vt1, WE1 = eng.backward_levels(top, Qr, Qt, WE)
    return _assemble(acc, eng, pp, Vr1, Vt1, WE1, P, V, T, baseline, mask)


def _kernel_split(P: int, V: int, T: int) -> int:
    """Split level s of the kernel route: 0 when one prompt's tree has <= TASK_LEAVES leaves, else
    the first level whose rows carry <= TASK_LEAVES leaves (at most T - 1)."""
    L = _tree_kernel.TASK_LEAVES
    return 0 if V**T <= L else min(T - 1, next(j for j in range(1, T + 1) if V ** (T - j) <= L))


def _kernel_engine(eng: _Engine, s: int, ld0, path0, n_threads: int, check_levels: bool):
    """Levels 0..s-1 level by level (torch), every subtree below level s in the fused kernel.

    Returns V_1 and the second-order values W_1, E_1 as `backward_levels` does. With
    check_levels, raises `check_level_values`'s ValueError for the first bad level (order
    logp_roll_1..T, logp_theta_1..T) before anything is returned.
    """
    top, start = _kernel_top(eng, s, ld0, path0)
    run = _KernelBlocks(eng, s, start, n_threads)
    gaps = run.block(0, run.n, [x.numpy() for x in eng.lr], [x.numpy() for x in eng.lt], eng.R.numpy())
    if check_levels:
        _raise_bad_level(eng.lr, eng.lt, s, gaps)
    return run.finish(top)


def _kernel_top(eng: _Engine, s: int, ld0, path0):
    """Levels 0..s-1 whole (torch; None when s = 0) and the four (P V**s,) numpy arrays the kernel
    starts from at level s: log d_{s+1}^roll, log d_{s+1}^theta, path KL max and sum (0 without a mask)."""
    top, ld_r, ld_t = None, ld0, ld0
    if s > 0:
        top = eng.forward_levels(0, s, 0, eng.P, ld0, ld0.clone(), path0, path0.clone())
        ld_r, ld_t = top["next"][:2]
    zeros = np.zeros(eng.P * eng.V**s)
    pmax, psum = (top["next"][2].numpy(), top["next"][3].numpy()) if (top and eng.mask) else (zeros, zeros)
    return top, (ld_r.numpy(), ld_t.numpy(), pmax, psum)


class _KernelBlocks:
    """The fused kernel over consecutive blocks of rows [a, b) of the split level s, accumulated
    exactly as one call over all rows would: blocks are whole kernel tasks (a is a multiple of
    the task's row count), per-task sums are added in task order (sequential reductions along
    the task axis, carried from block to block), maxima / flags are order-free. So results do
    not depend on the blocks (bit for bit).

    Level-s outputs (the K values V_{s+1}, V_{s+1}^theta, W/E and the joint-TV row sums) are kept
    for all P V**s rows: O(P V**s), beside one block of inputs.
    """

    def __init__(self, eng: _Engine, s: int, start, n_threads: int):
        P, V, T, K = eng.P, eng.V, eng.T, eng.K
        self.eng, self.s, self.start, self.n_threads = eng, s, start, n_threads
        self.n = P * V**s  # rows of level s
        self.leaves_per_row = V ** (T - s)
        self.task_rows = max(1, _tree_kernel.TASK_LEAVES // self.leaves_per_row)  # rows per kernel task
        self.sums, self.J = np.zeros((_tree_kernel.N_SUMS, T)), np.zeros(2)  # carried task-order sums
        self.gmax, self.epsdel = np.zeros(T), np.zeros(2)
        self.flags = np.zeros(2, dtype=np.bool_)
        self.Qr, self.Qt, self.WE = np.zeros((K, self.n)), np.zeros(self.n), np.zeros((2, self.n))
        self.joint_row = np.zeros(self.n)
        md = eng.mask or {"delta": None, "delta_avg": None}
        self.md = [float("nan") if md[k] is None else md[k] for k in ("delta", "delta_avg")]

    def block_rows(self, block_leaves: int) -> int:
        """Rows of level s per block: whole tasks, as many as fit in block_leaves (at least one)."""
        return self.task_rows * max(1, block_leaves // (self.task_rows * self.leaves_per_row))

    def block(self, a: int, b: int, lr, lt, R) -> np.ndarray:
        """Run the kernel on rows [a, b) of level s (a a multiple of task_rows, b likewise or n).

        lr, lt: T levels where level k >= s holds (at least) the rows below [a, b) in order,
        (b - a) V**(k-s) rows of (V,) from its first row (levels k < s are not read); R: the
        (b - a) V**(T-s) leaf rewards. Returns the per-level row-sum gaps (2, T) for the checks
        (`_raise_bad_level`: inf marks NaN / +inf / > 0 values).
        """
        eng, s, K, T = self.eng, self.s, self.eng.K, self.eng.T
        m = b - a
        bounds = _tree_kernel.task_bounds(m, self.leaves_per_row)
        nt = len(bounds) - 1
        sums = np.zeros((nt, _tree_kernel.N_SUMS, T))
        gmax, epsdel, J = np.zeros((nt, T)), np.zeros((nt, 2)), np.zeros((nt, 2))
        flags = np.zeros((nt, 2), dtype=np.bool_)
        check = np.zeros((nt, 2, T))
        Qr, Qt, WE, joint_row = np.zeros((K, m)), np.zeros(m), np.zeros((2, m)), np.zeros(m)
        ld_r, ld_t, pmax, psum = (x[a:b] for x in self.start)
        _tree_kernel.call(
            min(self.n_threads, nt), lr, lt, R, s, T, K,  # no more threads than tasks: an idle one spins
            ld_r, ld_t, pmax, psum, bounds, eng.need_h, self.md[0], self.md[1],
            sums, gmax, epsdel, J, flags, Qr, Qt, WE, joint_row, check,
        )  # fmt: skip
        # sequential sums along the task axis, from the carry: task order whatever the blocks
        with np.errstate(invalid="ignore", over="ignore"):  # bad input: the caller's checks raise next
            self.sums = np.add.reduce(np.concatenate((self.sums[None], sums)), axis=0)
            self.J = np.add.reduce(np.concatenate((self.J[None], J)), axis=0)
        self.gmax = np.maximum(self.gmax, gmax.max(0))
        self.epsdel = np.maximum(self.epsdel, epsdel.max(0))
        self.flags |= flags.any(0)
        self.Qr[:, a:b], self.Qt[a:b], self.WE[:, a:b], self.joint_row[a:b] = Qr, Qt, WE, joint_row
        return check.max(0)

    def finish(self, top):
        """Add the totals to the engine's accumulators; V_1, W_1, E_1 through the levels above s."""
        eng, acc, K, V, s = self.eng, self.eng.acc, self.eng.K, self.eng.V, self.s
        tot = torch.from_numpy(self.sums)  # (N_SUMS, T)
        for name, j in (("dkl_t", "DKL"), ("dbar", "DBAR"), ("ctx_tv", "CTX"), ("erho", "ERHO"),
                        ("lprime", "LP"), ("pdi", "PDI"), ("err", "ERR"), ("ratio", "RATIO"),
                        ("g_masked", "GM")):  # fmt: skip
            getattr(acc, name).add_(tot[getattr(_tree_kernel, j)])
        acc.h += tot[_tree_kernel.H0 : _tree_kernel.H0 + K]
        acc.g_inf = torch.maximum(acc.g_inf, torch.from_numpy(self.gmax))
        acc.eps = torch.maximum(acc.eps, torch.tensor(self.epsdel[0]))
        acc.delta = torch.maximum(acc.delta, torch.tensor(self.epsdel[1]))
        acc.J_roll += float(self.J[0])
        acc.J_theta += float(self.J[1])
        acc.violation |= bool(self.flags[0])
        acc.any_roll_zero |= bool(self.flags[1])
        rows = np.arange(self.n) // V**s
        acc.joint_prompt += torch.from_numpy(np.bincount(rows, weights=self.joint_row, minlength=eng.P))
        Qr, Qt, WE = torch.from_numpy(self.Qr), torch.from_numpy(self.Qt), torch.from_numpy(self.WE)
        return eng.backward_levels(top, Qr, Qt, WE) if top else (Qr, Qt, WE)


def _raise_bad_level(lr, lt, s: int, gaps: np.ndarray, above: bool = True) -> None:
    """`check_level_values` of every level above s (when `above`) and of each level >= s that the
    kernel flagged (gaps (2, T): its max |sum - 1| per side and level, inf for NaN / +inf / > 0
    values), in validate_pair_arrays' order; lr, lt: the level lists indexed by k (only the levels
    checked are read). The flag threshold sits a hair below the tolerance so that the full check,
    not the kernel's last-ulp row sums, decides borderline levels."""
    for side, name, levels in ((0, "logp_roll", lr), (1, "logp_theta", lt)):
        for k, x in enumerate(levels):
            if (above and k < s) or (k >= s and not gaps[side, k] <= _NORM_TOL * (1.0 - 1e-6)):
                check_level_values(f"{name}_{k + 1}", x)


def _future_tv_of(logp_roll, logp_theta, prompt_probs, P, V, T, device) -> list[float]:
    lr = [_t(x, device).reshape(-1, V) for x in logp_roll]
    lt = [_t(x, device).reshape(-1, V) for x in logp_theta]
    return _future_tv(lr, lt, _t(prompt_probs, device), P, V, T)


def _add_second_order(out: dict, value: float) -> None:
    """bounds["second_order"] = E_roll[sum_t |rho_t - 1| sum_{s>t} (1 - rho_s)_+] = sum_x P(x) E_1(x)
    when pi_theta << pi_roll (`trm_bounds.second_order`'s recursion, fused into the engine's
    backward pass; docs/certify.md proves |Error| <= it for rewards of range <= 1)."""
    if not out["abs_continuous"]:
        out["notes"].append("second_order is not reported: it needs pi_theta << pi_roll (rho is undefined)")
        return
    out["bounds"]["second_order"] = value


def _check_baseline(baseline) -> float | None:
    if baseline is None:
        return None
    baseline = float(baseline)
    if not math.isfinite(baseline):
        raise ValueError(f"baseline must be finite, got {baseline}")
    return baseline


def _check_mask(mask: dict | None) -> dict | None:
    if mask is None:
        return None
    if not isinstance(mask, dict) or mask.get("rule") not in MASK_RULES:
        raise ValueError(f"mask['rule'] must be one of {', '.join(MASK_RULES)}, got {mask!r}")
    out = {"rule": mask["rule"], "delta": None, "delta_avg": None}
    for key, needed in (("delta", "max" in mask["rule"]), ("delta_avg", "avg" in mask["rule"])):
        if needed:
            v = mask.get(key)
            if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(
                    f"mask[{key!r}] must be a finite number >= 0 for rule {mask['rule']!r}, got {v!r}"
                )
            out[key] = float(v)
    return out


def _split(P: int, V: int, T: int, chunk_leaves: int) -> tuple[int, list[tuple[int, int]]]:
    """Split level index s and row ranges [a, b) of level s (rows P V**s), each <= chunk_leaves leaves.

    s = 0 (rows = prompts) when one prompt's tree fits; else the smallest s whose rows have
    V**(T-s) <= chunk_leaves leaves, with ranges that never cross a prompt boundary.
    """
    if V == 1 or V**T <= chunk_leaves:
        c = max(1, chunk_leaves // max(V**T, 1))
        return 0, [(a, min(P, a + c)) for a in range(0, P, c)]
    s = next(j for j in range(1, T + 1) if V ** (T - j) <= chunk_leaves)
    c = max(1, chunk_leaves // V ** (T - s))
    per = V**s
    return s, [(p * per + a, p * per + min(per, a + c)) for p in range(P) for a in range(0, per, c)]


class _Engine:
    """Level-by-level forward / backward passes over row ranges; accumulates into `acc`."""

    def __init__(self, lr, lt, R, P, V, T, K, mask, acc):
        self.lr, self.lt, self.R = lr, lt, R
        self.P, self.V, self.T, self.K, self.mask, self.acc = P, V, T, K, mask, acc
        self.full_support = False  # set by the caller when no -inf anywhere and P(x) > 0
        self.need_h = True  # sum_v pi_theta Q_t sums (baseline forms); the caller may switch them off

    # -- forward ------------------------------------------------------------------------
    def forward_levels(self, k0, k1, a, b, ld_r, ld_t, pmax, psum) -> dict:
        """Levels k0..k1-1 for the rows [a, b) of level k0 (and their descendants).

        ld_r, ld_t: (b-a,) log d_{k0+1}^roll / ^theta of those rows; pmax, psum: path max /
        sum of token KL over the levels above (for masks). Returns the per-level stash the
        backward pass needs and "next" = the same four arrays for the rows of level k1.
        """
        V, acc = self.V, self.acc
        stash = []
        for k in range(k0, k1):
            n = (b - a) * V ** (k - k0)
            r0 = a * V ** (k - k0)
            lr, lt = self.lr[k][r0 : r0 + n], self.lt[k][r0 : r0 + n]  # (n, V): rows of level t = k+1
            kl, tv = token_kl(lr, lt, check=False), token_tv(lr, lt, check=False)  # (n,); inputs validated
            d_r, d_t = torch.exp(ld_r), torch.exp(ld_t)  # (n,)
            if self.full_support:  # every context reachable, d_roll > 0: no masking needed
                reach = None
                acc.eps = torch.maximum(acc.eps, tv.max())
                acc.delta = torch.maximum(acc.delta, kl.max())
                acc.dkl_t[k] += torch.dot(d_r, kl)
            else:
                reach = torch.isfinite(ld_r) | torch.isfinite(ld_t)  # reachable under either policy
                acc.eps = torch.maximum(acc.eps, torch.where(reach, tv, 0.0).max())
                acc.delta = torch.maximum(acc.delta, torch.where(reach, kl, 0.0).max())
                acc.dkl_t[k] += torch.where(d_r > 0, d_r * kl, 0.0).sum()  # 0 * inf = 0 off supp d_roll
            acc.dbar[k] += torch.dot(d_r, tv)
            dd = _exp_diff(ld_t, ld_r)  # (n,) d^theta - d^roll of these contexts, exact
            acc.ctx_tv[k] += 0.5 * dd.abs().sum()  # 1/2 sum_c |d^theta - d^roll| over these rows
            er = 2.0 * tv
            if acc.any_roll_zero:
                z = torch.isneginf(lr)  # E_roll|rho - 1| = sum_{v: p_roll > 0} |p_theta - p_roll|
                er = er - _vsum(torch.where(z, torch.exp(lt), 0.0))
                roll_reach = torch.isfinite(ld_r)  # d_roll > 0 (log space: no underflow)
                acc.violation |= (roll_reach[:, None] & z & torch.isfinite(lt)).any()
            acc.erho[k] += torch.dot(d_r, er)
            stash.append((k, r0, n, d_r, d_t, reach, dd, tv))
            ld_r = (ld_r[:, None] + lr).reshape(-1)  # log d_{t+1}: (n V,)
            ld_t = (ld_t[:, None] + lt).reshape(-1)
            if self.mask is not None:
                pmax = torch.maximum(pmax, kl)[:, None].expand(n, V).reshape(-1)
                psum = (psum + kl)[:, None].expand(n, V).reshape(-1)
        return {"stash": stash, "next": (ld_r, ld_t, pmax, psum)}

    # -- leaves -------------------------------------------------------------------------
    def leaves(self, s, a, b, ld_r, ld_t, pmax, psum) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Leaf sums for the subtree rows [a, b) of level s; returns Q_T stacks (K, n), (n,) and
        the second-order values W_{T+1} = E_{T+1} = 0: (2, n)."""
        acc, V, T = self.acc, self.V, self.T
        n = (b - a) * V ** (T - s)
        l0 = a * V ** (T - s)
        R = self.R[l0 : l0 + n]  # (n,) leaves in order
        acc.J_roll += (torch.exp(ld_r) * R).sum()
        acc.J_theta += (torch.exp(ld_t) * R).sum()
        if s == 0:  # rows are prompts a..b-1
            acc.joint_prompt[a:b] += token_tv(ld_r.reshape(b - a, -1), ld_t.reshape(b - a, -1), check=False)
        else:
            acc.joint_prompt[a // V**s] += token_tv(ld_r, ld_t, check=False)
        WE = torch.zeros((2, n), dtype=R.dtype, device=R.device)
        if self.mask is None:
            return R[None, :], R, WE
        M = torch.ones_like(R)
        if self.mask["delta"] is not None:
            M = M * (pmax <= self.mask["delta"])
        if self.mask["delta_avg"] is not None:
            M = M * (psum / T <= self.mask["delta_avg"])
        return torch.stack((R, M * R, M)), R, WE

    # -- backward -----------------------------------------------------------------------
    def backward_levels(self, fwd: dict, Qr: torch.Tensor, Qt: torch.Tensor, WE: torch.Tensor):
        """Backward over the stashed levels; Qr (K, rows of the level below), Qt (rows,), WE (2, rows).

        At level t: Q_t(c, v) = V_{t+1}(child), g_t(c) = sum_v (p_theta - p_roll) Q_t(c, v);
        the second-order recursion of `trm_bounds.second_order`:
        W_t(c) = TV(c) + sum_v p_roll W_{t+1}(cv), E_t(c) = sum_v |p_theta - p_roll| W_{t+1}(cv)
        + sum_v p_roll E_{t+1}(cv) (WE = stack(W, E)).
        Returns V_{k0+1} and (W, E)_{k0+1} for the stash's first rows: (K, b-a), (b-a,), (2, b-a).
        """
        acc, V = self.acc, self.V
        for k, r0, n, d_r, d_t, reach, dd, tv in reversed(fwd["stash"]):
            lr, lt = self.lr[k][r0 : r0 + n], self.lt[k][r0 : r0 + n]  # (n, V)
            Qr, Qt = Qr.reshape(self.K, n, V), Qt.reshape(n, V)  # Q_t(c, v): (K, n, V), (n, V)
            pr, pt = torch.exp(lr), torch.exp(lt)
            dp = _exp_diff(lt, lr) if reach is not None else _exp_diff_finite(lt, lr, pr, pt)  # (n, V)
            g = _vsum(dp * Qr)  # g_t(c) = sum_v (pi_theta - pi_roll)(v|c) Q_t(c, v): (K, n)
            acc.lprime[k] += torch.dot(d_r, g[0])
            acc.pdi[k] += torch.dot(d_t, g[0])
            acc.err[k] += torch.dot(dd, g[0])
            ga = g[0].abs() if reach is None else torch.where(reach, g[0].abs(), 0.0)
            acc.g_inf[k] = torch.maximum(acc.g_inf[k], ga.max())
            acc.ratio[k] += torch.dot(d_r, _vsum(dp * (Qt - Qr[0])))
            if self.need_h:  # only for the baseline forms L_b and the masked L_b
                acc.h[:, k] += _vsum(pt * Qr) @ d_r
            if self.K > 1:
                acc.g_masked[k] += torch.dot(d_r, g[1])
            W, E = WE.reshape(2, n, V)
            WE = torch.stack((tv + _vsum(pr * W), _vsum(dp.abs() * W) + _vsum(pr * E)))  # (2, n)
            Qr, Qt = _vsum(pr * Qr), _vsum(pt * Qt)  # V_t^roll (K, n), V_t^theta (n,)
        return Qr, Qt, WE

    def subtree(self, s, a, b, ld_r, ld_t, pmax, psum):
        """Everything for the rows [a, b) of level s and all their descendants; V_{s+1} values."""
        fwd = self.forward_levels(s, self.T, a, b, ld_r, ld_t, pmax, psum)
        return self.backward_levels(fwd, *self.leaves(s, a, b, *fwd["next"]))


def _assemble(acc: _Acc, eng: _Engine, pp, Vr1, Vt1, WE1, P, V, T, baseline, mask) -> dict:
    """Turn the accumulators into the JSON dict (floats / lists), with bounds and notes."""
    f = lambda x: float(x)
    lst = lambda x: [float(v) for v in x.cpu()]
    notes = []
    J_roll, J_theta = f(acc.J_roll), f(acc.J_theta)
    surrogate = f(acc.lprime.sum())
    error = f(acc.err.sum())
    abs_cont = not bool(acc.violation)
    if abs_cont:
        ratio = f(acc.ratio.sum())
    else:
        ratio = None
        notes.append(
            "error_ratio_identity is null: pi_theta is not absolutely continuous w.r.t. pi_roll "
            "(some roll-reachable context has pi_roll(v|c) = 0 < pi_theta(v|c)), "
            "so rho and -Delta are undefined there"
        )
    dkl_seq = f(acc.dkl_t.sum())
    joint = acc.joint_prompt.cpu()
    dtv_seq = float(min(1.0, float(joint.sum())))
    ppc = pp.cpu()
    per_prompt = torch.where(ppc > 0, joint / torch.where(ppc > 0, ppc, 1.0), 0.0)
    dbar = [min(1.0, v) for v in lst(acc.dbar)]
    eps, delta = min(1.0, f(acc.eps)), f(acc.delta)
    inputs = BoundInputs(
        T=T,
        eps=eps,
        delta=delta,
        dkl_seq=dkl_seq,
        dtv_seq=dtv_seq,
        dbar=np.array(dbar),
        sources={k: "exact: enumerated tree" for k in ("eps", "delta", "dkl_seq", "dtv_seq", "dbar")},
    )
    w = ln_trm_weights(T, eps, delta)  # (T,)
    expected_W = float(np.dot(w, acc.erho.cpu().numpy()))
    out = {
        "T": T,
        "P": P,
        "V": V,
        "leaves": P * V**T,
        "J_roll": J_roll,
        "J_theta": J_theta,
        "surrogate": surrogate,
        "error": error,
        "error_ratio_identity": ratio,
        "eps": eps,
        "delta": delta,
        "dkl_seq": dkl_seq,
        "dtv_seq": dtv_seq,
        "dtv_seq_max_prompt": float(per_prompt.max()),
        "dtv_seq_per_prompt": [float(v) for v in per_prompt],
        "dbar": dbar,
        "context_tv": [min(1.0, v) for v in lst(acc.ctx_tv)],
        "g_inf": lst(acc.g_inf),
        "dkl_per_position": lst(acc.dkl_t),
        "pdi": f(acc.pdi.sum()),
        "abs_continuous": abs_cont,
        "ln_trm_expected_W": expected_W,
        "ln_trm_bound": 2.0 * expected_W,
        "bounds": evaluate_bounds(inputs),
        "bound_inputs": inputs.to_json(),
        "notes": notes,
    }
    if baseline is not None:
        out["baseline"] = baseline
        out["surrogate_b"] = f(acc.h[0].sum()) - baseline * T
    if mask is not None:
        out["mask"] = dict(mask)
        out["acceptance"] = f((pp * Vr1[2]).sum())
        out["surrogate_masked"] = f(acc.g_masked.sum())
        if baseline is not None:
            out["surrogate_masked_b"] = f(acc.h[1].sum()) - baseline * f(acc.h[2].sum())
    if acc.any_roll_zero:
        notes.append(
            "pi_roll has zero probabilities: eps, delta and g_inf are maxima over contexts "
            "reachable under either policy"
        )
    _add_second_order(out, float(torch.dot(pp, WE1[1])))
    return out


def _future_tv(lr, lt, pp, P, V, T) -> list[float]:
    """sup_{c_{t+1}} TV(P^roll(y_{t+1..T} | c_{t+1}), P^theta(. | c_{t+1})) for t = 1..T (0 at t = T).

    Suffix log-probs are accumulated backward on the leaf array of one prompt
    (V**T), so the cost is O(T V**T) time, O(V**T) memory per prompt.
    """
    out = torch.zeros(T, dtype=torch.float64)
    for p in range(P):
        if float(pp[p]) == 0.0:
            continue
        # reachability of the contexts of each level for this prompt (either policy)
        reach = [torch.ones(1, dtype=torch.bool, device=lr[0].device)]
        ldr = torch.zeros(1, dtype=torch.float64, device=lr[0].device)
        ldt = ldr.clone()
        for k in range(T - 1):
            rows = slice(p * V**k, (p + 1) * V**k)
            ldr = (ldr[:, None] + lr[k][rows]).reshape(-1)
            ldt = (ldt[:, None] + lt[k][rows]).reshape(-1)
            reach.append(torch.isfinite(ldr) | torch.isfinite(ldt))  # level k+1 rows
        Cr = torch.zeros(V**T, dtype=torch.float64, device=lr[0].device)  # log P(y_{>=k+1} | c_{k+1})
        Ct = Cr.clone()
        for k in range(T - 1, 0, -1):
            rows = slice(p * V**k, (p + 1) * V**k)
            Cr = (Cr.reshape(V**k, V, -1) + lr[k][rows][:, :, None]).reshape(-1)
            Ct = (Ct.reshape(V**k, V, -1) + lt[k][rows][:, :, None]).reshape(-1)
            tv = token_tv(Cr.reshape(V**k, -1), Ct.reshape(V**k, -1))  # (V**k,): future law given c_{k+1}
            out[k - 1] = torch.maximum(out[k - 1], torch.where(reach[k], tv, 0.0).max().cpu())
    return [min(1.0, float(v)) for v in out]


def evaluate_pair_file(path: str | Path, device="cpu", **kwargs) -> dict:
    """`exact_quantities` of a pair file (.npz, docs/formats.md layout); same keys as the CLI JSON."""
    _check_device(device)  # before reading anything
    pair = PolicyPair.load(path)
    return exact_quantities(
        pair.logp_roll,
        pair.logp_theta,
        pair.reward,
        pair.prompt_probs,
        device=device,
        validate=False,
        **kwargs,
    )
