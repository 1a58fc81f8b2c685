"""Fused CPU kernel of the exact tree engine (numba, optional): one depth-first pass per subtree.

`trm_bounds.exact` computes, level by level, the forward context laws, the token
divergences and the backward values Q_t / V_t / g_t of docs/theory.md sections 2-5. This module
computes the same sums for every subtree below a split level s in one fused pass per level
of a small task (<= TASK_LEAVES leaves): each row of every level is read once, its token
terms (pi_roll, pi_theta, pi_theta - pi_roll, KL, TV) are computed once and kept in
task-sized scratch arrays until the backward pass, and nothing of size O(all leaves) is
allocated. Memory: O(TASK_LEAVES) per thread plus O(T) per task, beside the inputs.

The formulas are the engine's, element by element (`divergences._kl_terms`, `_tv_terms`,
`exact._exp_diff`): log-space context differences d^theta - d^roll = sign e^hi (1 - e^-gap),
KL terms p (e^d - 1 - d) by series / expm1, +inf for p > 0 = q decided on the log-prob.
Only the summation order differs (serial within a task of <= TASK_LEAVES leaves, tasks
summed in a fixed order): results agree with the torch path to ~1e-14 relative and do not
depend on the number of threads.

Tasks run in parallel (numba prange) over contiguous row ranges of the split level; each
task writes its own accumulator slots, reduced afterwards in task order.
"""

from __future__ import annotations

import math
import os

import numpy as np

try:  # optional: pip install "trm-bounds[fast]"
    import numba
    from numba import njit, prange
    from numba.typed import List as _List
except ImportError:  # pragma: no cover - exercised where numba is absent
    numba = None

TASK_LEAVES = 2**12  # leaves per task: scratch (~40 B/leaf) stays in cache, serial sums stay short
# accumulator rows per task and level (sums over contexts of one level)
DKL, DBAR, CTX, ERHO, LP, PDI, ERR, RATIO, GM, H0 = range(10)  # H0, H0+1, H0+2: h for the K values
N_SUMS = H0 + 3
_SERIES = np.array([2.0 / math.factorial(k + 2) for k in range(10)])  # e^d-1-d = d^2/2 sum c_k d^k


def available() -> bool:
    """True when the fused kernel can run (numba importable, not switched off by TRM_BOUNDS_JIT=0)."""
    return numba is not None and os.environ.get("TRM_BOUNDS_JIT", "1") != "0"


if numba is not None:

    @njit(cache=True, inline="always")
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

    @njit(cache=True, inline="always")
    def _diff(b, a, eb, ea):
        """e^b - e^a from log-values b, a and eb ~ e^b, ea ~ e^a (exact._exp_diff):
        sign(b - a) e^max (1 - e^-|b - a|), 0 if both -inf; relative rounding, no cancellation."""
        if max(a, b) == -np.inf:
            return 0.0
        mag = max(ea, eb) * (-math.expm1(-abs(b - a)))  # |b - a| = inf when one side is -inf
        return -mag if b < a else mag

    @njit(cache=True, inline="always")
    def _row_terms(A, B, row, PR, PT, DP, o, any_roll_zero):
        """Token terms of context row `row` of level arrays A = log pi_roll, B = log pi_theta (rows, V).

        Fills PR[o], PT[o], DP[o] = pi_roll, pi_theta, pi_theta - pi_roll (V,); returns
        (kl, tv, zmass, viol): zmass = sum_{v: pi_roll = 0} pi_theta (for E_roll|rho - 1|),
        viol: such a v has pi_theta > 0.
        """
        kl = 0.0
        tv = 0.0
        zmass = 0.0
        viol = False
        for v in range(A.shape[1]):
            x, y = A[row, v], B[row, v]
            if max(x, y) == -np.inf:
                p = q = m = 0.0
            else:
                # one exp and one expm1 per token: e^lo = e^hi (1 + e1) while the gap is small
                gap = abs(x - y)  # inf when exactly one side is -inf
                e1 = math.expm1(-gap)  # in [-1, 0]
                eh = math.exp(max(x, y))
                el = eh * (1.0 + e1) if gap < 0.5 else math.exp(min(x, y))
                m = eh * (-e1)  # |pi_theta - pi_roll|, no cancellation
                p, q = (eh, el) if x >= y else (el, eh)
            PR[o, v], PT[o, v] = p, q
            DP[o, v] = -m if y < x else m
            tv += m
            if x > -np.inf:
                if y == -np.inf:
                    kl += np.inf
                else:
                    d = y - x  # KL term p (e^d - 1 - d)
                    if d > 1.0:
                        kl += (q - p) - p * d
                    elif abs(d) < 0.1:
                        kl += p * _expm1_minus_x(d)
                    elif d < 0:
                        kl += p * (e1 - d)  # expm1(d) = e1 exactly here (d = -gap)
                    else:
                        kl += p * (-e1 / (1.0 + e1) - d)  # expm1(d) = 1/e^-d - 1, e^-d >= 1/e
            else:
                kl += q
                if any_roll_zero:
                    zmass += q
                    if y > -np.inf:
                        viol = True
        return kl, 0.5 * tv, zmass, viol

    @njit(cache=True, parallel=True)
    def run_tasks(
        lr, lt, R, s, T, K, ldr_s, ldt_s, pmax_s, psum_s, bounds, full, any_roll_zero, need_h,
        mdelta, mdelta_avg, sums, gmax, epsdel, J, viol, Qr_out, Qt_out, joint_row,
    ):  # fmt: skip
        """Every subtree below level s, rows bounds[i]..bounds[i+1]-1 of level s for task i.

        lr, lt: typed lists of the T levels (P V**k, V); R: (P V**T,) leaf rewards; ldr_s,
        ldt_s, pmax_s, psum_s: (n_s,) log context laws / path KL max and sum at level s.
        Writes per task: sums (n_tasks, N_SUMS, T), gmax (n_tasks, T), epsdel (n_tasks, 2),
        J (n_tasks, 2), viol (n_tasks,); per row of level s: Qr_out (K, n_s) = V_{s+1} under
        pi_roll of (R, M R, M), Qt_out (n_s,) = V_{s+1}^theta of R, joint_row (n_s,) =
        1/2 sum over the row's leaves of |P^theta - P^roll|. mdelta / mdelta_avg: NaN = unused.

        Within a task the levels are walked forward then backward over contiguous row
        ranges (rows of level k below rows [a, b) of level s: [a V**j, b V**j), j = k - s),
        with the per-row values in task-sized scratch arrays (cache-resident).
        """
        V = lr[0].shape[1]
        for i in prange(bounds.shape[0] - 1):
            a, b = bounds[i], bounds[i + 1]
            nrow = b - a
            offs = np.zeros(T - s + 1, np.int64)  # level k = s + j rows at offs[j] .. offs[j+1]-1
            for j in range(T - s):
                offs[j + 1] = offs[j] + nrow * V**j
            n_tot = offs[T - s]
            LDR = np.empty(n_tot)
            LDT = np.empty(n_tot)
            PMX = np.empty(n_tot)  # path max / sum of token KL, this row included
            PSM = np.empty(n_tot)
            DR = np.empty(n_tot)
            DT = np.empty(n_tot)
            DD = np.empty(n_tot)
            RCH = np.empty(n_tot, np.bool_)
            PR = np.empty((n_tot, V))
            PT = np.empty((n_tot, V))
            DP = np.empty((n_tot, V))
            acc = sums[i]
            gm = gmax[i]
            eps, delta, bad = 0.0, 0.0, False
            for j in range(T - s):  # forward over levels k = s + j
                k = s + j
                A, B = lr[k], lt[k]
                o, r0, nk = offs[j], a * V**j, nrow * V**j
                if j == 0:
                    for n in range(nrow):
                        LDR[o + n], LDT[o + n] = ldr_s[a + n], ldt_s[a + n]
                        DR[o + n], DT[o + n] = math.exp(ldr_s[a + n]), math.exp(ldt_s[a + n])
                        PMX[o + n], PSM[o + n] = pmax_s[a + n], psum_s[a + n]
                else:  # context laws: log-sums (reachability, differences) and products (weights)
                    Ap, Bp = lr[k - 1], lt[k - 1]
                    op, rp0 = offs[j - 1], a * V ** (j - 1)
                    for par in range(nk // V):
                        q = op + par
                        for v in range(V):
                            m = o + par * V + v
                            LDR[m] = LDR[q] + Ap[rp0 + par, v]
                            LDT[m] = LDT[q] + Bp[rp0 + par, v]
                            DR[m] = DR[q] * PR[q, v]
                            DT[m] = DT[q] * PT[q, v]
                            PMX[m], PSM[m] = PMX[q], PSM[q]
                s_dkl, s_dbar, s_ctx, s_erho = 0.0, 0.0, 0.0, 0.0
                for n in range(nk):
                    m = o + n
                    ld_a, ld_b, d_r, d_t = LDR[m], LDT[m], DR[m], DT[m]
                    kl, tv, zmass, vl = _row_terms(A, B, r0 + n, PR, PT, DP, m, any_roll_zero)
                    reach = full or (ld_a > -np.inf) or (ld_b > -np.inf)
                    if reach:
                        eps = max(eps, tv)
                        delta = max(delta, kl)
                    if d_r > 0:
                        s_dkl += d_r * kl
                    s_dbar += d_r * tv
                    dd = _diff(ld_b, ld_a, d_t, d_r)
                    s_ctx += 0.5 * abs(dd)
                    er = 2.0 * tv
                    if any_roll_zero:
                        er -= zmass
                        if vl and ld_a > -np.inf:
                            bad = True
                    s_erho += d_r * er
                    DD[m], RCH[m] = dd, reach
                    PMX[m], PSM[m] = max(PMX[m], kl), PSM[m] + kl
                acc[DKL, k] += s_dkl
                acc[DBAR, k] += s_dbar
                acc[CTX, k] += s_ctx
                acc[ERHO, k] += s_erho
            # leaves: children of the rows of level T - 1
            j = T - 1 - s
            A, B = lr[T - 1], lt[T - 1]
            o, rp0 = offs[j], a * V**j
            per_s = V ** (T - s)  # leaves per row of level s
            nl = nrow * per_s
            QR = np.empty((K, nl))
            QT = np.empty(nl)
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
                        la = LDR[q] + A[rp0 + par, v]
                        lb = LDT[q] + B[rp0 + par, v]
                        pa = DR[q] * PR[q, v]
                        pb = DT[q] * PT[q, v]
                        rv = R[l0 + n]
                        Jr += pa * rv
                        Jt += pb * rv
                        jrow += 0.5 * abs(_diff(lb, la, pb, pa))
                        QR[0, n] = rv
                        QT[n] = rv
                        if K > 1:
                            QR[1, n] = M * rv
                            QR[2, n] = M
                joint_row[a + rs] = jrow
            # backward, level by level, in place: row n of level k reads QR[:, nV .. nV+V-1], writes QR[:, n]
            g = np.zeros(3)
            vr = np.zeros(3)
            for j in range(T - 1 - s, -1, -1):
                k = s + j
                o = offs[j]
                s_lp, s_pdi, s_err, s_rat, s_gm, g_inf = 0.0, 0.0, 0.0, 0.0, 0.0, gm[k]
                for n in range(nrow * V**j):
                    m = o + n
                    g[:] = 0.0
                    vr[:] = 0.0
                    rt, vt = 0.0, 0.0
                    for v in range(V):
                        c = n * V + v
                        q0 = QR[0, c]
                        g[0] += DP[m, v] * q0
                        vr[0] += PR[m, v] * q0
                        for jj in range(1, K):
                            g[jj] += DP[m, v] * QR[jj, c]
                            vr[jj] += PR[m, v] * QR[jj, c]
                        rt += DP[m, v] * (QT[c] - q0)
                        vt += PT[m, v] * QT[c]
                    d_r = DR[m]
                    s_lp += d_r * g[0]
                    s_pdi += DT[m] * g[0]
                    s_err += DD[m] * g[0]
                    s_rat += d_r * rt
                    if RCH[m]:
                        g_inf = max(g_inf, abs(g[0]))
                    if need_h:
                        for jj in range(K):
                            hj = 0.0
                            for v in range(V):
                                hj += PT[m, v] * QR[jj, n * V + v]
                            acc[H0 + jj, k] += d_r * hj
                    if K > 1:
                        s_gm += d_r * g[1]
                    for jj in range(K):
                        QR[jj, n] = vr[jj]
                    QT[n] = vt
                acc[LP, k] += s_lp
                acc[PDI, k] += s_pdi
                acc[ERR, k] += s_err
                acc[RATIO, k] += s_rat
                acc[GM, k] += s_gm
                gm[k] = g_inf
            for n in range(nrow):
                for jj in range(K):
                    Qr_out[jj, a + n] = QR[jj, n]
                Qt_out[a + n] = QT[n]
            epsdel[i, 0], epsdel[i, 1] = eps, delta
            J[i, 0], J[i, 1] = Jr, Jt
            viol[i] = bad


def call(n_threads: int, *args) -> None:
    """`run_tasks(*args)` on min(n_threads, numba's pool) threads, tasks handed out 4 at a time."""
    n = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with numba.parallel_chunksize(4):
            run_tasks(*args)
    finally:
        numba.set_num_threads(before)


def task_bounds(n_rows: int, leaves_per_row: int) -> np.ndarray:
    """Boundaries (n_tasks + 1,) of contiguous row ranges with <= TASK_LEAVES leaves (>= 1 row) each."""
    per = max(1, TASK_LEAVES // max(1, leaves_per_row))
    return np.unique(np.append(np.arange(0, n_rows, per, dtype=np.int64), n_rows))


def levels_list(levels):
    """numba typed list of C-contiguous float64 (rows, V) numpy arrays."""
    out = _List()
    for x in levels:
        out.append(np.ascontiguousarray(x, dtype=np.float64))
    return out
