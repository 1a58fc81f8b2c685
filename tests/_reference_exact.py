"""Slow, obviously correct per-trajectory reference for trm_bounds.exact (tests only).

Enumerates every (x, y) with itertools.product and evaluates each quantity of THEORY.md
sections 2-3 by its definition: rho_t as exp(log pi_theta - log pi_roll), Q_t by summing
over all completions, joint KL / TV over whole trajectories. Only for tiny trees.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _np(levels):
    return [
        np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64) for x in levels
    ]


def _row(prefix, V):
    k = 0
    for y in prefix:
        k = k * V + y
    return k


def _exp(z):
    """exp, saturated below float overflow (the weights multiplying it are then ~0)."""
    return math.exp(min(z, 709.0))


def _tv(a, b):
    return 0.5 * sum(abs(math.exp(x) - math.exp(y)) for x, y in zip(a, b))


def _kl(a, b):
    s = 0.0
    for x, y in zip(a, b):
        if x == -math.inf:
            continue
        if y == -math.inf:
            return math.inf
        s += math.exp(x) * (x - y)
    return s


def reference(
    logp_roll, logp_theta, reward, prompt_probs, *, baseline=0.3, mask_delta=None, mask_delta_avg=None
):
    """Dict of the engine's quantities computed trajectory by trajectory."""
    lr, lt = _np(logp_roll), _np(logp_theta)
    R = np.asarray(reward, dtype=np.float64)
    pp = np.asarray(prompt_probs, dtype=np.float64)
    T, P, V = len(lr), lr[0].shape[0], lr[0].shape[-1]

    def logprob(levels, x, y, start=0):  # sum_{t >= start} log pi(y_t | c_t)
        return sum(levels[t][x, _row(y[:t], V), y[t]] for t in range(start, len(y)))

    def prefix_prob(levels, x, prefix):
        return pp[x] * math.exp(logprob(levels, x, prefix)) if pp[x] > 0 else 0.0

    def Q(levels, x, prefix, v):  # E_pi[R | c = (x, prefix), y_t = v], by summing completions
        t = len(prefix) + 1
        total = 0.0
        for rest in itertools.product(range(V), repeat=T - t):
            y = tuple(prefix) + (v,) + rest
            total += math.exp(logprob(levels, x, y, start=t)) * R[x, _row(y, V)]
        return total

    out = {
        k: 0.0 for k in ("J_roll", "J_theta", "ratio_Lprime", "minus_Delta", "dkl_joint", "dtv_seq", "L_b")
    }
    out.update(acceptance=0.0, surrogate_masked=0.0, expected_W_terms=np.zeros(T))
    per_prompt_tv = np.zeros(P)
    ratio_representable = True  # the literal ratio form is computable in float64
    abs_cont = True
    eps = delta = 0.0
    dbar, ctx_tv, g_inf = np.zeros(T), np.zeros(T), np.zeros(T)
    lprime_g, pdi = 0.0, 0.0
    martingale = 0.0  # max |E_roll[A_t | c]|
    erho_gap = 0.0  # max |E_roll|rho - 1| - 2 TV| over abs-continuous contexts
    g_over_tv = 0.0  # max |g_t(c)| / TV(c)
    kl_ctx = {}
    for t in range(1, T + 1):
        for x in range(P):
            for prefix in itertools.product(range(V), repeat=t - 1):
                k = _row(prefix, V)
                a, b = lr[t - 1][x, k], lt[t - 1][x, k]
                dr, dt = prefix_prob(lr, x, prefix), prefix_prob(lt, x, prefix)
                # reachable = positive probability, decided in log space (e^-2000 > 0 underflows)
                r_reach = pp[x] > 0 and logprob(lr, x, prefix) > -math.inf
                reach = r_reach or (pp[x] > 0 and logprob(lt, x, prefix) > -math.inf)
                tv, kl = _tv(a, b), _kl(a, b)
                kl_ctx[(x, prefix)] = kl
                if reach:
                    eps, delta = max(eps, tv), max(delta, kl)
                dbar[t - 1] += dr * tv
                ctx_tv[t - 1] += 0.5 * abs(dt - dr)
                Qr = [Q(lr, x, prefix, v) for v in range(V)]
                Vr = sum(math.exp(a[v]) * Qr[v] for v in range(V))
                martingale = max(martingale, abs(sum(math.exp(a[v]) * (Qr[v] - Vr) for v in range(V))))
                g = sum((math.exp(b[v]) - math.exp(a[v])) * Qr[v] for v in range(V))
                if tv > 1e-6:  # below that, rounding of the plain formulas dominates both
                    g_over_tv = max(g_over_tv, abs(g) / tv)
                lprime_g += dr * g
                pdi += dt * g
                if reach:
                    g_inf[t - 1] = max(g_inf[t - 1], abs(g))
                if r_reach and any(a[v] == -math.inf and b[v] > -math.inf for v in range(V)):
                    abs_cont = False
                elif dr > 0:
                    e = sum(math.exp(a[v]) * abs(_exp(b[v] - a[v]) - 1) for v in range(V) if a[v] > -math.inf)
                    erho_gap = max(erho_gap, abs(e - 2 * tv))
    for x in range(P):
        for y in itertools.product(range(V), repeat=T):
            la, lb = logprob(lr, x, y), logprob(lt, x, y)
            Pr = pp[x] * math.exp(la)
            Pt = pp[x] * math.exp(lb)
            r = R[x, _row(y, V)]
            out["J_roll"] += Pr * r
            out["J_theta"] += Pt * r
            out["dtv_seq"] += 0.5 * abs(Pr - Pt)
            per_prompt_tv[x] += 0.5 * abs(Pr - Pt) / pp[x] if pp[x] > 0 else 0.0
            if Pr > 0:
                out["dkl_joint"] += Pr * (la - lb)
            log_rho = [lt[t][x, _row(y[:t], V), y[t]] - lr[t][x, _row(y[:t], V), y[t]] for t in range(T)]
            if pp[x] > 0 and max(la, lb) > -700 and (la < -700 or max(abs(q) for q in log_rho) > 600):
                ratio_representable = False  # P^roll * rho underflows / overflows in float64
            if Pr == 0:
                continue
            rho = [_exp(q) for q in log_rho]
            out["ratio_Lprime"] += Pr * r * sum(q - 1 for q in rho)
            out["minus_Delta"] -= (
                Pr * r * sum((rho[t] - 1) * (1 - _exp(sum(log_rho[t + 1 :]))) for t in range(T))
            )
            out["L_b"] += Pr * (r - baseline) * sum(rho)
            out["expected_W_terms"] += Pr * np.abs(np.array(rho) - 1)
            kls = [kl_ctx[(x, y[:t])] for t in range(T)]
            M = 1.0
            if mask_delta is not None:
                M *= float(max(kls) <= mask_delta)
            if mask_delta_avg is not None:
                M *= float(sum(kls) / T <= mask_delta_avg)
            out["acceptance"] += Pr * M
            out["surrogate_masked"] += Pr * M * r * sum(q - 1 for q in rho)
    # future-trajectory TV sup per t, and E_roll[|1 - prod_{j>t} rho_j| | c_{t+1}] = 2 TV
    future = np.zeros(T)
    future_gap = 0.0
    for t in range(1, T):
        for x in range(P):
            for prefix in itertools.product(range(V), repeat=t):
                if pp[x] == 0 or max(logprob(lr, x, prefix), logprob(lt, x, prefix)) == -math.inf:
                    continue
                tv, e = 0.0, 0.0
                for rest in itertools.product(range(V), repeat=T - t):
                    y = prefix + rest
                    pa, pb = math.exp(logprob(lr, x, y, t)), math.exp(logprob(lt, x, y, t))
                    tv += 0.5 * abs(pa - pb)
                    if pa > 0:
                        e += pa * abs(1 - _exp(logprob(lt, x, y, t) - logprob(lr, x, y, t)))
                future[t - 1] = max(future[t - 1], tv)
                if abs_cont and prefix_prob(lr, x, prefix) > 0:
                    future_gap = max(future_gap, abs(e - 2 * tv))
    out.update(
        surrogate=lprime_g,
        error=out["J_theta"] - out["J_roll"] - lprime_g,
        pdi=pdi,
        abs_cont=abs_cont,
        ratio_ok=abs_cont and ratio_representable,
        eps=eps,
        delta=delta,
        dkl_seq=out["dkl_joint"],
        dbar=dbar,
        context_tv=ctx_tv,
        g_inf=g_inf,
        dtv_seq_max_prompt=float(max(per_prompt_tv[pp > 0])),
        future_tv=future,
        martingale=martingale,
        erho_gap=erho_gap,
        future_gap=future_gap,
        g_over_tv=g_over_tv,
    )
    return out
