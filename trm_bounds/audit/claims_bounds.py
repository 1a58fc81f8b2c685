"""The audited claims about the bounds themselves: C01-C11, C22, C24 and section 9.

Each function returns `Claim`s with a verdict and evidence computed now: values from
`trm_bounds.bounds`, sympy results from `trm_bounds.symbolic`, the audit's search
(`trm_bounds.audit.search`) and the measurements of `trm_bounds.audit.evidence` (through
`trm_bounds.audit.claim.EVIDENCE`). `trm_bounds.audit.claims.audit` puts them in order.
"""

from __future__ import annotations

import numpy as np

from .. import bounds as nb
from .. import refined, symbolic
from .claim import Claim, measured, measured_text
from .evidence.refined import halved_constants_evidence
from .search import Search
from .tables import TableCell, bound_value

__all__ = ["bound_claims", "c09_claims", "c22_claims"]


def _d(key: str) -> symbolic.Derivation:
    return symbolic.get_derivation(key)


def _from_derivation(cid, claim, key, source, verdict=None) -> Claim:
    d = _d(key)
    v = verdict or {"holds": "holds", "fails": "fails", "imprecise": "imprecise"}[d.status]
    return Claim(cid, claim, v, f"[{d.method}] {d.detail}", source)


def _c01(search: Search) -> list[Claim]:
    provided = measured("C01")
    claims = []
    for key in nb.PUBLISHED_BOUNDS:
        worst, n, parts = (
            search.worst_ratio[key],
            search.instances,
            [f"self: worst |Error|/bound = {search.worst_ratio[key]:.4f} over {search.description}"],
        )
        pending = True
        for label, res in provided:
            if isinstance(res, Exception):
                parts.append(f"{label} raised {type(res).__name__}: {res}")
            elif isinstance(res, dict) and key in res:
                r = res[key]
                worst, n, pending = max(worst, float(r["worst_ratio"])), n + int(r.get("instances", 0)), False
                parts.append(
                    f"{label}: worst ratio {float(r['worst_ratio']):.4f} over {r.get('instances')} instances "
                    f"({r.get('description', '')})"
                )
        if pending:
            parts.append(
                "pending: exact-engine measurements (trm_bounds.audit.evidence.exact.c01_evidence) "
                "not available"
            )
        verdict = "fails" if worst > 1.0 + 1e-9 else "holds"
        parts.append("a numeric search, not a proof" if verdict == "holds" else "counterexample found")
        claims.append(
            Claim(
                f"C01.{key}",
                f"{key} bounds |Error| = |J(theta) - J(roll) - L'(theta)|",
                verdict,
                "; ".join(parts),
                "v1-v3 theorems (docs/theory.md section 5)",
            )
        )
    return claims


def _claims_symbolic() -> list[Claim]:
    pm = _d("pm_closed_forms")
    ci = _d("integral_bound")
    return [
        Claim(
            "C02.pm_kl",
            "B_PM^KL = 4/3 T^1.5 delta when delta <= 2/T",
            "imprecise",
            f"[{pm.method}] {pm.detail} Regime: {_d('pm_regime').detail} Integral step: {ci.detail}",
            "v1-v3",
        ),
        Claim(
            "C02.pm_tv",
            "B_PM^TV = 8/3 T^1.5 eps sqrt(delta/2) when delta <= 2/T",
            "imprecise",
            f"[{pm.method}] upper estimate, not equality (same integral step); at T = 4096, delta = 1e-4, "
            "eps = 5e-3: "
            f"exact {float(nb.pm_tv(4096, 5e-3, 1e-4)):.6f} vs closed "
            f"{float(nb.pm_tv_closed_form(4096, 5e-3, 1e-4)):.6f}",
            "v3",
        ),
        _from_derivation(
            "C03",
            "Mixed closed forms; caps inactive iff delta <= 2 and D_KL^seq <= 2",
            "mix_closed_forms",
            "v1, v3",
        ),
        _from_derivation(
            "C04.regimes", "Coupling: T eps <= 1 gives B_Coup = 2 T (T-1) eps^2", "coupling_regimes", "v3"
        ),
        _from_derivation(
            "C04.le_4Teps", "Coupling: T eps > 1 gives B_Coup <= 4 T eps", "coupling_le_4Teps", "v3"
        ),
        _from_derivation(
            "C04.le_4Teps_plus_2",
            "Coupling proof: B_Coup <= 4 T eps + 2",
            "coupling_le_4Teps_plus_2",
            "v3 proof",
            verdict="caveat",
        ),
        _from_derivation(
            "C04.cap_position",
            "t* = floor(1/eps) + 1 is where the cap activates",
            "coupling_cap_position",
            "v3",
        ),
        _from_derivation(
            "C05.crossover", "Adaptive crossover at T - t = delta / (2 eps^2)", "adaptive_crossover", "v3"
        ),
        _from_derivation(
            "C05.pinsker_tight",
            "eps = sqrt(delta/2): crossover at 1",
            "adaptive_crossover_pinsker_tight",
            "v3",
        ),
        _from_derivation(
            "C06.recovery_kl",
            "Dbar_t = min(1, sqrt(delta/2)) turns B_Adap^KL into B_PM^KL",
            "recovery_adaptive_kl_to_pm_kl",
            "v2, v3",
        ),
        _from_derivation(
            "C06.recovery_tv",
            "Dbar_t = eps turns B_Adap^TV into B_Coup",
            "recovery_adaptive_tv_to_coupling",
            "v3",
        ),
        _from_derivation(
            "C06.star_le_min", "B_Adap^* <= min(B_Adap^KL, B_Adap^TV)", "adaptive_star_le_min", "v3"
        ),
        _from_derivation(
            "C08.sum",
            "worst-case Adaptive sum <= (T - 2/delta) + 4/(3 delta) for 2/delta <= T",
            "worst_case_adaptive_sum",
            "v2",
        ),
        _from_derivation(
            "C08.regimes",
            "worst-case Adaptive: delta < 2/T recovers 4/3 T^1.5 delta; prefactor 4 when delta >= 2",
            "worst_case_adaptive_regimes",
            "v2",
        ),
    ]


def _c07() -> Claim:
    T, delta = 64, 0.05
    dbar_max = np.full(T, min(1.0, np.sqrt(delta / 2.0)))
    a, p = float(nb.adaptive_kl(dbar_max, delta)), float(nb.pm_kl(T, delta))
    dbar_big = np.r_[np.full(T - 1, 0.3), 0.0]
    a2, l2 = float(nb.adaptive_kl(dbar_big, 3.0)), float(nb.linear_dbar(dbar_big))
    return Claim(
        "C07",
        "v2: the Adaptive bound is strictly tighter than both PM and Linear",
        "imprecise",
        f"B_Adap^KL <= B_PM^KL and <= 4 sum_t Dbar_t always (Dbar_t <= min(1, sqrt(delta/2)), weights <= 1), "
        f"but not strictly: counterexample 1, Dbar_t = min(1, sqrt(delta/2)) (T = {T}, delta = {delta}): "
        f"Adaptive {a:.12g} = PM {p:.12g}; counterexample 2, delta = 3 >= 2 and Dbar_T = 0: Adaptive "
        f"{a2:.12g} "
        f"= Linear (data form) {l2:.12g}.",
        "v2",
    )


def _c08_ratio() -> Claim:
    T, d = 4096, 0.01
    worst = 4.0 * np.sqrt(d / 2.0) * float(nb.adaptive_worst_case_sum(T, d))
    pm_c, closed = float(nb.pm_kl(T, d)), float(nb.pm_kl_closed_form(T, d))
    return Claim(
        "C08.ratio",
        "'about 1139 vs 3495, 3x' at delta = 0.01",
        "caveat",
        f"computed worst-case Adaptive {worst:.2f} and PM closed form {closed:.2f}: ratio "
        f"{closed / worst:.3f}. "
        f"The gain comes from the caps, not from adaptivity: delta = 0.01 > 2/T = {2 / T:.2e}, so the closed "
        f"form is outside its regime, and the capped B_PM^KL itself is {pm_c:.2f} (ratio to the Adaptive "
        f"estimate {pm_c / worst:.4f}).",
        "v2 text",
    )


def _c09(cells: list[TableCell]) -> list[Claim]:
    to_v = {"match": "holds", "rounding": "imprecise", "mismatch": "fails"}
    return [
        Claim(
            c.claim_id,
            f"{c.table}: {c.row}, {c.column} = {c.published}",
            to_v[c.verdict],
            f"computed {c.computed:.6g} vs printed {c.published} ({c.printed_precision}): {c.verdict}"
            + (f"; {c.note}" if c.note else ""),
            c.table,
        )
        for c in cells
    ]


def _c10() -> Claim:
    small = nb.BoundInputs.from_partial(4096, 1e-4, dkl_seq=0.01)
    kltv = nb.BoundInputs.from_partial(4096, 1e-4, eps=5e-3, dkl_seq=0.01, dtv_seq=0.05)
    ck, ut = bound_value(small, "classical_kl"), bound_value(kltv, "unified")
    same_ko = ck / bound_value(small, "unified")
    same_kt = min(bound_value(kltv, "classical_tv"), bound_value(kltv, "classical_kl")) / ut
    return Claim(
        "C10",
        "'409x improvement'",
        "caveat",
        f"409x = KL-only Classical ({ck:.2f}) / KL+TV Unified ({ut:.4f}) = {ck / ut:.2f} (printed 409 "
        "truncates "
        f"409.5; 1677/4.1 = {1677 / 4.1:.1f}): it mixes columns. Within one column the improvement is "
        f"{same_ko:.1f}x (KL-only) and {same_kt:.1f}x (KL+TV).",
        "v3 text",
    )


def _c11() -> list[Claim]:
    ex = symbolic.leading_exponents()
    want = {"classical_kl": ("2", "2"), "pm_kl": ("3/2", "1"), "mix_kl": ("1", "1"), "coupling": ("2", "1")}
    provided = measured("C11")
    claims = []
    for fam, (w_unc, w_cap) in want.items():
        got = (str(ex[fam]["uncapped"]), str(ex[fam]["capped"]))
        parts = [
            f"[symbolic] sympy limit log(B)/log(T): {got[0]} without caps, {got[1]} with every cap binding"
        ]
        for label, res in provided:
            if isinstance(res, Exception):
                parts.append(f"{label} raised {type(res).__name__}: {res}")
            elif isinstance(res, dict) and fam in res:
                parts.append(
                    f"{label}: measured slope {res[fam].get('slope')} ({res[fam].get('description', '')})"
                )
        if not any(isinstance(r, dict) and fam in r for _, r in provided):
            parts.append("pending: measured log-log slopes on exact chains (trm_bounds.audit.evidence.chain)")
        verdict = "holds" if got == (w_unc, w_cap) else "fails"
        if fam == "pm_kl":
            verdict = "caveat" if verdict == "holds" else verdict
            parts.append("O(T^1.5) only while delta <= 2/T; at fixed delta the caps bind and B_PM is O(T)")
        claims.append(
            Claim(
                f"C11.{fam}",
                f"scaling exponent of {fam}: {w_unc}" + (f" then {w_cap}" if w_unc != w_cap else ""),
                verdict,
                "; ".join(parts),
                "v1-v3",
            )
        )
    return claims


def _c22(cells: list[TableCell]) -> list[Claim]:
    by = {(c.version, c.row_key, c.column_key): c for c in cells}
    cnt, ratio = by[("v2", "large_divergence", "cap_count")], by[("v2", "large_divergence", "ratio")]
    return [
        Claim(
            "C22.cap_count",
            "large divergence: the cap binds for 4,094 of 4,096 positions",
            "holds" if cnt.verdict == "match" else "fails",
            f"counted: {cnt.computed:.0f} ({cnt.note})",
            "v2 text",
        ),
        Claim(
            "C22.ratio",
            "uncapped / capped PM about 30x",
            "holds" if ratio.verdict == "match" else "fails",
            f"computed {ratio.computed:.3f} (uncapped exact sum / capped B_PM^KL at delta = 1)",
            "v2 text",
        ),
    ]


def _c24() -> Claim:
    parts = []
    for d in (0.001, 0.002, 0.05, 0.1):
        vals = []
        for T in (256, 1024, 4096):
            b = nb.BoundInputs.from_partial(T, d)
            vals.append(f"T = {T}: {bound_value(b, 'unified'):.3g}")
        lo, hi = 1, 4096
        while lo < hi:  # largest T with B* <= 1 (B* increases with T)
            mid = (lo + hi + 1) // 2
            lo, hi = (
                (mid, hi)
                if bound_value(nb.BoundInputs.from_partial(mid, d), "unified") <= 1
                else (lo, mid - 1)
            )
        parts.append(f"delta = {d}: B* {', '.join(vals)}; B* <= 1 only for T <= {lo}")
    return Claim(
        "C24",
        "the experiments' thresholds (delta = 0.05, 0.1, 0.001, 0.002) give non-vacuous guarantees",
        "fails",
        "B* from delta alone (eps by Pinsker, D_KL^seq = T delta, Dbar_t = eps: all TRM controls): "
        + "; ".join(parts)
        + ". With rewards in [0, 1], |J(theta) - J(roll)| <= 1 (|Error| itself can exceed 1: "
        "counterexamples.large_error_pair, Error = 5.958 at T = 6), and a step is certified only when "
        "L' > B*; so B* > 1 certifies no step whose surrogate gain L' <= 1 at reasoning lengths. "
        "(0.001 and 0.002 are TRM-Avg thresholds, which do not bound the max token KL at all.)"
        + measured_text("C24"),
        "v2, v3 experiments",
    )


def _section9(search: Search) -> Claim:
    """S9.halved_constants from the written proof in `trm_bounds.refined` and evidence computed now."""
    keys = tuple(refined.REFINED_OF)
    ev = halved_constants_evidence()
    tiny = max(search.worst_ratio_halved[k] for k in keys if k in search.worst_ratio_halved)
    worst_key = max(keys, key=lambda k: ev["worst"][k])
    holds = ev["violations"] == 0 and ev["worst_mp"] <= 1.0 and tiny <= 1.0
    return Claim(
        "S9.halved_constants",
        "[beyond] every bound holds with its leading constant halved",
        "holds" if holds else "fails",
        "[written proof, checked by hand, not machine-checked] trm_bounds.refined: route A "
        "(|g_t| <= TV(c_t) since R in [0, 1] and sum_v (pi_theta - pi_roll) = 0, then the master inequality) "
        "halves classical_tv/kl, pm_kl/tv, mix_kl/tv, coupling; route B (ratio identity with R replaced by "
        "R - 1/2, tower rule, E[|1 - prod rho| | c_{t+1}] = 2 TV_fut) halves linear, linear_dbar, "
        "adaptive_kl/tv/star under pi_theta << pi_roll, and a limit pi_roll^n = (1 - 1/n) pi_roll + "
        "pi_theta / n removes that assumption; registered as *_refined. The constant cannot be halved again: "
        "a T = 2 pair attains adaptive_tv_refined and coupling_refined exactly (refined.tight_pair, checked "
        "in rationals). Numeric evidence (not a proof): worst |Error| / refined bound = "
        f"{ev['worst'][worst_key]:.6f} ({worst_key}) over {ev['description']}, "
        f"{ev['violations']} violations; the worst pair "
        f"({ev['worst_kind']}, P, V, T = {ev['worst_shape']}) recomputed trajectory by trajectory at "
        f"{ev['mp_dps']} digits (mpmath): ratio {ev['worst_mp']:.10f}. Tiny-pair search: worst |Error| / "
        f"(bound / 2) = {tiny:.4f} over {search.description}. Float64 caveat: rows stored by a naive "
        "log-softmax with logits ~1e3 sum to 1 + 1e-82, which halves the computed eps / Dbar and adds a "
        "spurious Error (~1e-166 against a true 1e-1005); such pairs showed |Error| / B_Adap^TV from 0.5 up "
        "to 1.0 in float64 (the reported 0.705; 637 of 132,000 seeded pairs), and all 637 are within the "
        "refined bounds when recomputed at 120-960 digits (13 of them within 1e-28 of equality; one is "
        "pinned in tests/test_refined.py); divergences.log_softmax (log1p form) keeps such rows normalised.",
        "docs/theory.md section 9",
    )


def bound_claims(search: Search) -> list[Claim]:
    """Every claim of this module but C09 and C22 (those derive from the table cells)."""
    return [
        *_c01(search),
        *_claims_symbolic(),
        _c07(),
        _c08_ratio(),
        _c10(),
        *_c11(),
        _c24(),
        _section9(search),
        _tight(),
    ]


def _tight() -> Claim:
    """The paper's "first tight trust-region error bounds", against the worst-case search (issue 14)."""
    from .evidence.tightness import tightness_summary

    s = tightness_summary()
    claim = 'the bounds are "tight" (v3 abstract: "the first tight trust-region error bounds")'
    if s is None:
        return Claim("S14.tight", claim, "caveat", "pending: run trm-bounds figures (tightness study)", "v3")
    pb = s["per_bound"]
    fmt = lambda b: (
        f"{b} {pb[b]['T2']:.2g} at T = 2, "
        + ", ".join(  # noqa: E731
            f"{v:.2g} at T = {s['T_max']} (fixed {f})" for f, v in sorted(pb[b]["Tmax"].items())
        )
    )
    shown = [
        b for b in ("unified", "adaptive_star", "coupling", "mix_tv", "pm_kl", "classical_kl") if b in pb
    ]
    verdict = "fails" if s["violations"] else "caveat"
    return Claim(
        "S14.tight",
        claim,
        verdict,
        f"worst |Error| / bound found by search over binary trees (T <= {s['T_tree_max']}) and chains "
        f"(T <= {s['T_max']}), "
        f"{s['instances']} saved instances, {s['violations']} violations: "
        + "; ".join(fmt(b) for b in shown)
        + ". Every published bound is attained only up to a factor 2 (its halved *_refined twin reaches "
        "ratio 1 at T = 2); the data-dependent forms (adaptive_star, unified, coupling) stay within a small "
        "factor up to the largest T, the worst-case closed forms (PM, classical, Mix-KL) lose a factor "
        "growing with T at fixed delta. Proved (docs/tightness.md): |Error| <= sum_t Dbar_t + D_TV^seq <= "
        "T eps + 1, and a parity chain has |Error| >= T eps - 1/2, so once T eps >> 1 the worst |Error| grows "
        "exactly linearly in T, not like T^1.5 or T^2. Source: paper_figures/tightness/tightness.json.",
        "v3",
    )


c09_claims = _c09
c22_claims = _c22
