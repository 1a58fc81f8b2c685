"""Empirical vs theoretical error: exact |Error| next to every bound, T = 1 .. 16384 (issue 6).

What it measures, all exactly with the finite-state DP engine (`trm_bounds.chain`):
1. Horizon sweep. A last-2-token softmax policy (V = 8, S = 64, terminal reward in [0, 1])
   and a mismatched copy, for three mechanisms: dense logit noise (backend numerics),
   sparse top-2 flips in 5% of the states (MoE routing), staleness (a shared update direction).
   Several seeds per mechanism; |Error| and every bound at T = 1, 2, 4, ..., 16384; fitted
   log-log slopes of |Error| (per seed, then mean +- standard error) over T >= 64; the first
   T at which each bound exceeds 1 (vacuous) and |Error| there.
2. Map over (delta, T): dense noise of growing strength; which published bound is tightest,
   and |Error| / unified bound.
3. Ratio distributions: |Error| / bound over many random automata, mechanisms, levels and T.

    python experiments/error_vs_horizon.py [--quick] [--out paper_figures]   (`main`)

Writes error_vs_horizon.{png,pdf,csv}, error_vs_horizon_map.{png,pdf,csv},
error_vs_horizon_ratios.{png,pdf,csv} and error_vs_horizon.json (every plotted number,
slopes, vacuous horizons, worst ratios). `trm-bounds figures` runs it (`figures_job`, job
``experiments/error_vs_horizon``).
Default: about 2-3 minutes on 2 CPU cores; --quick: a few seconds.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._json import dumps
from .._savefig import save_figure
from ..bounds import PUBLISHED_BOUNDS
from ..chain import (
    MISMATCHES,
    ChainPair,
    chain_quantities_batch,
    counter_transition,
    last_k_transition,
    random_automaton_transition,
    random_chain_pair,
)
from . import pyplot

__all__ = ["run_study", "figures_job", "main", "RESULTS_JSON"]

RESULTS_JSON = "error_vs_horizon.json"  # read back by trm_bounds.audit.evidence.chain
# the study's labels (JSON keys) -> the chain mechanism (trm_bounds.mismatch) they run
CHAIN_MECHANISM = {"dense": "dense", "sparse": "swap", "stale": "drift"}
MECHANISMS = {  # name -> (mismatch kind, level, label)
    "dense": ("dense", 0.02, "dense logit noise, sigma = 0.02 (backend numerics)"),
    "sparse": ("swap", 0.05, "top-2 flips in 5% of states (MoE routing)"),
    "stale": ("drift", 0.02, "staleness: 0.02 x shared update direction"),
}
SHOWN = (
    "classical_kl",
    "classical_tv",
    "linear",
    "pm_kl",
    "pm_tv",
    "mix_kl",
    "mix_tv",
    "coupling",
    "adaptive_star",
)
TIGHT_CANDIDATES = tuple(n for n in PUBLISHED_BOUNDS if n != "unified")
FIT_FROM = 64  # slopes are fitted over T >= FIT_FROM (past the transient)


FAMILIES = {
    "last2": "last-2-token model, V = 8, S = 64, random terminal reward (fast mixing)",
    "counter": "counter: state = number of token-0 emissions, V = 2, S = T + 1, R = that number / T",
}


def _config(quick: bool) -> dict:
    if quick:
        return dict(
            T_max=64, T_max_counter=32, seeds=2, map_levels=4, random_pairs=24, random_T=(8, 32), V=4, k=2
        )
    return dict(
        T_max=16384,
        T_max_counter=2048,
        seeds=5,
        map_levels=10,
        random_pairs=160,
        random_T=(8, 64, 512),
        V=8,
        k=2,
    )


def counter_pair(mismatch: str, level: float, T: int, seed: int, temperature: float = 1.0) -> ChainPair:
    """A counter chain (S = T + 1, V = 2): logits drawn per count (the same for every T at a
    seed), pi_theta by MISMATCHES[mismatch]; R = (number of token-0 emissions) / T."""
    rng = np.random.default_rng(seed)
    logits = temperature * rng.standard_normal((T + 1, 2))
    theta = MISMATCHES[mismatch](logits, level, rng)
    lsm = lambda z: z - np.logaddexp(z[:, :1], z[:, 1:])  # noqa: E731  (V = 2 log-softmax)
    return ChainPair(
        T=T,
        transition=counter_transition(T + 1, 2, token=0),
        init_state=np.zeros(1, dtype=np.int64),
        prompt_probs=np.ones(1),
        logp_roll=lsm(logits),
        logp_theta=lsm(theta),
        reward_final=np.arange(T + 1) / T,
    )


def _T_grid(T_max: int) -> list[int]:
    return [2**i for i in range(int(np.log2(T_max)) + 1)]


def _abs_error(d: dict) -> float:
    return abs(d["error_second_order"])  # = |J_theta - J_roll - L'|, summed without O(1) cancellation


# --------------------------------------------------------------------------- 1. horizon sweep
def horizon_sweep(cfg: dict, bar) -> dict:
    """{family/mechanism: arrays over seeds x T grid, slopes, vacuous T}."""
    tr = last_k_transition(cfg["V"], cfg["k"])
    out = {}
    for fam in FAMILIES:
        grid = _T_grid(cfg["T_max"] if fam == "last2" else cfg["T_max_counter"])
        for name, (kind, level, label) in MECHANISMS.items():
            err = np.zeros((cfg["seeds"], len(grid)))
            bnd = {b: np.zeros((cfg["seeds"], len(grid))) for b in PUBLISHED_BOUNDS}
            eps = np.zeros(cfg["seeds"])
            delta = np.zeros(cfg["seeds"])
            for i, T in enumerate(grid):
                if fam == "last2":
                    pairs = [random_chain_pair(tr, kind, level, T, seed=100 + s) for s in range(cfg["seeds"])]
                else:
                    pairs = [counter_pair(kind, level, T, seed=100 + s) for s in range(cfg["seeds"])]
                for s, d in enumerate(chain_quantities_batch(pairs)):
                    err[s, i] = _abs_error(d)
                    for b in PUBLISHED_BOUNDS:
                        bnd[b][s, i] = d["bounds"][b]
                    eps[s], delta[s] = d["eps"], d["delta"]
                bar.update(T)
            out[f"{fam}/{name}"] = dict(
                family=fam,
                label=label,
                T=grid,
                abs_error=err,
                bounds=bnd,
                eps=eps,
                delta=delta,
                **_slopes(grid, err, bnd),
            )
    return out


def _slopes(grid, err, bnd) -> dict:
    """Per-seed least-squares slope of log|Error| (and of each bound) on log T over T >= FIT_FROM."""
    T = np.asarray(grid, dtype=float)
    sel = T >= min(FIT_FROM, T.max() / 4)
    x = np.log(T[sel])

    def fit(y):  # y (seeds, len(grid)) -> mean slope, standard error over seeds
        s = np.array([np.polyfit(x, np.log(np.maximum(row[sel], 1e-300)), 1)[0] for row in y])
        return float(s.mean()), float(s.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("nan")

    slope, se = fit(err)
    short = (T >= 2) & (T <= FIT_FROM)

    def short_slope(row):  # points where |Error| is above rounding (it is exactly 0 at T = 1)
        ok = short & (row > 1e-13)
        return np.polyfit(np.log(T[ok]), np.log(row[ok]), 1)[0] if ok.sum() > 1 else np.nan

    s_short = [short_slope(row) for row in err]
    vac = {}
    for b, y in bnd.items():
        med = np.median(y, axis=0)
        over = np.nonzero(med > 1.0)[0]
        vac[b] = None if len(over) == 0 else int(grid[over[0]])
    return dict(
        error_slope=slope,
        error_slope_se=se,
        error_slope_short=float(np.mean(s_short)),
        fit_range=[float(T[sel].min()), float(T[sel].max())],
        bound_slopes={b: fit(y)[0] for b, y in bnd.items()},
        vacuous_T=vac,
        error_at_vacuous={
            b: (None if t is None else float(np.median(err[:, grid.index(t)]))) for b, t in vac.items()
        },
    )


# --------------------------------------------------------------------------- 2. (delta, T) map
def delta_T_map(cfg: dict, bar) -> dict:
    tr = last_k_transition(cfg["V"], cfg["k"])
    grid = _T_grid(min(cfg["T_max"], 4096))
    levels = np.logspace(-3, 0.3, cfg["map_levels"])
    tight = np.empty((len(levels), len(grid)), dtype=object)
    ratio = np.zeros((len(levels), len(grid)))
    delta = np.zeros(len(levels))
    for i, T in enumerate(grid):
        pairs = [random_chain_pair(tr, "dense", float(lv), T, seed=7) for lv in levels]
        for j, d in enumerate(chain_quantities_batch(pairs)):
            cand = {b: d["bounds"][b] for b in TIGHT_CANDIDATES}
            tight[j, i] = min(cand, key=cand.get)
            ratio[j, i] = _abs_error(d) / d["bounds"]["unified"] if d["bounds"]["unified"] > 0 else 0.0
            delta[j] = d["delta"]
        bar.update(T)
    return dict(T=grid, levels=levels, delta=delta, tightest=tight, ratio_unified=ratio)


# --------------------------------------------------------------------------- 3. random pairs
def random_ratios(cfg: dict, bar) -> dict:
    rng = np.random.default_rng(2026)
    rows = []
    per_T = cfg["random_pairs"] // len(cfg["random_T"])
    for T in cfg["random_T"]:
        pairs, meta = [], []
        for i in range(per_T):
            kind = ("dense", "sparse", "stale")[i % 3]
            level = float(10 ** rng.uniform(-2.5, 0.0)) if kind != "sparse" else float(rng.uniform(0.01, 0.5))
            tr = random_automaton_transition(16, 4, rng)
            pairs.append(
                random_chain_pair(
                    tr, CHAIN_MECHANISM[kind], level, T, seed=int(rng.integers(2**31)), reward=("final", "both")[i % 2]
                )
            )
            meta.append((kind, level))
        for (kind, level), d in zip(meta, chain_quantities_batch(pairs)):
            e = _abs_error(d)
            rows.append(
                dict(
                    T=T,
                    mechanism=kind,
                    level=level,
                    abs_error=e,
                    delta=d["delta"],
                    eps=d["eps"],
                    **{
                        f"ratio_{b}": (e / d["bounds"][b] if d["bounds"][b] > 0 else 0.0)
                        for b in PUBLISHED_BOUNDS
                    },
                )
            )
        bar.update(T * per_T // 8)
    worst = {b: max(r[f"ratio_{b}"] for r in rows) for b in PUBLISHED_BOUNDS}
    return dict(rows=rows, worst=worst)


# --------------------------------------------------------------------------- figures
_STYLE = {
    "classical_kl": ("tab:gray", ":"),
    "classical_tv": ("tab:brown", ":"),
    "linear": ("tab:olive", "--"),
    "pm_kl": ("tab:blue", "--"),
    "pm_tv": ("tab:cyan", "--"),
    "mix_kl": ("tab:green", "-."),
    "mix_tv": ("tab:purple", "-."),
    "coupling": ("tab:orange", "--"),
    "adaptive_star": ("tab:pink", "-"),
    "unified": ("tab:red", "-"),
}


def _save(fig, out_dir: Path, stem: str) -> list[str]:
    plt = pyplot()
    save_figure(fig, out_dir / f"{stem}.png", dpi=130, bbox_inches="tight")
    save_figure(fig, out_dir / f"{stem}.pdf", bbox_inches="tight")
    plt.close(fig)
    return [f"{stem}.png", f"{stem}.pdf"]


def plot_sweep(sweep: dict, out_dir: Path) -> list[str]:
    plt = pyplot()
    fams = list(FAMILIES)
    fig, axes = plt.subplots(len(fams), len(MECHANISMS), figsize=(5.2 * len(MECHANISMS), 4.4 * len(fams)))
    for row, fam in enumerate(fams):
        for col, name in enumerate(MECHANISMS):
            ax, r = axes[row, col], sweep[f"{fam}/{name}"]
            T = np.array(r["T"])
            pos = lambda y: np.where(y > 0, y, np.nan)  # noqa: E731  (|Error| = 0 exactly at T = 1)
            for b in SHOWN + ("unified",):
                c, ls = _STYLE[b]
                lw = 2.2 if b == "unified" else 1.3
                # a bound that is exactly 0 (T = 1, or delta = 0 for a seed) has no place on a log axis
                ax.plot(T, pos(np.median(r["bounds"][b], 0)), color=c, ls=ls, lw=lw, label=b)
            med = pos(np.median(r["abs_error"], 0))
            lo, hi = pos(r["abs_error"].min(0)), pos(r["abs_error"].max(0))
            ax.fill_between(
                T, np.nan_to_num(lo, nan=1e-12), np.nan_to_num(hi, nan=1e-12), color="k", alpha=0.15, lw=0
            )
            slope = f"{r['error_slope']:.2f} +- {r['error_slope_se']:.2f}"
            ax.plot(T, med, "k-o", ms=3, lw=2, label=f"true |Error| (slope {slope})")
            ax.axhline(1.0, color="r", lw=0.8, ls=(0, (6, 3)))
            ax.text(T[0], 1.4, "1: a bound above it is vacuous", color="r", fontsize=7)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_ylim(1e-9, 1e9)
            ax.set_xlabel("horizon T (tokens)")
            if col == 0:
                ax.set_ylabel(f"{fam}: |Error| and bounds\n(objective units, R in [0, 1])")
            ax.set_title(
                f"{fam} / {r['label']}\n"
                f"delta = {np.median(r['delta']):.2g} nats, eps = {np.median(r['eps']):.2g}",
                fontsize=8,
            )
            ax.grid(alpha=0.3, which="major")
            ax.legend(fontsize=5.5, loc="lower right", ncol=2)
    fig.suptitle(
        "Exact |Error| = |J(theta) - J(roll) - L'| vs each published bound "
        "(median over seeds; grey band: min-max over seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, out_dir, "error_vs_horizon")


def plot_map(m: dict, out_dir: Path) -> list[str]:
    plt = pyplot()
    names = sorted({x for x in m["tightest"].ravel()})
    code = np.vectorize(names.index)(m["tightest"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
    cmap = plt.get_cmap("tab10", len(names))
    im = a1.imshow(code, origin="lower", aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5)
    cb = fig.colorbar(im, ax=a1, ticks=range(len(names)))
    cb.ax.set_yticklabels(names, fontsize=7)
    a1.set_title("tightest published bound (dense noise)", fontsize=9)
    r = a2.imshow(
        np.log10(np.maximum(m["ratio_unified"], 1e-12)), origin="lower", aspect="auto", cmap="viridis"
    )
    cb2 = fig.colorbar(r, ax=a2)
    cb2.set_label("log10(|Error| / unified bound B*)")
    a2.set_title("how much of B* the true error uses (1 = tight, log10 0)", fontsize=9)
    for ax in (a1, a2):
        ax.set_xticks(range(len(m["T"])), [str(t) for t in m["T"]], rotation=60, fontsize=7)
        ax.set_yticks(range(len(m["delta"])), [f"{d:.1e}" for d in m["delta"]], fontsize=7)
        ax.set_xlabel("horizon T (tokens)")
        ax.set_ylabel("delta = max token KL (nats)")
    return _save(fig, out_dir, "error_vs_horizon_map")


def plot_ratios(rr: dict, out_dir: Path) -> list[str]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.4))
    bins = np.logspace(-12, 0.5, 60)
    for b in ("classical_kl", "pm_kl", "mix_kl", "mix_tv", "coupling", "adaptive_star", "unified"):
        vals = np.array([r[f"ratio_{b}"] for r in rr["rows"]])
        vals = vals[vals > 0]
        c, _ = _STYLE[b]
        ax.hist(vals, bins=bins, histtype="step", color=c, lw=1.5, label=f"{b} (worst {rr['worst'][b]:.2g})")
    ax.axvline(1.0, color="r", ls="--", lw=1)
    ax.text(1.1, ax.get_ylim()[1] * 0.9, "ratio 1:\nbound violated", color="r", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("|Error| / bound (dimensionless; < 1 means the bound holds)")
    ax.set_ylabel("number of random pairs")
    ax.set_title(
        f"{len(rr['rows'])} random automata (S = 16, V = 4), three mechanisms, "
        f"T in {sorted({r['T'] for r in rr['rows']})}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, out_dir, "error_vs_horizon_ratios")


# --------------------------------------------------------------------------- tables


def write_tables(sweep, m, rr, cfg, out_dir: Path) -> list[str]:
    with open(out_dir / "error_vs_horizon.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["mechanism", "T", "abs_error_median", "abs_error_min", "abs_error_max"] + list(PUBLISHED_BOUNDS)
        )
        for name, r in sweep.items():
            for i, T in enumerate(r["T"]):
                e = r["abs_error"][:, i]
                w.writerow(
                    [name, T, np.median(e), e.min(), e.max()]
                    + [np.median(r["bounds"][b][:, i]) for b in PUBLISHED_BOUNDS]
                )
    with open(out_dir / "error_vs_horizon_map.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["level", "delta", "T", "tightest", "ratio_error_over_unified"])
        for j, lv in enumerate(m["levels"]):
            for i, T in enumerate(m["T"]):
                w.writerow([lv, m["delta"][j], T, m["tightest"][j, i], m["ratio_unified"][j, i]])
    with open(out_dir / "error_vs_horizon_ratios.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rr["rows"][0]))
        w.writeheader()
        w.writerows(rr["rows"])
    summary = {
        "config": cfg,
        "fit_from_T": FIT_FROM,
        "sweep": {
            name: {
                k: r[k]
                for k in (
                    "family",
                    "label",
                    "T",
                    "error_slope",
                    "error_slope_se",
                    "error_slope_short",
                    "fit_range",
                    "bound_slopes",
                    "vacuous_T",
                    "error_at_vacuous",
                )
            }
            | {
                "abs_error_median": np.median(r["abs_error"], 0),
                "bounds_median": {b: np.median(v, 0) for b, v in r["bounds"].items()},
                "delta_median": float(np.median(r["delta"])),
                "eps_median": float(np.median(r["eps"])),
            }
            for name, r in sweep.items()
        },
        "map": {
            "T": m["T"],
            "delta": m["delta"],
            "tightest": m["tightest"],
            "ratio_unified": m["ratio_unified"],
        },
        "random_pairs": {"instances": len(rr["rows"]), "worst_ratio": rr["worst"]},
    }
    (out_dir / RESULTS_JSON).write_text(dumps(summary, indent=1) + "\n")
    return [
        "error_vs_horizon.csv",
        "error_vs_horizon_map.csv",
        "error_vs_horizon_ratios.csv",
        "error_vs_horizon.json",
    ]


def run_study(out_dir: Path, quick: bool, progress: bool = True) -> list[dict]:
    """Compute everything, write figures + tables into out_dir; return figure-job records."""
    cfg = _config(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 3 * sum(_T_grid(cfg["T_max"])) + 3 * sum(_T_grid(cfg["T_max_counter"]))
    total += sum(_T_grid(min(cfg["T_max"], 4096)))
    total += sum(t * (cfg["random_pairs"] // len(cfg["random_T"])) // 8 for t in cfg["random_T"])
    with tqdm(total=total, desc="error_vs_horizon", unit="step", disable=not progress) as bar:
        sweep = horizon_sweep(cfg, bar)
        m = delta_T_map(cfg, bar)
        rr = random_ratios(cfg, bar)
    inputs = {"quick": quick, **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}
    inputs["families"] = FAMILIES
    recs = []
    for p in plot_sweep(sweep, out_dir):
        recs.append(
            {
                "path": p,
                "shows": "exact |Error| vs T next to every bound, three mismatch mechanisms",
                "inputs": inputs,
            }
        )
    for p in plot_map(m, out_dir):
        recs.append(
            {
                "path": p,
                "shows": "tightest bound and |Error|/B* over (delta, T), dense noise",
                "inputs": inputs,
            }
        )
    for p in plot_ratios(rr, out_dir):
        recs.append({"path": p, "shows": "|Error|/bound over random chain pairs", "inputs": inputs})
    for p in write_tables(sweep, m, rr, cfg, out_dir):
        recs.append(
            {
                "path": p,
                "shows": "the numbers plotted in error_vs_horizon*.png, slopes, vacuous T",
                "inputs": inputs,
            }
        )
    return recs


def figures_job(out_dir: Path, quick: bool) -> list[dict]:
    """`trm-bounds figures` hook."""
    return run_study(Path(out_dir), quick)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small configuration (CI, a few seconds)")
    ap.add_argument("--out", type=Path, default=Path("paper_figures"), help="output directory")
    args = ap.parse_args(argv)
    for rec in run_study(args.out, args.quick):
        print(args.out / rec["path"])
    return 0
