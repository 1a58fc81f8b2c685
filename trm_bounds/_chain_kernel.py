"""Fused CPU kernel of the chain engine (numba, optional): one forward and one backward pass.

`trm_bounds.chain` states the recursions (module docstring there). This module evaluates
them without the (T, S, V) operator stacks and the (T, S) tables of g_t / h_t of the
level-by-level route:

- token terms, per block of time steps (~2**16 token entries, cache resident): the
  transcendental functions run as numpy array calls (SIMD) - pi_roll = e^lr, pi_theta = e^lth,
  e1 = expm1(-|lth - lr|), e2 = expm1(|lth - lr|) - and a numba loop forms from them, with
  the engine's formulas element by element (`divergences._tv_terms`, `_kl_terms`,
  `chain._prob_diff`): D = pi_theta - pi_roll = sign e^hi (-e1), TV = 1/2 sum |D|, KL terms
  p (e^d - 1 - d) by series (|d| < 0.1) / expm1 / (q - p) - p d (d > 1), +inf for p > 0 = q
  decided on the log-prob. A homogeneous chain has one block, computed once.
- forward (t = 1..T): mu^roll, mu^theta, the coupling's agreeing mass a_t and the two
  reachability indicators per prompt group; per step the sums of the K = 5 forward rows
  (`chain._finish`'s stat_c), the TV of the state marginals, eps and delta (maxima over
  reachable states), and one bit per reachable state (T x S bits).
- backward (t = T..1): U_t, Delta_t, g_t, h_t as in `chain`, plus three adjoint vectors
      A^g_t = g_t + M_roll A^g_{t+1},  A^h_t = h_t + M_roll A^h_{t+1},
      A^p_t = g_t + M_theta A^p_{t+1}          (A_{T+1} = 0)
  so that sum_t <mu_t^roll, g_t> = <mu_1, A^g_1>, sum_t <mu_t^roll, h_t> = <mu_1, A^h_1>,
  sum_t <mu_t^theta, g_t> = <mu_1, A^p_1>: no (T, S) table is stored. max|g_t| over the
  reachable states reads the forward pass's bits.

Memory: the inputs, O(block S V) scratch, O(S) state vectors, O(T B) statistics and T S / 8
bytes of reachability bits; a homogeneous chain streams any T in O(S V + T S / 8)
(the T-long outputs dbar, g_inf, context TV bounds are O(T) anyway).
Only summation orders differ from the level-by-level route (tests/test_engine_reference.py).
"""

from __future__ import annotations

import math
import os

import numpy as np

try:  # optional: pip install "trm-bounds[fast]"
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

from ._tree_kernel import _SERIES

BLOCK_ENTRIES = 2**16  # token entries per block of time steps: scratch stays in cache
K_ROWS = 5  # forward rows: roll, theta, agree, reach_roll, reach_theta (chain._K)
TABLE_ENTRIES = 2**23  # T S up to this: g_t, h_t stored (T, S, 2) (<= 128 MB); above: adjoint sums


def available() -> bool:
    """True when the fused chain kernel can run (numba importable, TRM_BOUNDS_JIT != 0)."""
    return numba is not None and os.environ.get("TRM_BOUNDS_JIT", "1") != "0"


if numba is not None:
    from ._tree_kernel import _expm1_minus_x

    @njit(cache=True, inline="always")
    def _emx(d, em):
        """e^d - 1 - d from d and em = expm1(d) (divergences.expm1_minus_x: series below 0.1)."""
        return _expm1_minus_x(d) if abs(d) < 0.1 else em - d

    @njit(cache=True, inline="always")
    def _series_even_odd(d):
        """Even and odd parts of the series sum_k c_k d^k of `_emx` (c = _tree_kernel._SERIES):
        e^d - 1 - d = d^2/2 (even + odd), e^-d - 1 + d = d^2/2 (even - odd); |d| < 0.1."""
        c = _SERIES
        x = d * d
        ev = c[8]
        ev = ev * x + c[6]
        ev = ev * x + c[4]
        ev = ev * x + c[2]
        ev = ev * x + c[0]
        od = c[9]
        od = od * x + c[7]
        od = od * x + c[5]
        od = od * x + c[3]
        od = od * x + c[1]
        return ev, od * d

    @njit(cache=True, inline="always")
    def _kl_term(a, b, p, q, d, em):
        """One term of KL(p || q) (divergences._kl_terms): a = log p, b = log q, d = b - a,
        em = expm1(d). +inf when p > 0 = q (decided on the log-prob)."""
        if a == -np.inf:
            return q
        if b == -np.inf:
            return np.inf
        if d > 1.0:
            return (q - p) - p * d
        return p * _emx(d, em)

    @njit(cache=True)
    def prob_diff(lr, lth, pr, pth, e1, D):
        """D (n, S, V) = pi_theta - pi_roll = sign e^hi (-e1) (chain._prob_diff), 0 where both are 0."""
        n, S, V = lr.shape
        for i in range(n):
            for s in range(S):
                for v in range(V):
                    a, b = lr[i, s, v], lth[i, s, v]
                    mag = 0.0 if max(a, b) == -np.inf else max(pr[i, s, v], pth[i, s, v]) * (-e1[i, s, v])
                    D[i, s, v] = mag if b >= a else -mag

    @njit(cache=True)
    def token_terms(lr, lth, pr, pth, e1, e2, D, st):
        """Per (step, state) token terms of a block; inputs (n, S, V), pr/pth/e1/e2 from numpy.

        Writes D (n, S, V) = pi_theta - pi_roll and st (n, S, 6) = [TV, finite KL(roll||theta),
        finite KL(theta||roll), KL infinite, reverse KL infinite, pi_theta > 0 = pi_roll somewhere].
        """
        n, S, V = lr.shape
        for i in range(n):
            for s in range(S):
                tv = 0.0
                kl = 0.0
                klr = 0.0
                acv = 0.0
                for v in range(V):
                    a, b = lr[i, s, v], lth[i, s, v]
                    p, q = pr[i, s, v], pth[i, s, v]
                    x1 = e1[i, s, v]
                    if a > -np.inf and b > -np.inf:  # both finite: the common case
                        d = b - a
                        mag = max(p, q) * (-x1)
                        tv += mag
                        D[i, s, v] = mag if d >= 0 else -mag
                        if abs(d) < 0.1:  # e^{+-d} - 1 -+ d = d^2/2 (E(d^2) +- d O(d^2)): one series
                            ev, od = _series_even_odd(d)
                            h = 0.5 * d * d
                            kl += p * (h * (ev + od))
                            klr += q * (h * (ev - od))
                        else:  # expm1(d), expm1(-d) are e1 / e2 according to the sign of d
                            em_f = x1 if d <= 0 else e2[i, s, v]
                            em_r = e2[i, s, v] if d <= 0 else x1
                            kl += (q - p) - p * d if d > 1.0 else p * (em_f - d)
                            klr += (p - q) + q * d if -d > 1.0 else q * (em_r + d)
                        continue
                    if max(a, b) == -np.inf:
                        dv = 0.0
                        d = 0.0
                    else:
                        mag = max(p, q) * (-x1)
                        dv = mag if b >= a else -mag
                        d = b - a  # inf / -inf: one side is -inf (handled by _kl_term)
                    D[i, s, v] = dv
                    tv += abs(dv)
                    if a == -np.inf and b > -np.inf:
                        acv = 1.0
                    em_f = x1 if d <= 0 else e2[i, s, v]
                    em_r = e2[i, s, v] if d <= 0 else x1
                    kl += _kl_term(a, b, p, q, d, em_f)
                    klr += _kl_term(b, a, q, p, -d, em_r)
                st[i, s, 0] = 0.5 * tv
                kinf = math.isinf(kl)
                rinf = math.isinf(klr)
                st[i, s, 1] = 0.0 if kinf else kl
                st[i, s, 2] = 0.0 if rinf else klr
                st[i, s, 3] = 1.0 if kinf else 0.0
                st[i, s, 4] = 1.0 if rinf else 0.0
                st[i, s, 5] = acv

    @njit(cache=True)
    def forward_steps(
        k0, n, homog, lr, lth, pr, pth, st, trans, w, X, Y, stat_c, state_tv, bits, ed, fixed, gh, stat_g,
        g_inf,
    ):  # fmt: skip
        """Forward steps t = k0+1 .. k0+n. X, Y: (5, B, S) state (rows as chain._K), scratch.

        Per step k: stat_c[k] (5, B, 2), state_tv[k], bits[k] (S / 8 bytes: state s reachable
        is bit s & 7 of byte s >> 3), ed = [eps, delta]. fixed[0]: the reachable sets stopped
        changing (homogeneous chains: then they never change again and are not recomputed).
        Table mode (gh (T, S, 2) = g_t, h_t from a backward pass run first; else gh has no rows):
        stat_g[k] (2, B, 2) = <mu_t^roll / mu_t^theta, g_t / h_t> and g_inf[k] = max|g_t| over
        the reachable states.
        """
        _, B, S = X.shape
        V = lr.shape[2]
        for i in range(n):
            k = k0 + i
            j = 0 if homog else i
            for b in range(B):  # the K rows' sums over states: <mu_t, per-state terms>
                c00 = c01 = c10 = c11 = c20 = c30 = c31 = c40 = 0.0
                for s in range(S):
                    x0, x1, x3 = X[0, b, s], X[1, b, s], X[3, b, s]
                    c00 += x0 * st[j, s, 0]
                    c01 += x0 * st[j, s, 1]
                    c10 += x1 * st[j, s, 0]
                    c11 += x1 * st[j, s, 2]
                    c20 += X[2, b, s] * st[j, s, 0]
                    c30 += x3 * st[j, s, 3]
                    c31 += x3 * st[j, s, 5]
                    c40 += X[4, b, s] * st[j, s, 4]
                stat_c[k, 0, b, 0], stat_c[k, 0, b, 1] = c00, c01
                stat_c[k, 1, b, 0], stat_c[k, 1, b, 1] = c10, c11
                stat_c[k, 2, b, 0], stat_c[k, 2, b, 1] = c20, 0.0
                stat_c[k, 3, b, 0], stat_c[k, 3, b, 1] = c30, c31
                stat_c[k, 4, b, 0], stat_c[k, 4, b, 1] = c40, 0.0
            tvs = 0.0
            for s in range(S):  # state-marginal TV, reachable states, eps and delta
                reach = False
                mr = 0.0
                mt = 0.0
                for b in range(B):
                    reach = reach or X[3, b, s] > 0 or X[4, b, s] > 0
                    mr += w[b] * X[0, b, s]
                    mt += w[b] * X[1, b, s]
                tvs += abs(mt - mr)
                if reach:
                    bits[k, s >> 3] |= np.uint8(1 << (s & 7))
                    ed[0] = max(ed[0], st[j, s, 0])
                    ed[1] = max(ed[1], np.inf if st[j, s, 3] > 0 else st[j, s, 1])
            state_tv[k] = 0.5 * tvs
            if gh.shape[0] > 0:
                gm = 0.0
                for s in range(S):
                    if bits[k, s >> 3] & (1 << (s & 7)):
                        gm = max(gm, abs(gh[k, s, 0]))
                g_inf[k] = gm
                for b in range(B):
                    for r in range(2):
                        a0 = 0.0
                        a1 = 0.0
                        for s in range(S):
                            a0 += X[r, b, s] * gh[k, s, 0]
                            a1 += X[r, b, s] * gh[k, s, 1]
                        stat_g[k, r, b, 0] = a0
                        stat_g[k, r, b, 1] = a1
            Y[:3] = 0.0
            if not fixed[0]:
                Y[3:] = 0.0
            for b in range(B):  # one step of the five forward operators
                for s in range(S):
                    x0, x1, x2 = X[0, b, s], X[1, b, s], X[2, b, s]
                    for v in range(V):
                        s2 = trans[s, v]
                        p, q = pr[j, s, v], pth[j, s, v]
                        Y[0, b, s2] += x0 * p
                        Y[1, b, s2] += x1 * q
                        Y[2, b, s2] += x2 * min(p, q)
                    r3, r4 = X[3, b, s] > 0, X[4, b, s] > 0
                    if (r3 or r4) and not fixed[0]:
                        for v in range(V):
                            s2 = trans[s, v]
                            if r3 and lr[j, s, v] > -np.inf:
                                Y[3, b, s2] = 1.0
                            if r4 and lth[j, s, v] > -np.inf:
                                Y[4, b, s2] = 1.0
            if homog and not fixed[0]:  # the reachable sets follow a fixed map: equal once, equal forever
                same = True
                for r in range(3, K_ROWS):
                    for b in range(B):
                        for s in range(S):
                            if X[r, b, s] != Y[r, b, s]:
                                same = False
                fixed[0] = same
            X[:] = Y

    @njit(cache=True)
    def final_state_tv(X, w):
        """1/2 sum_s |sum_b w_b (mu^theta - mu^roll)_b(s)| of a forward state X (5, B, S)."""
        _, B, S = X.shape
        out = 0.0
        for s in range(S):
            mr = 0.0
            mt = 0.0
            for b in range(B):
                mr += w[b] * X[0, b, s]
                mt += w[b] * X[1, b, s]
            out += abs(mt - mr)
        return 0.5 * out

    @njit(cache=True)
    def backward_steps(k1, n, homog, pr, pth, D, c_roll, c_diff, trans, bits, Z, Zn, g_inf, gh):
        """Backward steps t = k1, k1-1, .., k1-n+1 (k = t - 1 from k1-1 down); block row j = k - (k1 - n).

        Z, Zn: (S, 7) = [U, Delta, A^g, A^h, A^p, E, W] at t+1 (in), scratch; on return Z holds t
        (E, W: the second-order recursion of `second_order.second_order_chain`).
        c_roll, c_diff: (n or 1, S) = sum_v pi r_step / T, sum_v D r_step / T. Table mode (gh has
        rows): gh[k] = (g_t, h_t) per state; else g_inf[k] = max|g_t| over the states with bits[k].
        """
        S, V = trans.shape
        for i in range(n - 1, -1, -1):
            k = k1 - n + i
            j = 0 if homog else i
            gm = 0.0
            for s in range(S):
                sU = 0.0
                sDU = 0.0
                sDD = 0.0
                sPD = 0.0
                sAg = 0.0
                sAh = 0.0
                sAp = 0.0
                sE = 0.0
                sW = 0.0
                tv = 0.0
                for v in range(V):
                    s2 = trans[s, v]
                    p, dv, q = pr[j, s, v], D[j, s, v], pth[j, s, v]
                    sU += p * Z[s2, 0]
                    sPD += p * Z[s2, 1]
                    sAg += p * Z[s2, 2]
                    sAh += p * Z[s2, 3]
                    sDU += dv * Z[s2, 0]
                    sDD += dv * Z[s2, 1]
                    sAp += q * Z[s2, 4]
                    a = abs(dv)
                    sE += a * Z[s2, 6] + p * Z[s2, 5]
                    sW += p * Z[s2, 6]
                    tv += a
                g = c_diff[j, s] + sDU
                h = sDD
                Zn[s, 0] = c_roll[j, s] + sU
                Zn[s, 1] = g + sPD + h
                Zn[s, 2] = g + sAg
                Zn[s, 3] = h + sAh
                Zn[s, 4] = g + sAp
                Zn[s, 5] = sE
                Zn[s, 6] = 0.5 * tv + sW
                if gh.shape[0] > 0:
                    gh[k, s, 0] = g
                    gh[k, s, 1] = h
                elif bits[k, s >> 3] & (1 << (s & 7)):
                    gm = max(gm, abs(g))
            if gh.shape[0] == 0:
                g_inf[k] = gm
            Z[:] = Zn


def _block_terms(lr, lth, bufs, divergences: bool = True):
    """pi_roll, pi_theta, D and (divergences=True) the per-(step, state) token terms of one
    block (n, S, V); the transcendental functions as numpy array calls."""
    n = lr.shape[0]
    pr, pth, e1, e2, D, st = (b[:n] for b in bufs)
    np.exp(lr, out=pr)
    np.exp(lth, out=pth)
    with np.errstate(invalid="ignore", over="ignore"):  # -inf - -inf: handled in the kernel
        np.subtract(lth, lr, out=e2)
        np.abs(e2, out=e2)
        np.negative(e2, out=e1)
        np.expm1(e1, out=e1)  # expm1(-|d|)
        if not divergences:
            prob_diff(lr, lth, pr, pth, e1, D)
            return pr, pth, D, None
        np.expm1(e2, out=e2)  # expm1(|d|); inf above ~709, used only where d <= 1
    token_terms(lr, lth, pr, pth, e1, e2, D, st)
    return pr, pth, D, st


def run(lr, lth, trans, start_states, w, rf, rs, T: int) -> dict:
    """Both passes for one pair; lr, lth (Tp, S, V) with Tp in {1, T}; start_states (B,) int; w (B,).

    Returns per-pair raw arrays for `chain._finish`: U1 (B, 2), stat_c (T, 5, B, 2),
    stat_g_sum (2, B, 2), state_tv (T + 1,), g_inf (T,), eps, delta, w, and second_order =
    E_roll[Z] by the recursion of `second_order.second_order_chain` (E_1 at the start states).
    """
    Tp, S, V = lr.shape
    homog = Tp == 1
    B = len(start_states)
    nb = 1 if homog else max(1, min(Tp, BLOCK_ENTRIES // (S * V)))
    bufs = [np.empty((nb, S, V)) for _ in range(5)] + [np.empty((nb, S, 6))]
    trans = np.ascontiguousarray(trans, dtype=np.int64)
    w = np.ascontiguousarray(w, dtype=np.float64)

    X = np.zeros((K_ROWS, B, S))
    X[:, np.arange(B), start_states] = 1.0
    Y = np.empty_like(X)
    stat_c = np.empty((T, K_ROWS, B, 2))
    state_tv = np.empty(T + 1)
    bits = np.zeros((T, (S + 7) // 8), dtype=np.uint8)
    fixed = np.zeros(1, dtype=np.bool_)
    ed = np.zeros(2)
    g_inf = np.empty(T)
    table = T * S <= TABLE_ENTRIES  # g_t, h_t stored: the sums over t as the level-by-level route
    gh = np.empty((T if table else 0, S, 2))
    stat_g = np.zeros((T if table else 0, 2, B, 2))
    blocks = [(0, T)] if homog else [(k0, min(T, k0 + nb)) for k0 in range(0, T, nb)]
    cache = _block_terms(lr, lth, bufs) if homog else None

    def forward():
        for k0, k1 in blocks:
            pr, pth, _, st = cache if homog else _block_terms(lr[k0:k1], lth[k0:k1], bufs)
            forward_steps(k0, k1 - k0, homog, lr if homog else lr[k0:k1], lth if homog else lth[k0:k1],
                          pr, pth, st, trans, w, X, Y, stat_c, state_tv, bits, ed, fixed, gh, stat_g,
                          g_inf)  # fmt: skip
        state_tv[T] = final_state_tv(X, w)

    Z = np.zeros((S, 7))
    Z[:, 0] = rf
    Zn = np.empty_like(Z)

    def backward():
        for k0, k1 in reversed(blocks):
            pr, pth, D, _ = cache if homog else _block_terms(lr[k0:k1], lth[k0:k1], bufs, divergences=False)
            c_roll = (pr * rs).sum(-1) / T  # (n, S): sum_v pi_roll r_step / T, as chain._Ops
            c_diff = (D * rs).sum(-1) / T
            backward_steps(k1, k1 - k0, homog, pr, pth, D, c_roll, c_diff, trans, bits, Z, Zn, g_inf, gh)

    if table:  # g_t, h_t first, then the forward pass reads them
        backward()
        forward()
    else:  # streaming: reachable states first, then the adjoint sums
        forward()
        backward()
    Zs = Z[start_states]  # (B, 7)
    U1 = Zs[:, :2].copy()
    if table:  # pairwise sums over t (contiguous rows), as numpy sums the level-by-level route's
        stat_g_sum = np.ascontiguousarray(stat_g.reshape(T, -1).T).sum(-1).reshape(2, B, 2)
    else:
        stat_g_sum = np.zeros((2, B, 2))
        stat_g_sum[0, :, 0], stat_g_sum[0, :, 1], stat_g_sum[1, :, 0] = Zs[:, 2], Zs[:, 3], Zs[:, 4]
    return dict(U1=U1, stat_c=stat_c, stat_g_sum=stat_g_sum, state_tv=state_tv, g_inf=g_inf,
                eps=float(ed[0]), delta=float(ed[1]), w=w, second_order=float(w @ Zs[:, 5]))  # fmt: skip
