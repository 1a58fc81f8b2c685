"""Every quantity of one tiny pair at arbitrary precision, trajectory by trajectory (mpmath).

The reference engine for near-tight pairs, where float64 cannot tell |Error| / bound from 1:
`exact_mp(...)` recomputes the ingredients, every published bound and each halved bound of
`trm_bounds.refined` from the stored float64 log-probs, renormalised at the working precision
(`renormalize=True`, the distributions the rows stand for) or taken literally. It shares no
code with `trm_bounds.exact` (loops over trajectories, O(P T V**T) mpmath operations), so the
two check each other; use it for T <= 4, V <= 3.
"""

from __future__ import annotations

import itertools

import mpmath as mp
import numpy as np

from .bounds import UNIFIED_OF

__all__ = ["exact_mp", "published_mp"]


def exact_mp(
    logp_roll,
    logp_theta,
    reward,
    prompt_probs,
    *,
    dps: int = 60,
    renormalize: bool = True,
    max_dps: int = 4096,
) -> dict:
    """Every quantity of one tiny pair at `dps`+ digits, trajectory by trajectory (mpmath).

    Definitions (docs/theory.md sections 2-5), no shared code with the float64 engine:
      J(pi) = sum_{x,y} P(x) P^pi(y|x) R(x, y);
      L' = sum_{x,y} P(x) R sum_t P^roll(y_<t) (pi_theta - pi_roll)(y_t|c_t) P^roll(y_>t | c_{t+1})
           (= E_roll[R sum_t (rho_t - 1)] when pi_theta << pi_roll; defined always);
      Error = J(theta) - J(roll) - L'; minus_Delta = -E_roll[R sum_t (rho_t - 1)(1 - prod_{j>t} rho_j)]
      (None without absolute continuity); eps, delta over contexts reachable under either
      policy; Dbar_t, D_KL^seq, D_TV^seq (joint); every published bound (loops over t) and
      each refined bound = published / 2.
    Args: log-prob levels (P, V**(t-1), V) as stored (float64 values are taken exactly);
      renormalize: subtract each row's log-sum-exp at the working precision first.
    Returns: dict of mpf (lists for dbar), "bounds" / "refined" {published key: mpf},
      "ratios" {published key: |Error| / refined (mpf)}, "dps" used, "row_defect" =
      max |sum_v exp(log pi(v|c)) - 1| over the stored rows.
    The working precision starts at `dps` and doubles (to `max_dps`) until |Error| stands 15 digits
    above its rounding `error_tol`, agrees to 12 digits with the previous precision, and every
    ratio differs from 1 by more than 10^(20 - dps) (J - J - L' cancels about log10(1/|Error|)
    digits; near-tight pairs need the digits to decide ratio <= 1).
    """
    lr = [np.asarray(x, dtype=np.float64) for x in logp_roll]
    lt = [np.asarray(x, dtype=np.float64) for x in logp_theta]
    R, pp = np.asarray(reward, dtype=np.float64), np.asarray(prompt_probs, dtype=np.float64)
    prev = None
    d = int(dps)
    while True:
        cur = _exact_mp_at(lr, lt, R, pp, d, renormalize)
        with mp.workdps(d):
            e1, tol = cur["error"], cur["error_tol"]
            resolved = abs(e1) > mp.mpf(10) ** 15 * tol or tol == 0  # 15 digits above the rounding
            # and every ratio is told apart from 1 (near-tight pairs reach 1 - 1e-288)
            resolved = resolved and all(abs(r - 1) > mp.mpf(10) ** (20 - d) for r in cur["ratios"].values())
            if prev is not None and resolved and abs(e1 - prev["error"]) <= mp.mpf(10) ** -12 * abs(e1):
                return cur
        if d >= max_dps:  # |Error| below the resolution: report it with its uncertainty error_tol
            return cur
        prev, d = cur, 2 * d


def _exact_mp_at(lr, lt, R, pp, dps, renormalize) -> dict:
    T, (P, _, V) = len(lr), lr[0].shape
    with mp.workdps(dps):
        one, zero, half = mp.mpf(1), mp.mpf(0), mp.mpf(1) / 2
        defect = zero
        lvl_r, lvl_t = [], []
        for src, dst in ((lr, lvl_r), (lt, lvl_t)):
            for x in src:  # (P, V**k, V)
                rows = []
                for row in x.reshape(-1, V):
                    m = [mp.mpf(float(v)) for v in row]
                    top = max(range(V), key=lambda v: m[v])
                    rest = mp.fsum(mp.exp(m[v] - m[top]) for v in range(V) if v != top)
                    # sum_v e^{m_v} - 1 = expm1(m_top) + e^{m_top} rest, without cancellation
                    defect = max(defect, abs(mp.expm1(m[top]) + mp.exp(m[top]) * rest))
                    if renormalize:  # log sum_v e^{m_v} = m_top + log1p(rest)
                        ls = m[top] + mp.log1p(rest)
                        m = [v - ls for v in m]
                    rows.append(m)
                dst.append(rows)  # rows indexed by x * V**k + context index

        def row_of(x, prefix):
            k = 0
            for y in prefix:
                k = k * V + y
            return x * V ** len(prefix) + k

        # per context: eps, delta, Dbar_t, D_KL^seq, context TV
        eps, delta = zero, zero
        dbar, dkl_seq, ctx_tv = [zero] * T, zero, [zero] * T
        for k in range(T):
            for x in range(P):
                if pp[x] == 0:
                    continue
                px = mp.mpf(float(pp[x]))
                for prefix in itertools.product(range(V), repeat=k):
                    lpr = sum((lvl_r[s][row_of(x, prefix[:s])][prefix[s]] for s in range(k)), zero)
                    lpt = sum((lvl_t[s][row_of(x, prefix[:s])][prefix[s]] for s in range(k)), zero)
                    d_r, d_t = px * mp.exp(lpr), px * mp.exp(lpt)
                    ctx_tv[k] += px * abs(_ediff(lpt, lpr)) / 2
                    if d_r == 0 and d_t == 0:  # unreachable under both policies
                        continue
                    a, b = lvl_r[k][row_of(x, prefix)], lvl_t[k][row_of(x, prefix)]
                    tv = mp.fsum(abs(_ediff(w, u)) for u, w in zip(a, b)) / 2
                    kl = zero
                    for u, w in zip(a, b):
                        if u == -mp.inf:
                            continue
                        kl = mp.inf if w == -mp.inf else kl + mp.exp(u) * (u - w)
                    eps, delta = max(eps, tv), max(delta, kl)
                    dbar[k] += d_r * tv
                    if d_r > 0:
                        dkl_seq += d_r * kl
        # per trajectory: J, L' (g-form), ratio identity, joint TV
        J_r = J_t = Jdiff = Lp = mDelta = dtv = scale = zero
        abs_cont = True
        for x in range(P):
            if pp[x] == 0:
                continue
            px = mp.mpf(float(pp[x]))
            for y in itertools.product(range(V), repeat=T):
                r = mp.mpf(float(R[x, _leaf(y, V)]))
                a = [lvl_r[t][row_of(x, y[:t])][y[t]] for t in range(T)]
                b = [lvl_t[t][row_of(x, y[:t])][y[t]] for t in range(T)]
                Pr, Pt = px * mp.exp(mp.fsum(a)), px * mp.exp(mp.fsum(b))
                diff = px * _ediff(mp.fsum(b), mp.fsum(a))  # P^theta(x, y) - P^roll(x, y)
                dtv += abs(diff) / 2
                J_r += Pr * r
                J_t += Pt * r
                Jdiff += diff * r
                scale += abs(diff) * r
                for t in range(T):
                    head, tail = mp.exp(mp.fsum(a[:t])), mp.exp(mp.fsum(a[t + 1 :]))
                    term = px * r * head * _ediff(b[t], a[t]) * tail
                    Lp += term
                    scale += abs(term)
                if Pr > 0:  # rho_t - 1 = expm1(log rho_t); 1 - prod_{j>t} rho_j = -expm1(sum_{j>t} log rho_j)
                    lrho = [b[t] - a[t] for t in range(T)]
                    mDelta += (
                        Pr
                        * r
                        * mp.fsum(mp.expm1(lrho[t]) * mp.expm1(mp.fsum(lrho[t + 1 :])) for t in range(T))
                    )
                else:  # first zero of pi_roll along y: its context is roll-reachable
                    t0 = next(t for t in range(T) if a[t] == -mp.inf)
                    abs_cont = abs_cont and b[t0] == -mp.inf
        error = Jdiff - Lp  # = J(theta) - J(roll) - L', the P^theta - P^roll differences taken per y
        error_tol = scale * mp.mpf(10) ** (8 - dps)  # rounding of sums of relative-10^-dps terms
        eps = min(one, eps)
        bounds = published_mp(T, eps, delta, dkl_seq, min(one, dtv), dbar)
        refined = {k: v * half for k, v in bounds.items()}
        ratios = {
            k: (abs(error) / v if v > 0 else (zero if error == 0 else mp.inf)) for k, v in refined.items()
        }
        return {
            "dps": dps,
            "renormalize": renormalize,
            "row_defect": defect,
            "J_roll": J_r,
            "J_theta": J_t,
            "surrogate": Lp,
            "error": error,
            "error_tol": error_tol,
            "minus_Delta": mDelta if abs_cont else None,
            "abs_continuous": abs_cont,
            "eps": eps,
            "delta": delta,
            "dkl_seq": dkl_seq,
            "dtv_seq": min(one, dtv),
            "dbar": dbar,
            "context_tv": ctx_tv,
            "bounds": bounds,
            "refined": refined,
            "ratios": ratios,
        }


def _ediff(b, a):
    """e^b - e^a from log-values without cancellation: sign(b - a) e^max(a, b) (-expm1(-|b - a|))."""
    if a == b:  # also both -inf
        return mp.mpf(0)
    hi, gap = max(a, b), abs(b - a)
    out = mp.exp(hi) * -mp.expm1(-gap)
    return out if b > a else -out


def _leaf(y, V) -> int:
    k = 0
    for v in y:
        k = k * V + v
    return k


def published_mp(T, eps, delta, dkl_seq, dtv_seq, dbar) -> dict:
    """Every published bound of docs/theory.md section 5 by its formula, one term per t (mpmath)."""
    one, zero = mp.mpf(1), mp.mpf(0)

    def sq(m, x):  # sqrt(m x / 2) with 0 * inf = 0 (x < 0 only from unnormalised literal rows)
        return zero if m == 0 else mp.sqrt(max(zero, m * x / 2))

    G_kl = min(one, sq(1, delta))
    pm_sum = mp.fsum(min(one, sq(t - 1, delta)) for t in range(1, T + 1))
    w_tv = [min(one, (T - t) * eps) for t in range(1, T + 1)]
    w_kl = [min(one, sq(T - t, delta)) for t in range(1, T + 1)]
    out = {
        "classical_tv": 2 * T * (T - 1) * eps**2,
        "classical_kl": zero if T == 1 else T * (T - 1) * delta,
        "linear": 4 * T * eps,
        "pm_kl": 4 * G_kl * pm_sum,
        "pm_tv": 4 * min(one, eps) * pm_sum,
        "mix_kl": 4 * T * G_kl * min(one, sq(1, dkl_seq)),
        "mix_tv": 4 * T * min(one, eps) * min(one, dtv_seq),
        "coupling": 4 * min(one, eps) * mp.fsum(min(one, (t - 1) * eps) for t in range(1, T + 1)),
        "adaptive_kl": 4 * mp.fsum(d * w for d, w in zip(dbar, w_kl)),
        "adaptive_tv": 4 * mp.fsum(d * w for d, w in zip(dbar, w_tv)),
        "adaptive_star": 4 * mp.fsum(d * min(u, w) for d, u, w in zip(dbar, w_tv, w_kl)),
        "linear_dbar": 4 * mp.fsum(dbar),
    }
    out["unified"] = min(out[n] for n in UNIFIED_OF)
    return out
