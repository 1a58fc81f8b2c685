"""Fused CPU kernel of the exact tree engine (numba, optional): one depth-first pass per subtree.

`trm_bounds.exact` computes, level by level, the forward context laws, the token
divergences and the backward values Q_t / V_t / g_t of docs/theory.md sections 2-5. This module
computes the same sums for every subtree below a split level s in one fused pass per level
of a small task (<= TASK_LEAVES leaves): each row of every level is read once, its token
terms (pi_roll, pi_theta, pi_theta - pi_roll, KL, TV) are computed once and kept in
per-thread scratch arrays until the backward pass, and nothing of size O(all leaves) is
allocated. Memory: O(TASK_LEAVES) per thread plus O(T) per task, beside the inputs.
The same pass also gives the second-order recursion W_t, E_t of `trm_bounds.second_order`
and the values the input checks need (row sums, NaN / +inf / > 0 log-probs, -inf entries),
so a call reads each level once.

The formulas are the engine's (`divergences._kl_terms`, `_tv_terms`, `exact._exp_diff`):
KL terms p (e^d - 1 - d) by series / expm1, +inf for p > 0 = q decided on the log-prob,
|pi_theta - pi_roll| = e^hi (1 - e^-gap). Below the split level the context differences
follow the parent's by d^theta(cv) - d^roll(cv) = d^theta(c) dp(v|c) + (d^theta - d^roll)(c)
pi_roll(v|c) (no transcendental call; rounding grows like the depth times the scale
d^theta dp + |d^theta - d^roll| pi_roll, so the cancellation-prone Error agrees with the
log-space form to a few ulp of sum_c |(d^theta - d^roll)(c) g(c)|). The summation order
differs from the torch path (serial within a task of <= TASK_LEAVES leaves, tasks summed
in a fixed order): results agree with it to ~1e-14 relative and do not depend on the
number of threads.

Compiled with FMA contraction only (`a * b + c` in one rounding; no reassociation): about
6% faster at 2^24 leaves, the last bits may differ between CPUs with and without FMA.

Tasks run in parallel (numba prange) over contiguous row ranges of the split level; each
task writes its own accumulator slots, reduced afterwards in task order.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:  # optional: pip install "trm-bounds[fast]"
    import numba
    from numba import njit, prange, types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

TASK_LEAVES = 2**12  # leaves per task: scratch (~130 B/leaf at V = 2) stays in L2, short serial sums
# accumulator rows per task and level (sums over contexts of one level)
DKL, DBAR, CTX, ERHO, LP, PDI, ERR, RATIO, GM, H0 = range(10)  # H0, H0+1, H0+2: h for the K values
N_SUMS = H0 + 3
_SERIES = np.array([2.0 / math.factorial(k + 2) for k in range(10)])  # e^d-1-d = d^2/2 sum c_k d^k
# e^g - 1 - g = E(g) + O(g), E = sum_{k even in 2..14} g^k / k!, O = sum_{k odd in 3..15} g^k / k!:
# truncation < 6e-18 relative for |g| < 0.5 (first omitted terms g^16/16!, g^17/17!)
_EVEN = np.array([1.0 / math.factorial(k) for k in range(2, 15, 2)])
_ODD = np.array([1.0 / math.factorial(k) for k in range(3, 16, 2)])
_SMALL_GAP = 0.5  # |log q - log p| below which the token terms use the series (one exp per token)


def available() -> bool:
    """True when the fused kernel can run (numba importable, not switched off by TRM_BOUNDS_JIT=0)."""
    return numba is not None and os.environ.get("TRM_BOUNDS_JIT", "1") != "0"


if numba is not None:

    @intrinsic
    def _f64_ptr(typingctx, addr):
        """The int64 address of a float64 buffer as a float64* (for numba.carray)."""
        sig = types.CPointer(types.float64)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return sig, codegen

    @njit(cache=True, inline="always")
    def _level(levels, k, V):
        """Level k as a (rows, V) C-contiguous view of the buffer `levels[k]` = (address, rows)."""
        return numba.carray(_f64_ptr(levels[k, 0]), (levels[k, 1], V))

    @njit(cache=True, inline="always", fastmath={"contract"})
    def _expm1_minus_x(d):
        """e^d - 1 - d to relative rounding (series below |d| = 0.1), as divergences.expm1_minus_x."""
        if abs(d) < 0.1:
            c = _SERIES
            s = c[9]
            s = s * d + c[8]
            s = s * d + c[7]
            s = s * d + c[6]
            s = s * d + c[5]
            s = s * d + c[4]
            s = s * d + c[3]
            s = s * d + c[2]
            s = s * d + c[1]
            s = s * d + c[0]
            return s * d * d * 0.5
        return math.expm1(d) - d

    @njit(cache=True, inline="always", fastmath={"contract"})
    def _emx_even_odd(g):
        """(E(g), O(g)): even and odd parts of e^g - 1 - g for |g| < 0.5, so that
        e^g - 1 - g = E + O and e^-g - 1 + g = E - O (Horner in g^2, relative rounding)."""
        c, o = _EVEN, _ODD
        g2 = g * g
        e = c[6]
        od = o[6]
        for k in range(5, -1, -1):
            e = e * g2 + c[k]
            od = od * g2 + o[k]
        return e * g2, od * g2 * g

    @njit(cache=True, inline="always", fastmath={"contract"})
    def _diff(b, a, eb, ea):
        """e^b - e^a from log-values b, a and eb ~ e^b, ea ~ e^a (exact._exp_diff):
        sign(b - a) e^max (1 - e^-|b - a|), 0 if both -inf; relative rounding, no cancellation."""
        if max(a, b) == -np.inf:
            return 0.0
        mag = max(ea, eb) * (-math.expm1(-abs(b - a)))  # |b - a| = inf when one side is -inf
        return -mag if b < a else mag

    @njit(cache=True, inline="always", fastmath={"contract"})
    def _row_terms(A, B, row, PR, PT, DP, o):
        """Token terms of context row `row` of level arrays A = log pi_roll, B = log pi_theta (rows, V).

        Fills PR[o], PT[o], DP[o] = pi_roll, pi_theta, pi_theta - pi_roll (V,); returns
        (kl, tv, zmass, viol, sum_roll, sum_theta, ok, zero_roll): zmass =
        sum_{v: pi_roll = 0} pi_theta (for E_roll|rho - 1|), viol: such a v has pi_theta > 0;
        sum_*: the row sums of the probabilities; ok: every log-prob is <= 0 (False on NaN,
        +inf or > 0: the row's numbers are then meaningless and the caller raises);
        zero_roll: some log pi_roll of the row is -inf.

        While the gap g = |x - y| < 0.5, one transcendental call per token: e^hi, and
        e^-g - 1 = -g + E - O, the KL term p (e^d - 1 - d) = p (E -+ O) from the series
        `_emx_even_odd` (e^lo = e^hi (1 + (e^-g - 1)), |pi_theta - pi_roll| = e^hi (1 - e^-g):
        no cancellation); beyond, e^hi and e^lo (then |e^hi - e^lo| >= 0.39 e^hi: the plain
        difference and (q - p) - p d are exact to a few ulp).
        """
        kl = 0.0
        tv = 0.0
        zmass = 0.0
        s_r = 0.0
        s_t = 0.0
        viol = False
        ok = True
        z_r = False
        for v in range(A.shape[1]):
            x, y = A[row, v], B[row, v]
            if not (x <= 0.0 and y <= 0.0):
                ok = False
            gap = 0.0
            emx = 0.0  # e^d - 1 - d for d = y - x, when gap < 0.5
            if max(x, y) == -np.inf:
                p = q = m = 0.0
            else:
                gap = abs(x - y)  # inf when exactly one side is -inf
                eh = math.exp(max(x, y))
                if gap < _SMALL_GAP:
                    ev, od = _emx_even_odd(gap)
                    e1 = (ev - od) - gap  # e^-gap - 1 in (-0.4, 0]
                    el = eh * (1.0 + e1)
                    m = eh * (-e1)  # |pi_theta - pi_roll|, no cancellation
                    emx = ev + od if y > x else ev - od
                else:
                    el = math.exp(min(x, y))
                    m = eh - el
                p, q = (eh, el) if x >= y else (el, eh)
            PR[o, v], PT[o, v] = p, q
            DP[o, v] = -m if y < x else m
            tv += m
            s_r += p
            s_t += q
            if x > -np.inf:
                if y == -np.inf:
                    kl += np.inf
                else:
                    if gap < _SMALL_GAP:  # KL term p (e^d - 1 - d), d = y - x
                        kl += p * emx
                    else:
                        kl += (q - p) - p * (y - x)  # |q - p| >= 0.39 max(p, q): a few ulp
            else:
                z_r = True
                kl += q
                zmass += q
                if y > -np.inf:
                    viol = True
        return kl, 0.5 * tv, zmass, viol, s_r, s_t, ok, z_r

    @njit(cache=True, parallel=True, error_model="numpy", fastmath={"contract"})
    def run_tasks(
        lr, lt, V, R, s, T, K, ldr_s, ldt_s, pmax_s, psum_s, bounds, need_h,
        mdelta, mdelta_avg, sums, gmax, epsdel, J, flags, Qr_out, Qt_out, WE_out, joint_row, check, n_slots,
    ):  # fmt: skip
        """Every subtree below level s, rows bounds[i]..bounds[i+1]-1 of level s for task i.

        lr, lt: (T, 2) int64 (address, rows) of the T levels (P V**k, V) (`levels_list`);
        V: vocabulary size; R: (P V**T,) leaf rewards; ldr_s,
        ldt_s, pmax_s, psum_s: (n_s,) log context laws / path KL max and sum at level s.
        Writes per task: sums (n_tasks, N_SUMS, T), gmax (n_tasks, T), epsdel (n_tasks, 2),
        J (n_tasks, 2), flags (n_tasks, 2) = (violation of pi_theta << pi_roll on a
        roll-reachable context, some pi_roll = 0) below level s;
        check (n_tasks, 2, T) = max over the task's rows of |sum_v p - 1| per (roll, theta)
        and level, +inf where a log-prob is NaN, +inf or > 0 (the caller raises);
        per row of level s: Qr_out (K, n_s) = V_{s+1} under pi_roll of (R, M R, M),
        Qt_out (n_s,) = V_{s+1}^theta of R, WE_out (2, n_s) = the second-order values
        W_{s+1}, E_{s+1} (trm_bounds.second_order), joint_row (n_s,) = 1/2 sum over the
        row's leaves of |P^theta - P^roll|. mdelta / mdelta_avg: NaN = unused. n_slots: scratch
        copies, > every numba.get_thread_id() of the call (numba's pool size).

        Within a task the levels are walked forward then backward over contiguous row
        ranges (rows of level k below rows [a, b) of level s: [a V**j, b V**j), j = k - s),
        with the per-row values in per-thread scratch arrays (cache-resident, allocated once
        per call). Context differences d^theta - d^roll below level s follow the parent's:
        (d^theta - d^roll)(c v) = d^theta(c) (pi_theta - pi_roll)(v|c) + (d^theta - d^roll)(c) pi_roll(v|c)
        (no transcendental call); reachability is decided on the log-probs (-inf), never on
        underflowed products.
        """
        n_tasks = bounds.shape[0] - 1
        max_rows = 1
        for i in range(n_tasks):
            max_rows = max(max_rows, bounds[i + 1] - bounds[i])
        n_max = 0
        for j in range(T - s):
            n_max += max_rows * V**j
        nl_max = max_rows * V ** (T - s)
        # per-thread scratch, indexed by numba.get_thread_id(); rows: DR, DT, DD, TV, PMX, PSM
        F_all = np.empty((n_slots, 6, n_max))
        RR_all = np.empty((n_slots, 2, n_max), np.bool_)  # reachable under pi_roll / pi_theta
        P_all = np.empty((n_slots, 3, n_max, V))  # PR, PT, DP
        Q_all = np.empty((n_slots, K + 3, nl_max))  # QR (K rows), QT, W, E
        for i in prange(n_tasks):
            tid = numba.get_thread_id()
            Fs, RRs, Ps, Qs = F_all[tid], RR_all[tid], P_all[tid], Q_all[tid]
            DR, DT, DD, TVS, PMX, PSM = Fs[0], Fs[1], Fs[2], Fs[3], Fs[4], Fs[5]
            RRr, RRt = RRs[0], RRs[1]
            PR, PT, DP = Ps[0], Ps[1], Ps[2]
            QT, WW, EE = Qs[K], Qs[K + 1], Qs[K + 2]
            a, b = bounds[i], bounds[i + 1]
            nrow = b - a
            acc = sums[i]
            gm = gmax[i]
            chk = check[i]
            eps, delta, bad, zr_any = 0.0, 0.0, False, False
            o_next = 0
            for j in range(T - s):  # forward over levels k = s + j; level k rows at o .. o + nk - 1
                k = s + j
                A, B = _level(lr, k, V), _level(lt, k, V)
                o, r0, nk = o_next, a * V**j, nrow * V**j
                o_next = o + nk
                if j == 0:
                    for n in range(nrow):
                        RRr[n], RRt[n] = ldr_s[a + n] > -np.inf, ldt_s[a + n] > -np.inf
                        DR[n], DT[n] = math.exp(ldr_s[a + n]), math.exp(ldt_s[a + n])
                        PMX[n], PSM[n] = pmax_s[a + n], psum_s[a + n]
                else:  # context laws: products (weights), differences from the parent's, reachability
                    Ap, Bp = _level(lr, k - 1, V), _level(lt, k - 1, V)
                    op, rp0 = o - nk // V, a * V ** (j - 1)
                    for par in range(nk // V):
                        q = op + par
                        for v in range(V):
                            m = o + par * V + v
                            RRr[m] = RRr[q] and Ap[rp0 + par, v] > -np.inf
                            RRt[m] = RRt[q] and Bp[rp0 + par, v] > -np.inf
                            DR[m] = DR[q] * PR[q, v]
                            DT[m] = DT[q] * PT[q, v]
                            DD[m] = DT[q] * DP[q, v] + DD[q] * PR[q, v]
                            if K > 1:  # path KL max / sum: masks only
                                PMX[m], PSM[m] = PMX[q], PSM[q]
                s_dkl, s_dbar, s_ctx, s_erho, gap_r, gap_t = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
                for n in range(nk):
                    m = o + n
                    kl, tv, zmass, vl, sr, st, ok, zr = _row_terms(A, B, r0 + n, PR, PT, DP, m)
                    if not ok:
                        gap_r = gap_t = np.inf
                    gap_r = max(gap_r, abs(sr - 1.0))
                    gap_t = max(gap_t, abs(st - 1.0))
                    zr_any |= zr
                    d_r = DR[m]
                    if RRr[m] or RRt[m]:  # reachable under either policy
                        eps = max(eps, tv)
                        delta = max(delta, kl)
                    if d_r > 0:
                        s_dkl += d_r * kl
                    s_dbar += d_r * tv
                    if j == 0:
                        DD[m] = _diff(ldt_s[a + n], ldr_s[a + n], DT[m], DR[m])
                    s_ctx += 0.5 * abs(DD[m])
                    s_erho += d_r * (2.0 * tv - zmass)
                    if vl and RRr[m]:
                        bad = True
                    TVS[m] = tv
                    if K > 1:
                        PMX[m], PSM[m] = max(PMX[m], kl), PSM[m] + kl
                acc[DKL, k] += s_dkl
                acc[DBAR, k] += s_dbar
                acc[CTX, k] += s_ctx
                acc[ERHO, k] += s_erho
                chk[0, k] = max(chk[0, k], gap_r)
                chk[1, k] = max(chk[1, k], gap_t)
            # leaves: children of the rows of level T - 1 (at o_last .. o_next - 1)
            j = T - 1 - s
            per_s = V ** (T - s)  # leaves per row of level s
            o = o_next - nrow * per_s // V
            Jr, Jt = 0.0, 0.0
            l0 = a * per_s
            rows_per_s = per_s // V  # rows of level T - 1 below one row of level s
            for rs in range(nrow):
                jrow = 0.0
                for par in range(rs * rows_per_s, (rs + 1) * rows_per_s):
                    q = o + par
                    M = 1.0
                    if K > 1:
                        if mdelta == mdelta and not PMX[q] <= mdelta:
                            M = 0.0
                        if mdelta_avg == mdelta_avg and not PSM[q] / T <= mdelta_avg:
                            M = 0.0
                    for v in range(V):
                        n = par * V + v
                        rv = R[l0 + n]
                        Jr += DR[q] * PR[q, v] * rv
                        Jt += DT[q] * PT[q, v] * rv
                        jrow += 0.5 * abs(DT[q] * DP[q, v] + DD[q] * PR[q, v])
                        Qs[0, n] = rv
                        QT[n] = rv
                        WW[n] = 0.0
                        EE[n] = 0.0
                        if K > 1:
                            Qs[1, n] = M * rv
                            Qs[2, n] = M
                joint_row[a + rs] = jrow
            # backward, level by level, in place: row n of level k reads slots nV .. nV+V-1, writes slot n
            for j in range(T - 1 - s, -1, -1):
                k = s + j
                nk = nrow * V**j
                o = o - nk if j < T - 1 - s else o  # first row of level k
                s_lp, s_pdi, s_err, s_rat, s_gm, g_inf = 0.0, 0.0, 0.0, 0.0, 0.0, gm[k]
                h0, h1, h2 = 0.0, 0.0, 0.0
                for n in range(nk):
                    m = o + n
                    g0 = g1 = 0.0
                    v0 = v1 = v2 = 0.0
                    rt, vt, w, e = 0.0, 0.0, TVS[m], 0.0
                    t0 = t1 = t2 = 0.0
                    for v in range(V):
                        c = n * V + v
                        pr, pt, dp = PR[m, v], PT[m, v], DP[m, v]
                        q0 = Qs[0, c]
                        g0 += dp * q0
                        v0 += pr * q0
                        rt += dp * (QT[c] - q0)
                        vt += pt * QT[c]
                        wc = WW[c]
                        w += pr * wc
                        e += abs(dp) * wc + pr * EE[c]
                        if need_h:
                            t0 += pt * q0
                        if K > 1:
                            g1 += dp * Qs[1, c]
                            v1 += pr * Qs[1, c]
                            v2 += pr * Qs[2, c]
                            if need_h:
                                t1 += pt * Qs[1, c]
                                t2 += pt * Qs[2, c]
                    d_r = DR[m]
                    s_lp += d_r * g0
                    s_pdi += DT[m] * g0
                    s_err += DD[m] * g0
                    s_rat += d_r * rt
                    if RRr[m] or RRt[m]:
                        g_inf = max(g_inf, abs(g0))
                    if need_h:
                        h0 += d_r * t0
                        h1 += d_r * t1
                        h2 += d_r * t2
                    s_gm += d_r * g1
                    Qs[0, n] = v0
                    if K > 1:
                        Qs[1, n] = v1
                        Qs[2, n] = v2
                    QT[n] = vt
                    WW[n] = w
                    EE[n] = e
                acc[LP, k] += s_lp
                acc[PDI, k] += s_pdi
                acc[ERR, k] += s_err
                acc[RATIO, k] += s_rat
                acc[GM, k] += s_gm
                acc[H0, k] += h0
                if K > 1:
                    acc[H0 + 1, k] += h1
                    acc[H0 + 2, k] += h2
                gm[k] = g_inf
            for n in range(nrow):
                for jj in range(K):
                    Qr_out[jj, a + n] = Qs[jj, n]
                Qt_out[a + n] = QT[n]
                WE_out[0, a + n] = WW[n]
                WE_out[1, a + n] = EE[n]
            epsdel[i, 0], epsdel[i, 1] = eps, delta
            J[i, 0], J[i, 1] = Jr, Jt
            flags[i, 0], flags[i, 1] = bad, zr_any


def call(n_threads: int, lr, lt, *args) -> None:
    """`run_tasks(lr, lt, V, *args)` on min(n_threads, numba's pool) threads, tasks handed out 4
    at a time. lr, lt: the T levels as (rows, V) float64 arrays (`level_table`); they are kept
    alive here for the whole call, which reads them through their addresses."""
    (dr, keep_r), (dt, keep_t) = level_table(lr), level_table(lt)
    n = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with numba.parallel_chunksize(4):
            run_tasks(dr, dt, keep_r[-1].shape[1], *args, numba.config.NUMBA_NUM_THREADS)
    finally:
        numba.set_num_threads(before)
    del keep_r, keep_t


def task_bounds(n_rows: int, leaves_per_row: int) -> np.ndarray:
    """Boundaries (n_tasks + 1,) of contiguous row ranges with <= TASK_LEAVES leaves (>= 1 row) each."""
    per = max(1, TASK_LEAVES // max(1, leaves_per_row))
    return np.unique(np.append(np.arange(0, n_rows, per, dtype=np.int64), n_rows))


def level_table(levels) -> tuple[np.ndarray, list[np.ndarray]]:
    """((T, 2) int64 table of (address, rows) of C-contiguous float64 copies/views, those arrays).

    The kernel reads level k as the (rows, V) array at that address (`_level`). A plain int64
    table instead of a numba typed list: building a typed list compiles its methods in every
    new process (~1 s of CPU before the first exact call); this needs nothing compiled. The
    arrays must stay referenced while the kernel runs (`call` holds them).
    """
    arrays = [np.ascontiguousarray(x, dtype=np.float64) for x in levels]
    table = np.array([(x.ctypes.data, x.shape[0]) for x in arrays], dtype=np.int64).reshape(-1, 2)
    return table, arrays
