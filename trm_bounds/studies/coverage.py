"""Coverage of the sample certificate, measured in the exact environment (issue 15, item 2).

For exact pairs (tabular, transformer, MoE; the paper's regime delta <= 1e-3 included) the
per-response statistics S = sum_t (1 - rho_t)_+, D = (1 - prod_t rho_t)_+ are computed on every
leaf of the tree, so drawing N responses from pi_roll is drawing N leaves with their pi_roll
probabilities (all repeats at once). For N in {16, 64, 256, 1024} and `reps` repeats it reports,
per method of `trm_bounds.confidence`: the observed coverage P(upper >= exact) of sum_t Dbar_t
and D_TV^seq with its Monte Carlo standard error, the bias of the estimates (with its standard
error), the median ratio upper / exact and certified bound / exact |Error|. A second figure
follows the certificate along the horizon T at a fixed per-token mismatch on a state chain
(exact sum_t Dbar_t, |Error| and E[Z] from the chain engine; the certificate from simulated
batches of the chain).

Writes (to out_dir): certify_coverage.png/.pdf, certify_coverage.csv, certify_coverage.json,
certify_horizon.png/.pdf, certify_horizon.csv. `figures_job(out_dir, quick)` returns one record
{"path", "shows", "inputs"} per file.
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import torch

from .._savefig import save_png_pdf
from ..chain import chain_quantities, last_k_transition, random_chain_pair
from ..confidence import METHODS, upper_confidence_bound
from ..exact import exact_quantities
from ..pair import PolicyPair, make_pair
from ..policies import MoEConfig, MoEPolicy, TabularPolicy, TransformerConfig, TransformerPolicy
from ..second_order import sequence_statistics
from . import pyplot

__all__ = ["leaf_statistics", "coverage_table", "horizon_table", "figures_job", "CONFIDENCE"]

CONFIDENCE = 0.95
SIZES = (16, 64, 256, 1024)


SUBDIR = "certify"  # the study's folder inside the figures directory


def leaf_statistics(pair: PolicyPair) -> dict[str, np.ndarray]:
    """Per-leaf pi_roll probability and S, D, Z of the response at that leaf: (P V**T,) each."""
    P, V, T = pair.P, pair.V, pair.T
    leaves = np.arange(P * V**T)
    p, y = leaves // V**T, leaves % V**T
    lr = np.empty((leaves.size, T))
    lroll = np.log(np.asarray(pair.prompt_probs, dtype=np.float64))[p]
    for k in range(T):
        row, tok = y // V ** (T - k), (y // V ** (T - k - 1)) % V
        a = np.asarray(pair.logp_roll[k], dtype=np.float64)[p, row, tok]
        b = np.asarray(pair.logp_theta[k], dtype=np.float64)[p, row, tok]
        lr[:, k] = b - a
        lroll = lroll + a
    s = sequence_statistics(lr, np.ones_like(lr, dtype=bool))
    prob = np.exp(lroll)
    return {"prob": prob / prob.sum(), "S": s["S"], "D": s["D"], "Z": s["Z"]}


def _pairs(quick: bool) -> list[tuple[str, PolicyPair]]:
    """The exact pairs of the study: (label, pair)."""
    V, T, P = (3, 6, 2) if quick else (3, 8, 2)
    gen = torch.Generator().manual_seed(0)
    R = torch.rand(P, V**T, dtype=torch.float64, generator=gen)
    tab = TabularPolicy(P, V, T, init_std=1.5, seed=1)
    tf = TransformerPolicy(TransformerConfig(P=P, V=V, T=T, init_std=1.0, seed=2))
    moe = MoEPolicy(MoEConfig(P=P, V=V, T=T, router_scale=0.3, seed=3))
    out = [
        ("tabular dense 0.015", make_pair(tab, "dense", 0.015, reward=R, seed=4)),
        ("transformer dense 0.015", make_pair(tf, "dense", 0.015, reward=R, seed=5)),
        ("MoE dense 0.015", make_pair(moe, "dense", 0.015, reward=R, seed=10)),
        ("MoE router noise 0.05", make_pair(moe, "moe", 0.05, reward=R, seed=6)),
        ("tabular dense 0.3", make_pair(tab, "dense", 0.3, reward=R, seed=7)),
        ("tabular reverse (sparse) 0.05", make_pair(tab, "reverse", 0.05, reward=R, seed=8)),
    ]
    if not quick:
        out.append(("transformer bf16", make_pair(tf, "precision", 0.1, reward=R, seed=9)))
    return out


def coverage_table(quick: bool, reps: int | None = None, seed: int = 0) -> list[dict]:
    """One row per (pair, N, method): coverage, MC error, bias, ratios (module docstring)."""
    reps = reps or (300 if quick else 1000)
    sizes = SIZES[:3] if quick else SIZES
    rng = np.random.default_rng(seed)
    rows = []
    for label, pair in _pairs(quick):
        ex = exact_quantities(pair.logp_roll, pair.logp_theta, pair.reward, pair.prompt_probs)
        st = leaf_statistics(pair)
        exact = {"sum_dbar": float(np.sum(ex["dbar"])), "dtv_seq": ex["dtv_seq"]}
        for n in sizes:
            idx = rng.choice(st["prob"].size, size=(reps, n), p=st["prob"])  # (reps, n) leaves ~ pi_roll
            S, D = st["S"][idx], st["D"][idx]
            for method in METHODS:
                uS = upper_confidence_bound(S, CONFIDENCE, hi=float(pair.T), method=method)
                uD = upper_confidence_bound(D, CONFIDENCE, method=method)
                row = {
                    "pair": label,
                    "T": pair.T,
                    "V": pair.V,
                    "delta": ex["delta"],
                    "paper_regime": ex["delta"] <= 1e-3,
                    "N": n,
                    "method": method,
                    "reps": reps,
                    "exact_sum_dbar": exact["sum_dbar"],
                    "exact_dtv_seq": exact["dtv_seq"],
                    "exact_abs_error": abs(ex["error"]),
                    "exact_second_order": ex["bounds"].get("second_order", math.nan),
                }
                for key, x, u in (("sum_dbar", S, uS), ("dtv_seq", D, uD)):
                    est = x.mean(-1)
                    row[f"coverage_{key}"] = float(np.mean(u >= exact[key]))
                    row[f"bias_{key}"] = float(est.mean() - exact[key])
                    row[f"bias_se_{key}"] = float(est.std(ddof=1) / math.sqrt(reps))
                    row[f"median_ratio_{key}"] = (
                        float(np.median(u) / exact[key]) if exact[key] > 0 else math.nan
                    )
                row["mc_se"] = math.sqrt(CONFIDENCE * (1 - CONFIDENCE) / reps)
                row["median_bound_over_error"] = (
                    float(np.median(2.0 * uS) / abs(ex["error"])) if ex["error"] != 0 else math.inf
                )
                row["bound_holds_when_covered"] = bool(
                    np.all(2.0 * uS[uS >= exact["sum_dbar"]] >= abs(ex["error"]))
                )
                rows.append(row)
    return rows


def _simulate_chain(pair, n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """S of reps x n responses sampled from the chain's pi_roll: (reps, n).

    Per step, one uniform u per response; the token is the number of cumulative probabilities
    below u (capped at V - 1), and S gains (1 - rho)_+ = -expm1(min(log rho, 0)). The per-(state,
    token) tables are formed once per distinct step (once for a homogeneous chain) and gathered:
    the same numbers as forming them per response. The cumulative probabilities increase along
    the token axis, so the capped count is the count over the first V - 1 of them, added up one
    column at a time into the flat (state, token) index (no (responses, V) temporary).
    """
    lr_all = np.asarray(pair.logp_roll)
    lt_all = np.asarray(pair.logp_theta)
    m = reps * n
    V = lr_all.shape[-1]
    transition = np.asarray(pair.transition).ravel()  # (S * V,): next state of (state, token)
    state = np.full(m, int(pair.init_state[0]))
    S = np.zeros(m)
    tables = None
    for k in range(pair.T):
        if tables is None or lr_all.ndim == 3:
            lr = lr_all[k] if lr_all.ndim == 3 else lr_all
            lt = lt_all[k] if lt_all.ndim == 3 else lt_all
            cdf = np.cumsum(np.exp(lr), -1)  # (S, V)
            inc = -np.expm1(np.minimum(lt - lr, 0.0))  # (S, V): (1 - rho)_+ of each (state, token)
            tables = ([np.ascontiguousarray(cdf[:, j]) for j in range(V - 1)], inc.ravel())
        u = rng.random(m)
        idx = state * V  # flat (state, token) index, token counted below
        for cdf_j in tables[0]:
            idx += u > cdf_j[state]
        S += tables[1][idx]
        state = transition[idx]
    return S.reshape(reps, n)


def horizon_table(quick: bool, seed: int = 0) -> list[dict]:
    """Along T at a fixed per-token mismatch (dense logit noise 0.03 on a V = 4 chain)."""
    Ts = (8, 32, 128) if quick else (8, 32, 128, 512, 2048)
    reps, n = (20, 256) if quick else (40, 1024)
    rng = np.random.default_rng(seed)
    rows = []
    for T in Ts:
        pair = random_chain_pair(last_k_transition(4, 1), "dense", 0.03, T, seed=seed)
        d = chain_quantities(pair)
        S = _simulate_chain(pair, n, reps, rng)
        u = upper_confidence_bound(S, CONFIDENCE, hi=float(T), method="betting")
        rows.append(
            {
                "T": T,
                "exact_sum_dbar": float(np.sum(d["dbar"])),
                "exact_abs_error": abs(d["error"]),
                "second_order": d["bounds"].get("second_order", math.nan),
                "linear_dbar_refined_exact": 2.0 * float(np.sum(d["dbar"])),
                "certified_median": float(np.median(2.0 * u)),
                "N": n,
                "reps": reps,
                "coverage": float(np.mean(u >= np.sum(d["dbar"]))),
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plot_coverage(rows: list[dict], out_dir: Path) -> list[str]:
    """Four panels over N: coverage of sum_t Dbar_t and of D_TV^seq (one dot per pair, dodged
    sideways; colour = method), upper / exact, and certified bound / |Error| (one line per pair;
    pairs whose lines coincide are named)."""
    from .plotting import overlap_summary

    plt = pyplot()
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    colors = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:red")))
    markers = "osD^vP*X"
    fig, axes = plt.subplots(1, 4, figsize=(18, 5.4))
    ratio_curves = {}
    for j, p in enumerate(pairs):
        for m in METHODS:
            rr = [r for r in rows if r["pair"] == p and r["method"] == m]
            N = [r["N"] for r in rr]
            off = 1 + 0.04 * (j - len(pairs) / 2)
            kw = dict(color=colors[m], alpha=0.8, ms=3, label=m if j == 0 else None)
            axes[0].plot(np.array(N) * off, [r["coverage_sum_dbar"] for r in rr], "o-", lw=0.8, **kw)
            axes[1].plot(np.array(N) * off, [r["coverage_dtv_seq"] for r in rr], "o-", lw=0.8, **kw)
            axes[2].plot(N, [r["median_ratio_sum_dbar"] for r in rr], "o-", lw=0.8, **kw)
            if m == "betting":
                y = [r["median_bound_over_error"] for r in rr]
                ratio_curves[p] = y
                axes[3].plot(N, y, ls="-", marker=markers[j % len(markers)], lw=1, ms=4, label=p)
    se = rows[0]["mc_se"]
    n_cells = len(rows)
    for ax, what, key in (
        (axes[0], "sum_t Dbar_t", "coverage_sum_dbar"),
        (axes[1], "D_TV^seq", "coverage_dtv_seq"),
    ):
        ax.axhline(CONFIDENCE, color="k", lw=0.8)
        ax.axhspan(CONFIDENCE - 2 * se, CONFIDENCE + 2 * se, color="k", alpha=0.1, lw=0)
        ax.set_ylim(0.85, 1.005)
        full = sum(r[key] == 1.0 for r in rows)
        ax.set_title(
            f"coverage of exact {what}: P(upper >= exact)\n"
            f"(line: {CONFIDENCE:.0%} required; band: +-2 MC s.e.)",
            fontsize=9,
        )
        ax.text(
            0.02,
            0.02,
            f"one dot per (pair, method, N), pairs dodged sideways;\n{full} of {n_cells} at coverage 1.0 "
            f"({rows[0]['reps']} repeats each)",
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
        )
        ax.set_ylabel("coverage over repeats")
    axes[2].axhline(1.5, color="k", lw=0.8, ls="--")
    axes[2].set_yscale("log")
    axes[2].set_ylabel("upper confidence bound / exact value")
    axes[2].set_title(
        "upper / exact sum_t Dbar_t (median over repeats)\none line per pair; colour: method; dashed: 1.5",
        fontsize=9,
    )
    axes[3].set_yscale("log")
    axes[3].set_ylabel("certified bound / exact |Error|")
    axes[3].set_title(
        "certified bound 2 U / exact |Error| (betting, median)\n> 1: the bound holds; one line per pair",
        fontsize=9,
    )
    axes[3].axhline(1.0, color="k", lw=0.8)
    same = overlap_summary(sorted({r["N"] for r in rows}), ratio_curves, min_fraction=1.0)
    if same:
        axes[3].text(
            0.02,
            -0.2,
            textwrap.fill(same.replace("\n", "; ").replace("T:", "N:"), 60),
            transform=axes[3].transAxes,
            fontsize=7,
            va="top",
        )
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size N (responses)")
    axes[0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.1))
    axes[3].legend(fontsize=6.5, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.tight_layout()
    return save_png_pdf(fig, out_dir, "certify_coverage")


def _plot_horizon(rows: list[dict], out_dir: Path) -> list[str]:
    """The certificate, its exact first-order target, E[Z] and |Error| over T (log-log); the
    level 1 explained in the legend (`LEVEL_ONE_NOTE`)."""
    from .plotting import LEVEL_ONE_NOTE

    plt = pyplot()
    T = [r["T"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    ax.plot(
        T,
        [r["certified_median"] for r in rows],
        "o-",
        color="tab:red",
        label=f"certificate 2 U ({CONFIDENCE:.0%}, N = {rows[0]['N']}, median of {rows[0]['reps']} batches)",
    )
    ax.plot(
        T,
        [r["linear_dbar_refined_exact"] for r in rows],
        "s--",
        color="tab:orange",
        label="2 sum_t Dbar_t (exact: the certificate at N = inf)",
    )
    ax.plot(
        T,
        [r["second_order"] for r in rows],
        "^-",
        color="tab:green",
        label="E[Z], second-order bound (exact; a sum over pairs t < s, so it grows about like T^2)",
    )
    err = [r["exact_abs_error"] for r in rows]
    flat = max(err) <= 1.1 * min(err)
    ax.plot(
        T,
        err,
        "k.-",
        label="|Error| (exact" + ("; about constant in T: a fast-mixing chain)" if flat else ")"),
    )
    ax.axhline(1.0, color="0.5", lw=0.8, ls=(0, (1, 1)), label=textwrap.fill("level " + LEVEL_ONE_NOTE, 70))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("horizon T (tokens)")
    ax.set_ylabel("objective units (R in [0, 1])")
    ax.set_title(
        "sample certificate vs horizon, fixed per-token mismatch\n(V = 4 chain, dense logit noise 0.03)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    fig.tight_layout()
    return save_png_pdf(fig, out_dir, "certify_horizon")


def figures_job(out_dir: Path, quick: bool) -> list[dict]:
    """Run both studies, write figures and tables into out_dir/certify; one record per file
    written, its path relative to out_dir (as the manifest of `trm-bounds figures` lists it)."""
    root = Path(out_dir)
    out_dir = root / SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    cov = coverage_table(quick)
    hor = horizon_table(quick)
    inputs = {"quick": quick, "confidence": CONFIDENCE, "methods": list(METHODS), "sizes": list(SIZES)}
    recs = [
        {
            "path": p,
            "shows": "coverage, bias and tightness of the sample certificate on exact pairs",
            "inputs": inputs,
        }
        for p in _plot_coverage(cov, out_dir)
    ]
    recs += [
        {
            "path": p,
            "shows": "sample certificate vs horizon T at fixed per-token mismatch (chain)",
            "inputs": inputs,
        }
        for p in _plot_horizon(hor, out_dir)
    ]
    _write_csv(out_dir / "certify_coverage.csv", cov)
    _write_csv(out_dir / "certify_horizon.csv", hor)
    (out_dir / "certify_coverage.json").write_text(
        json.dumps({"coverage": cov, "horizon": hor}, indent=1, default=str)
    )
    for name, shows in (
        ("certify_coverage.csv", "the numbers of certify_coverage.png"),
        ("certify_horizon.csv", "the numbers of certify_horizon.png"),
        ("certify_coverage.json", "both tables"),
    ):
        recs.append({"path": name, "shows": shows, "inputs": inputs})
    return [{**r, "path": f"{SUBDIR}/{r['path']}"} for r in recs]
