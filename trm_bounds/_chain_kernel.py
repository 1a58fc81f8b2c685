"""Fused CPU kernel of the chain engine (numba, optional): a forward and a backward pass, run
side by side on two cores when two are free.

`trm_bounds.chain` states the recursions (module docstring there). This module evaluates
them without the (T, S, V) operator stacks and the (T, S) tables of g_t / h_t of the
level-by-level route:

- token terms: pi_roll = e^lr, pi_theta = e^lth as numpy array calls (SIMD), per block of
  time steps (~2**16 token entries, cache resident; a homogeneous chain has one block,
  computed once). Everything else element by element in numba (`token_elems`, branch-free): d = lth - lr,
  D = pi_theta - pi_roll = sign max(p, q) (1 - e^-|d|) with 1 - e^-|d| from the series of
  e^x - 1 - x for |d| < 0.1 and D = q - p (relative rounding <= 1 / (1 - e^-0.1) ~ 10 ulp)
  above; TV = 1/2 sum |D|; KL terms p (e^d - 1 - d) = d^2/2 p (series) for |d| < 0.1, else
  D - p d (reverse: q d - D); +inf for p > 0 = q decided on the log-prob. No libm call per
  token.
- forward (t = 1..T): mu^roll, mu^theta, the coupling's agreeing mass a_t and the two
  reachability indicators per prompt group; per step the sums of the K = 5 forward rows
  (`chain._finish`'s statistics) reduced on the spot to what the result reports: Dbar_t,
  the running prefix KLs and coupling failure per group and from them the context-TV upper
  bound of step t (`chain._tv_upper`), the TV of the state marginals, eps and delta (maxima
  over reachable states). O(T) outputs, no (T, K, B) table.
- backward (t = T..1): U_t, Delta_t, g_t, h_t as in `chain`, the second-order recursion
  (E, W of `second_order.second_order_chain`) and three adjoint vectors
      A^g_t = g_t + M_roll A^g_{t+1},  A^h_t = h_t + M_roll A^h_{t+1},
      A^p_t = g_t + M_theta A^p_{t+1}          (A_{T+1} = 0)
  so that sum_t <mu_t^roll, g_t> = <mu_1, A^g_1>, sum_t <mu_t^roll, h_t> = <mu_1, A^h_1>,
  sum_t <mu_t^theta, g_t> = <mu_1, A^p_1>: no (T, S) table of g, h.
- max|g_t| over the reachable states needs both directions. Homogeneous chains: a reach-only
  pre-pass (`reach_bits`: booleans, stops when the reachable sets repeat) gives the backward
  pass the reachable set of every t (S / 8 bytes per step until they repeat, then one row).
  Time-dependent chains: the backward pass writes g_t to a (T, S) table (1 / 2V of the input's
  size) and the forward pass one bit per reachable state; `masked_max` combines them.

Memory: the inputs, O(block S V) scratch per pass, O(S) state vectors and O(T) outputs
(homogeneous: T S / 8 bytes of reachability only while the reachable sets have not yet
repeated; time-dependent: the (T, S) g table). Only summation orders differ from the
level-by-level route (tests/test_engine_reference.py).
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np

try:  # optional: pip install "trm-bounds[fast]"
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

from ._tree_kernel import _SERIES

BLOCK_ENTRIES = 2**16  # token entries per block of time steps: scratch stays in cache
K_ROWS = 5  # forward rows: roll, theta, agree, reach_roll, reach_theta (chain._K)
N_ST = 6  # per-state token terms: TV, KL, reverse KL (finite parts), KL inf, reverse inf, acv
N_Z = 7  # backward state columns: U, Delta, A^g, A^h, A^p, E, W
_FMA = {"contract"}  # a * b + c as one fused multiply-add (one rounding): the only fast-math flag used
TABLE_ENTRIES = 2**23  # table mode up to this many float64 entries (64 MB); above: adjoint sums
REACH_ROWS = 4096  # reachability rows kept before the homogeneous pre-pass gives up on repetition


def available() -> bool:
    """True when the fused chain kernel can run (numba importable, TRM_BOUNDS_JIT != 0)."""
    return numba is not None and os.environ.get("TRM_BOUNDS_JIT", "1") != "0"


def bytes_per_step(S: int, time_dependent: bool) -> int:
    """Bytes per time step `run` allocates beyond its inputs: 4 float64 outputs (Dbar, state TV,
    context-TV upper bound, g_inf) and S / 8 bits of reachability; time-dependent chains also
    the (T, S) float64 table of g_t. (Homogeneous chains keep the bits only until the reachable
    sets repeat; counted for every step, as when they never repeat.)"""
    return 4 * 8 + (S + 7) // 8 + (8 * S if time_dependent else 0)


if numba is not None:

    @njit(cache=True, nogil=True, fastmath=_FMA)
    def token_elems(lr, lth, pr, pth, D, K1, K2):
        """Per token of a block (any shape, C order): D = pi_theta - pi_roll to relative rounding,
        K1, K2 = the terms of KL(roll || theta) and KL(theta || roll) (module docstring; +inf for a
        support violation, q resp. p where the other side is 0). Branch-free (selects), so the
        loop runs on SIMD lanes."""
        c = _SERIES
        N = lr.size
        a_, b_, p_, q_ = lr.reshape(N), lth.reshape(N), pr.reshape(N), pth.reshape(N)
        Df, k1, k2 = D.reshape(N), K1.reshape(N), K2.reshape(N)
        for i in range(N):
            a, b, p, q = a_[i], b_[i], p_[i], q_[i]
            fa = a > -np.inf
            fb = b > -np.inf
            d = b - a  # nan / +-inf where a side is -inf: those lanes are not selected
            ad = abs(d)
            sg = 1.0 if d >= 0 else -1.0
            x = ad * ad  # series of e^x - 1 - x at +-|d|: d^2/2 (even +- odd), |d| < 0.1
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
            oda = od * ad
            h = 0.5 * d * d
            ods = sg * oda
            mag = max(p, q) * (ad - h * (ev - oda))  # max(p, q) (1 - e^-|d|)
            diff = q - p  # exact when a side is 0
            small = ad < 0.1
            Df[i] = sg * mag if (fa and fb and small) else diff
            ks = p * (h * (ev + ods)) if small else diff - p * d
            kr = q * (h * (ev - ods)) if small else q * d - diff
            k1[i] = (ks if fb else np.inf) if fa else q
            k2[i] = (kr if fa else np.inf) if fb else p

    @njit(cache=True, nogil=True, fastmath={"contract", "reassoc", "nsz"})
    def token_rows(lr, lth, D, K1, K2, st):
        """Per (step, state) token terms of a block (n, S, V) from `token_elems`: st (n, S, 6) =
        [TV, finite KL(roll||theta), finite KL(theta||roll), KL infinite, reverse KL infinite,
        pi_theta > 0 = pi_roll somewhere]. The sums over v in any order (SIMD)."""
        n, S, V = D.shape
        for i in range(n):
            for s in range(S):
                tv = 0.0
                kl = 0.0
                klr = 0.0
                acv = 0.0
                for v in range(V):
                    tv += abs(D[i, s, v])
                    kl += K1[i, s, v]
                    klr += K2[i, s, v]
                    acv = max(acv, 1.0 if (lr[i, s, v] == -np.inf and lth[i, s, v] > -np.inf) else 0.0)
                st[i, s, 0] = 0.5 * tv
                kinf = math.isinf(kl)
                rinf = math.isinf(klr)
                st[i, s, 1] = 0.0 if kinf else kl
                st[i, s, 2] = 0.0 if rinf else klr
                st[i, s, 3] = 1.0 if kinf else 0.0
                st[i, s, 4] = 1.0 if rinf else 0.0
                st[i, s, 5] = acv

    @njit(cache=True, inline="always", nogil=True)
    def _tv_bound(fail, K, Kr):
        """min(1, fail, sqrt(K / 2), sqrt(1 - e^-K), the same for Kr) (chain._tv_upper)."""
        out = min(1.0, fail)
        for kk in (K, Kr):
            out = min(out, math.sqrt(kk / 2.0))
            out = min(out, math.sqrt(-math.expm1(-kk)))
        return out

    @njit(cache=True, nogil=True, fastmath=_FMA)
    def forward_steps(k0, n, homog, lr, lth, pr, pth, st, trans, w, X, Y, run, out, bits, ed, fixed, mutab):
        """Forward steps t = k0+1 .. k0+n. X, Y: (5, B, S) state (rows as chain._K), scratch.

        run (B, 4): running [K, Krev, fail, acv seen] per group (prefix sums before step k);
        out (3, T + 1): rows Dbar_t, state TV, context-TV upper bound (row j: laws of
        (x, y_1..y_j)); bits (T or 0 rows): reachable states of step k (bit s & 7 of
        byte s >> 3); ed = [eps, delta]; fixed[0]: the reachable sets stopped changing
        (homogeneous chains: then they never change again and are not recomputed).
        mutab (T or 0 rows, 2, B, S): table mode, mu_t^roll and mu_t^theta of every step.
        """
        _, B, S = X.shape
        V = lr.shape[2]
        for i in range(n):
            k = k0 + i
            j = 0 if homog else i
            if mutab.shape[0] > 0:
                mutab[k] = X[:2]
            db = 0.0
            cu = 0.0
            for b in range(B):  # the K rows' sums over states: <mu_t, per-state terms>
                c00 = c01 = c11 = c20 = c30 = c31 = c40 = 0.0
                for s in range(S):
                    x0, x1, x3 = X[0, b, s], X[1, b, s], X[3, b, s]
                    c00 += x0 * st[j, s, 0]
                    c01 += x0 * st[j, s, 1]
                    c11 += x1 * st[j, s, 2]
                    c20 += X[2, b, s] * st[j, s, 0]
                    c30 += x3 * st[j, s, 3]
                    c31 += x3 * st[j, s, 5]
                    c40 += X[4, b, s] * st[j, s, 4]
                db += c00 * w[b]
                up = 0.0 if k == 0 else _tv_bound(run[b, 2], run[b, 0], run[b, 1])
                cu += up * w[b]
                run[b, 0] += np.inf if c30 > 0 else c01
                run[b, 1] += np.inf if c40 > 0 else c11
                run[b, 2] += c20
                if c31 > 0:
                    run[b, 3] = 1.0
            out[0, k] = min(1.0, db)
            out[2, k] = min(1.0, cu)
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
                    if bits.shape[0] > 0:
                        bits[k, s >> 3] |= np.uint8(1 << (s & 7))
                    ed[0] = max(ed[0], st[j, s, 0])
                    ed[1] = max(ed[1], np.inf if st[j, s, 3] > 0 else st[j, s, 1])
            out[1, k] = 0.5 * tvs
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

    @njit(cache=True, nogil=True)
    def forward_final(X, w, run, out, upper_T, T):
        """Step T + 1: the state-marginal TV and the context-TV bound of the whole sequence;
        upper_T (B,): per group, the bound on the TV of the laws of (x, y_1..y_T)."""
        _, B, S = X.shape
        tvs = 0.0
        for s in range(S):
            mr = 0.0
            mt = 0.0
            for b in range(B):
                mr += w[b] * X[0, b, s]
                mt += w[b] * X[1, b, s]
            tvs += abs(mt - mr)
        out[1, T] = 0.5 * tvs
        cu = 0.0
        for b in range(B):
            up = 0.0 if T == 0 else _tv_bound(run[b, 2], run[b, 0], run[b, 1])
            cu += up * w[b]
            upper_T[b] = up
        out[2, T] = min(1.0, cu)

    @njit(cache=True, nogil=True)
    def reach_bits(lr, lth, trans, R, Rn, bits):
        """Homogeneous chains: union-reachable bits of steps 0, 1, ... into bits (rows) until the
        reachable sets repeat. R, Rn: (2, B, S) roll / theta reachability. Returns the number of
        rows n written (steps k >= n have the reachable set of step n - 1), or -1 when the sets
        did not repeat within the rows given."""
        _, B, S = R.shape
        V = trans.shape[1]
        for k in range(bits.shape[0]):
            for b in range(B):
                for s in range(S):
                    if R[0, b, s] > 0 or R[1, b, s] > 0:
                        bits[k, s >> 3] |= np.uint8(1 << (s & 7))
            Rn[:] = 0.0
            for b in range(B):
                for s in range(S):
                    r0, r1 = R[0, b, s] > 0, R[1, b, s] > 0
                    if r0 or r1:
                        for v in range(V):
                            s2 = trans[s, v]
                            if r0 and lr[0, s, v] > -np.inf:
                                Rn[0, b, s2] = 1.0
                            if r1 and lth[0, s, v] > -np.inf:
                                Rn[1, b, s2] = 1.0
            same = True
            for r in range(2):
                for b in range(B):
                    for s in range(S):
                        if R[r, b, s] != Rn[r, b, s]:
                            same = False
            if same:
                return k + 1
            R[:] = Rn
        return -1

    @njit(cache=True, nogil=True)
    def block_consts(pr, D, rs, T, cst):
        """cst (n, S, 3) = [sum_v pi_roll r_step / T, sum_v D r_step / T, TV] of a block (chain._Ops)."""
        n, S, V = pr.shape
        for i in range(n):
            for s in range(S):
                cr = 0.0
                cd = 0.0
                tv = 0.0
                for v in range(V):
                    cr += pr[i, s, v] * rs[s, v]
                    cd += D[i, s, v] * rs[s, v]
                    tv += abs(D[i, s, v])
                cst[i, s, 0] = cr / T
                cst[i, s, 1] = cd / T
                cst[i, s, 2] = 0.5 * tv

    @njit(cache=True, nogil=True, fastmath=_FMA)
    def backward_steps(k1, n, homog, pr, pth, D, cst, trans, bits, Z, Zn, g_inf, tabs):
        """Backward steps t = k1, k1-1, .., k1-n+1 (k = t - 1 from k1-1 down); block row j = k - (k1 - n).

        Z, Zn: (S, 7) = [U, Delta, A^g, A^h, A^p, E, W] at t+1 (in), scratch; on return Z holds t
        (E, W: the second-order recursion of `second_order.second_order_chain`). cst: `block_consts`.
        tabs (T, 3, S): table mode, tabs[k] = (g_t, h_t, e_t) with e_t(s) = sum_v |D| W_{t+1}(s')
        (the increments of E) and no adjoint columns; tabs (T, 1, S): g_t only, adjoints kept;
        tabs without rows: adjoints kept. bits with rows: g_inf[k] = max|g_t| over the states
        with bits[min(k, rows - 1)] (else `masked_max` does it afterwards).
        """
        S, V = trans.shape
        nbits = bits.shape[0]
        ntab = tabs.shape[1] if tabs.shape[0] > 0 else 0
        for i in range(n - 1, -1, -1):
            k = k1 - n + i
            j = 0 if homog else i
            kb = min(k, nbits - 1)
            gm = 0.0
            for s in range(S):
                sU = 0.0
                sPD = 0.0
                sDU = 0.0
                sDD = 0.0
                sW = 0.0
                sEw = 0.0
                # two copies of the v loop (table / adjoint columns): one branch per state, not per token
                if ntab == 3:  # the sums over t come from the tables: U, Delta, W only
                    for v in range(V):
                        s2 = trans[s, v]
                        p, dv = pr[j, s, v], D[j, s, v]
                        sU += p * Z[s2, 0]
                        sPD += p * Z[s2, 1]
                        sW += p * Z[s2, 6]
                        sDU += dv * Z[s2, 0]
                        sDD += dv * Z[s2, 1]
                        sEw += abs(dv) * Z[s2, 6]
                    g = cst[j, s, 1] + sDU
                    h = sDD
                    tabs[k, 0, s] = g
                    tabs[k, 1, s] = h
                    tabs[k, 2, s] = sEw
                else:
                    sAg = 0.0
                    sAh = 0.0
                    sAp = 0.0
                    sE = 0.0
                    for v in range(V):
                        s2 = trans[s, v]
                        p, dv = pr[j, s, v], D[j, s, v]
                        sU += p * Z[s2, 0]
                        sPD += p * Z[s2, 1]
                        sAg += p * Z[s2, 2]
                        sAh += p * Z[s2, 3]
                        sE += p * Z[s2, 5]
                        sW += p * Z[s2, 6]
                        sDU += dv * Z[s2, 0]
                        sDD += dv * Z[s2, 1]
                        sEw += abs(dv) * Z[s2, 6]
                        sAp += pth[j, s, v] * Z[s2, 4]
                    g = cst[j, s, 1] + sDU
                    h = sDD
                    Zn[s, 2] = g + sAg
                    Zn[s, 3] = h + sAh
                    Zn[s, 4] = g + sAp
                    Zn[s, 5] = sEw + sE
                    if ntab == 1:
                        tabs[k, 0, s] = g
                if nbits > 0 and bits[kb, s >> 3] & (1 << (s & 7)):
                    gm = max(gm, abs(g))
                Zn[s, 0] = cst[j, s, 0] + sU
                Zn[s, 1] = g + sPD + h
                Zn[s, 6] = cst[j, s, 2] + sW
            if nbits > 0:
                g_inf[k] = gm
            Z[:] = Zn

    @njit(cache=True, nogil=True, fastmath=_FMA)
    def table_dots(mutab, tabs, dots):
        """dots (T, B, 4) = <mu_t^roll, g_t>, <mu_t^roll, h_t>, <mu_t^roll, e_t>, <mu_t^theta, g_t>."""
        T, _, B, S = mutab.shape
        for k in range(T):
            for b in range(B):
                a0 = a1 = a2 = a3 = 0.0
                for s in range(S):
                    m = mutab[k, 0, b, s]
                    a0 += m * tabs[k, 0, s]
                    a1 += m * tabs[k, 1, s]
                    a2 += m * tabs[k, 2, s]
                    a3 += mutab[k, 1, b, s] * tabs[k, 0, s]
                dots[k, b, 0] = a0
                dots[k, b, 1] = a1
                dots[k, b, 2] = a2
                dots[k, b, 3] = a3

    @njit(cache=True, nogil=True)
    def masked_max(tabs, bits, g_inf):
        """g_inf[k] = max |g_t(s)| = |tabs[k, 0, s]| over the states s with a bit in bits[min(k, rows-1)]."""
        T, _, S = tabs.shape
        nbits = bits.shape[0]
        for k in range(T):
            kb = min(k, nbits - 1)
            gm = 0.0
            for s in range(S):
                if bits[kb, s >> 3] & (1 << (s & 7)):
                    gm = max(gm, abs(tabs[k, 0, s]))
            g_inf[k] = gm


def _exp_block(lr, lth, bufs):
    """pi_roll = e^lr, pi_theta = e^lth of one block (n, S, V) into the scratch buffers."""
    n = lr.shape[0]
    pr, pth = bufs[0][:n], bufs[1][:n]
    np.exp(lr, out=pr)
    np.exp(lth, out=pth)
    return pr, pth


def _homog_bits(lr, lth, trans, start_states, B: int, S: int, T: int) -> np.ndarray:
    """Reachability rows of a homogeneous chain until the reachable sets repeat (`reach_bits`)."""
    R = np.zeros((2, B, S))
    R[:, np.arange(B), start_states] = 1.0
    rows = min(T, REACH_ROWS)
    while True:
        bits = np.zeros((rows, (S + 7) // 8), dtype=np.uint8)
        n = reach_bits(lr, lth, trans, R.copy(), np.empty_like(R), bits)
        if n > 0:
            return bits[:n]
        if rows == T:
            return bits
        rows = T  # periodic reachable sets: keep every step


def table_entries(T: int, S: int, B: int) -> int:
    """float64 entries of the table mode's (T, 3, S) g/h/e and (T, 2, B, S) state-marginal tables."""
    return T * S * (3 + 2 * B)


def run(lr, lth, trans, start_states, w, rf, rs, T: int, threads: int = 1) -> dict:
    """Both passes for one pair; lr, lth (Tp, S, V) with Tp in {1, T}; start_states (B,) int; w (B,).

    threads >= 2: the forward and the backward pass run side by side (numba releases the GIL).
    Table mode (`table_entries` <= TABLE_ENTRIES): the backward pass stores g_t, h_t, e_t and the
    forward pass mu_t^roll, mu_t^theta, and the sums over t are dot products of the tables (pairwise
    over t, as the level-by-level route); otherwise the backward pass carries the adjoint sums.
    Returns the reduced per-pair arrays `chain._finish` reads: U1 (B, 2), w, stat_g_sum (2, B, 2),
    dbar (T,), state_tv (T + 1,), ctx_upper (T + 1,) (row j: the laws of (x, y_1..y_j)),
    upper_T (B,) (per group), dkl_seq, ac_ok, g_inf (T,), eps, delta, and second_order =
    E_roll[Z] by the recursion of `second_order.second_order_chain` (E_1 at the start states).
    """
    Tp, S, V = lr.shape
    homog = Tp == 1
    B = len(start_states)
    nb = 1 if homog else max(1, min(Tp, BLOCK_ENTRIES // (S * V)))
    trans = np.ascontiguousarray(trans, dtype=np.int64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    rs = np.ascontiguousarray(rs, dtype=np.float64)
    blocks = [(0, T)] if homog else [(k0, min(T, k0 + nb)) for k0 in range(0, T, nb)]
    table = table_entries(T, S, B) <= TABLE_ENTRIES
    mutab = np.empty((T if table else 0, 2, B, S))
    if homog:
        pr0, pth0 = np.exp(lr), np.exp(lth)
        st0 = np.empty((1, S, N_ST))
        D0, K1, K2 = (np.empty_like(pr0) for _ in range(3))
        token_elems(lr, lth, pr0, pth0, D0, K1, K2)
        token_rows(lr, lth, D0, K1, K2, st0)
        cst0 = np.empty((1, S, 3))
        block_consts(pr0, D0, rs, float(T), cst0)
        bits = _homog_bits(lr, lth, trans, start_states, B, S, T)
        fbits = np.zeros((0, 1), dtype=np.uint8)
    else:  # the forward pass marks the reachable states, `masked_max` reads them at the end
        fbits = np.zeros((T, (S + 7) // 8), dtype=np.uint8)
        bits = np.zeros((0, 1), dtype=np.uint8)
    tabs = np.empty((T, 3, S) if table else (0 if homog else T, 1, S))

    out = np.zeros((3, T + 1))  # rows: Dbar_t, state TV, context-TV upper bound
    upper_T = np.zeros(B)
    run_ = np.zeros((B, 4))
    ed = np.zeros(2)

    def forward():
        X = np.zeros((K_ROWS, B, S))
        X[:, np.arange(B), start_states] = 1.0
        Y = np.empty_like(X)
        fixed = np.zeros(1, dtype=np.bool_)
        if homog:
            forward_steps(
                0, T, True, lr, lth, pr0, pth0, st0, trans, w, X, Y, run_, out, fbits, ed, fixed, mutab
            )
        else:
            bufs = [np.empty((nb, S, V)) for _ in range(5)]
            st = np.empty((nb, S, N_ST))
            for k0, k1 in blocks:
                a, b = lr[k0:k1], lth[k0:k1]
                pr, pth = _exp_block(a, b, bufs)
                D, K1, K2 = (x[: k1 - k0] for x in bufs[2:])
                token_elems(a, b, pr, pth, D, K1, K2)
                token_rows(a, b, D, K1, K2, st[: k1 - k0])
                n = k1 - k0
                forward_steps(
                    k0, n, False, a, b, pr, pth, st, trans, w, X, Y, run_, out, fbits, ed, fixed, mutab
                )
        forward_final(X, w, run_, out, upper_T, T)

    Z = np.zeros((S, N_Z))
    Z[:, 0] = rf
    g_inf = np.zeros(T)

    def backward():
        Zn = np.zeros_like(Z)
        if homog:
            backward_steps(T, T, True, pr0, pth0, D0, cst0, trans, bits, Z, Zn, g_inf, tabs)
            return
        bufs = [np.empty((nb, S, V)) for _ in range(5)]
        cst = np.empty((nb, S, 3))
        for k0, k1 in reversed(blocks):
            a, b = lr[k0:k1], lth[k0:k1]
            pr, pth = _exp_block(a, b, bufs)
            D, K1, K2 = (x[: k1 - k0] for x in bufs[2:])
            token_elems(a, b, pr, pth, D, K1, K2)  # K1, K2: scratch here
            block_consts(pr, D, rs, float(T), cst)
            backward_steps(k1, k1 - k0, False, pr, pth, D, cst, trans, bits, Z, Zn, g_inf, tabs)

    if threads >= 2:
        errors = []

        def guarded():
            try:
                forward()
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        worker = threading.Thread(target=guarded, name="chain-forward")
        worker.start()
        try:
            backward()
        finally:
            worker.join()
        if errors:
            raise errors[0]
    else:
        forward()
        backward()
    if not homog:
        masked_max(tabs, fbits, g_inf)
    Zs = Z[start_states]  # (B, 7)
    stat_g_sum = np.zeros((2, B, 2))
    if table:  # per-step dot products, then pairwise sums over t (as the level-by-level route)
        dots = np.empty((T, B, 4))
        table_dots(mutab, tabs, dots)
        sums = dots.sum(0)  # (B, 4)
        stat_g_sum[0], stat_g_sum[1, :, 0] = sums[:, :2], sums[:, 3]
        second = float(w @ sums[:, 2])
    else:
        stat_g_sum[0, :, 0], stat_g_sum[0, :, 1], stat_g_sum[1, :, 0] = Zs[:, 2], Zs[:, 3], Zs[:, 4]
        second = float(w @ Zs[:, 5])
    return dict(
        U1=Zs[:, :2].copy(), w=w, stat_g_sum=stat_g_sum, dbar=out[0, :T], state_tv=out[1], ctx_upper=out[2],
        upper_T=upper_T, dkl_seq=float(w @ run_[:, 0]), ac_ok=not (run_[:, 3] > 0).any(), g_inf=g_inf,
        eps=float(ed[0]), delta=float(ed[1]), second_order=second,
    )  # fmt: skip
