"""Evidence for THEORY.md section 9 (halved constants): an adversarial search and a 60+ digit re-check.

`trm_bounds.refined` holds the written proof and registers the halved bounds. This module
measures them, which is evidence, never a proof:

- `adversarial_pairs(n, seed)`: seeded exact pairs of the kinds that stress each proof step
  (dense noise, sparse flips, near-deterministic, zeros of pi_roll or of pi_theta, logits of
  1e3, and "tilted" pairs built like the tightness example with a parity reward), T 1..4,
  P 1..3, V 2..3, written with `log_softmax_log1p` so each row is a distribution to rounding.
- `exact_mp(...)`: every ingredient and every published and refined bound of one pair,
  trajectory by trajectory in mpmath (arbitrary exponent range, `dps` digits, raised until
  |Error| is stable), from the stored float64 log-probs, renormalised at that precision
  (`renormalize=True`, the distributions the rows stand for) or taken literally.
- `halved_constants_evidence()`: the search through the float64 engine, the worst ratio
  |Error| / refined bound per key, and the high-precision re-check of the worst instance.

Imports the exact engine, so it sits beside the reports, above `bounds` and `refined`.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import mpmath as mp
import numpy as np

from .bounds import UNIFIED_OF
from .exact import exact_quantities
from .refined import REFINED_OF, log_softmax_log1p

__all__ = [
    "ADVERSARIAL_KINDS",
    "ROUNDING_REL",
    "ROUNDING_ABS",
    "adversarial_pair",
    "adversarial_pairs",
    "exact_mp",
    "refined_ratios",
    "halved_constants_evidence",
]

ADVERSARIAL_KINDS = ("dense", "sparse", "near_det", "zeros_roll", "zeros_theta", "extreme", "tilted")
# Allowance for float64 rounding when comparing the engine's |Error| with a bound B:
# |Error| <= B (1 + ROUNDING_REL) + ROUNDING_ABS. The engine's Error carries a relative
# rounding of a few ulps of sum_t sum_c |d_t^theta - d_t^roll| |g_t| <= the bound; ROUNDING_ABS
# covers products of probabilities that fall into float64's subnormal range (< 2.2e-308).
ROUNDING_REL = 1e-12
ROUNDING_ABS = 1e-300


# --------------------------------------------------------------------------- adversarial pairs
def adversarial_pair(rng: np.random.Generator, kind: str, P: int, V: int, T: int):
    """One random exact pair of the given kind: (logp_roll, logp_theta, reward, prompt_probs).

    logp_*: T float64 arrays (P, V**(t-1), V) (INTERFACES.md layout), rows normalised with
    `log_softmax_log1p`; reward (P, V**T) in [0, 1]; prompt_probs (P,) (one prompt may get 0).
    """
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"kind must be one of {ADVERSARIAL_KINDS}, got {kind!r}")
    scale = {"near_det": 12.0, "extreme": 1e3, "tilted": 0.05}.get(kind, 1.5)
    zr = [scale * rng.standard_normal((P, V**k, V)) for k in range(T)]
    zt = []
    for k, z in enumerate(zr):
        if kind == "sparse":
            flip = rng.random(z.shape[:-1]) < 0.2
            zt.append(np.where(flip[..., None], 3.0 * z[..., ::-1], z))
        elif kind == "extreme":
            zt.append(z + rng.choice([1e-6, 1.0, 1e3], size=z.shape) * rng.standard_normal(z.shape))
        elif kind == "tilted":  # theta tilts toward token 1 at level 1 by a, later levels by b >= a
            tilt = rng.uniform(0.0, 0.6) * (1.0 if k == 0 else rng.uniform(1.0, 4.0))
            zt.append(z + tilt * np.arange(V) * rng.choice([-1.0, 1.0]))
        else:
            zt.append(z + 10 ** rng.uniform(-3, 0.3) * rng.standard_normal(z.shape))
    if kind in ("zeros_roll", "zeros_theta"):
        target = zr if kind == "zeros_roll" else zt
        for k, z in enumerate(target):
            kill = rng.random(z.shape) < 0.3
            kill[..., 0] = False  # every row keeps token 0
            target[k] = np.where(kill, -np.inf, z)
    if kind == "tilted":  # the tightness example's reward: parity of the tokens
        digits = np.arange(V**T)[:, None] // V ** np.arange(T)[None, ::-1] % V
        R = np.broadcast_to((digits.sum(-1) % 2).astype(np.float64), (P, V**T)).copy()
    elif rng.random() < 0.5:
        R = (rng.random((P, V**T)) < 0.5).astype(np.float64)
    else:
        R = rng.random((P, V**T))
    pp = rng.dirichlet(np.ones(P))
    if P > 1 and rng.random() < 0.3:
        pp[0] = 0.0
        pp /= pp.sum()
    return [log_softmax_log1p(z) for z in zr], [log_softmax_log1p(z) for z in zt], R, pp


def adversarial_pairs(n: int, seed: int = 0):
    """Yield (kind, logp_roll, logp_theta, reward, prompt_probs) for n seeded pairs, kinds in turn;
    P 1..3, V 2..3, T 1..4 (every third pair has T = 1 or P > 1 by chance)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        kind = ADVERSARIAL_KINDS[i % len(ADVERSARIAL_KINDS)]
        P, V, T = int(rng.integers(1, 4)), int(rng.integers(2, 4)), int(rng.integers(1, 5))
        yield (kind, *adversarial_pair(rng, kind, P, V, T))


def refined_ratios(out: dict) -> dict[str, float]:
    """{published key: max(|Error| - allowance, 0) / refined bound} from an `exact_quantities` dict.

    allowance = ROUNDING_REL * refined + ROUNDING_ABS, so a ratio above 1 is a violation
    beyond float64 rounding. A zero refined bound gives 0 (no excess error) or inf.
    """
    err = abs(out["error"])
    ratios = {}
    for key, rkey in REFINED_OF.items():
        b = out["bounds"][rkey]
        excess = max(err - ROUNDING_REL * b - ROUNDING_ABS, 0.0)
        ratios[key] = excess / b if b > 0 else (0.0 if excess == 0 else float("inf"))
    return ratios


# --------------------------------------------------------------------------- high precision
def exact_mp(logp_roll, logp_theta, reward, prompt_probs, *, dps: int = 60, renormalize: bool = True) -> dict:
    """Every quantity of one tiny pair at `dps`+ digits, trajectory by trajectory (mpmath).

    Definitions (THEORY.md sections 2-5), no shared code with the float64 engine:
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
    The working precision starts at `dps` and doubles (to 4096) until |Error| stands 15 digits
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
        if d >= 4096:  # |Error| below the resolution: report it with its uncertainty error_tol
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
        bounds = _published_mp(T, eps, delta, dkl_seq, min(one, dtv), dbar)
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


def _published_mp(T, eps, delta, dkl_seq, dtv_seq, dbar) -> dict:
    """Every published bound of THEORY.md section 5 by its formula, one term per t (mpmath)."""
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


# --------------------------------------------------------------------------- audit evidence
@lru_cache(maxsize=2)
def halved_constants_evidence(n: int = 420, seed: int = 9) -> dict:
    """The adversarial search and the high-precision re-check behind audit claim S9.halved_constants.

    Runs the float64 engine on `n` seeded `adversarial_pairs`, keeps per published key the
    worst |Error| / refined bound (beyond the ROUNDING allowance), and recomputes the pair
    that is worst for `unified` with `exact_mp` (60+ digits). About a second for n = 420.
    Returns {"instances", "worst" {key: ratio}, "worst_kind", "worst_shape" (P, V, T),
    "worst_float64", "worst_mp" (float of the mpmath ratio), "mp_dps", "violations"
    (pairs with some ratio > 1), "description"}.
    """
    worst = dict.fromkeys(REFINED_OF, 0.0)
    best = (-1.0, None)
    violations = 0
    for kind, lr, lt, R, pp in adversarial_pairs(n, seed):
        out = exact_quantities(lr, lt, R, pp, validate=False)
        ratios = refined_ratios(out)
        violations += any(r > 1.0 for r in ratios.values())
        for k, r in ratios.items():
            worst[k] = max(worst[k], r)
        if ratios["unified"] > best[0]:
            best = (ratios["unified"], (kind, lr, lt, R, pp))
    kind, lr, lt, R, pp = best[1]
    hp = exact_mp(lr, lt, R, pp)
    return {
        "instances": n,
        "worst": worst,
        "worst_kind": kind,
        "worst_shape": (int(pp.shape[0]), int(lr[0].shape[-1]), len(lr)),
        "worst_float64": best[0],
        "worst_mp": float(hp["ratios"]["unified"]),
        "mp_dps": int(hp["dps"]),
        "violations": violations,
        "description": (
            f"{n} seeded exact pairs (seed {seed}; {', '.join(ADVERSARIAL_KINDS)}; P 1..3, V 2..3, T 1..4) "
            f"through trm_bounds.exact, |Error| beyond {ROUNDING_REL:g} B + {ROUNDING_ABS:g}"
        ),
    }
