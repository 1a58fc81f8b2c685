"""Empirical vs theoretical error: exact |Error| next to every bound, T = 1 .. 16384 (issue 6).

What it measures, all exactly with the finite-state DP engine (`trm_bounds.chain`):
1. Horizon sweep. A last-2-token softmax policy (V = 8, S = 64, terminal reward in [0, 1])
   and a mismatched copy, for three mechanisms: dense logit noise (backend numerics),
   sparse top-2 flips in 5% of the states (MoE routing), staleness (a shared update direction).
   Several seeds per mechanism; |Error| and every bound at T = 1, 2, 4, ..., 16384; fitted
   log-log slopes of |Error| (per seed, then mean +- standard error) over T >= 64; the first
   T at which each bound's median over seeds exceeds 1 (JSON key `vacuous_T`) and |Error| there
   (`error_at_vacuous`). Level 1 is the largest possible |J(theta) - J(roll)| for rewards in
   [0, 1], not a limit on |Error| (`trm_bounds.counterexamples.large_error_pair` has Error =
   5.958): from that T on the bound still bounds |Error|, but it certifies no step whose
   surrogate gain L' <= 1, since a certified improvement needs L' > bound.
2. Map over (delta, T): dense noise of growing strength; which published bound is tightest
   (every bound attaining the minimum, joined by "=", so ties show), and |Error| / unified bound
   (0 where the unified bound is 0: at T = 1, where |Error| = 0 too).
3. Ratio distributions: |Error| / bound over many random automata, mechanisms, levels and T.

    python experiments/error_vs_horizon.py [--quick] [--out paper_figures] [--workers N]
                                           [--ray auto|local|ADDRESS] [--cache DIR]   (`main`)

Every exact batch is an independent seeded task (`make_tasks`, `run_task`, run by
`trm_bounds.taskpool`): in-process by default, a local process pool with --workers, a Ray
cluster with --ray; one progress bar counts the tasks; the JSON is byte-identical however they
ran. The script keeps finished tasks in --cache (default OUT/error_vs_horizon_cache, untracked),
so rerunning an interrupted command resumes it; `trm-bounds figures` runs in-process, uncached.

Writes error_vs_horizon.{png,pdf,csv}, error_vs_horizon_map.{png,pdf,csv},
error_vs_horizon_ratios.{png,pdf,csv} and error_vs_horizon.json (every plotted number,
slopes, the horizons where the bounds pass 1, worst ratios). `trm-bounds figures` runs it (`figures_job`, job
``experiments/error_vs_horizon``).
Default: about 2-3 minutes on 2 CPU cores; --quick: a few seconds.
"""

from __future__ import annotations

import argparse
import csv
import textwrap
from pathlib import Path

import numpy as np

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
from .plotting import LEVEL_ONE_NOTE, overlap_summary

__all__ = ["make_tasks", "run_task", "run_study", "figures_job", "main", "RESULTS_JSON"]

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


# --------------------------------------------------------------------------- tasks
# Every exact evaluation belongs to one independent seeded task (`trm_bounds.taskpool`): one
# batch of pairs, as the figures group them (the seeds of one (family, mechanism, T); the levels
# of one map column; the random pairs of one T). A task holds everything its pairs are built
# from, so the numbers do not depend on where or in which order the tasks run.
def make_tasks(cfg: dict) -> list[dict]:
    """The study's tasks (JSON-ready dicts with a unique "key"), the most expensive first."""
    tasks = []
    base = {"V": cfg["V"], "k": cfg["k"]}
    for fam in FAMILIES:
        for T in _T_grid(cfg["T_max"] if fam == "last2" else cfg["T_max_counter"]):
            for name in MECHANISMS:
                tasks.append(
                    {"key": f"sweep_{fam}_{name}_T{T}", "part": "sweep", "family": fam, "mechanism": name}
                    | {"T": T, "seeds": cfg["seeds"], **base}
                )
    for T in _T_grid(min(cfg["T_max"], 4096)):
        tasks.append({"key": f"map_T{T}", "part": "map", "T": T, "levels": cfg["map_levels"], **base})
    tasks += _random_tasks(cfg)
    return sorted(tasks, key=_cost, reverse=True)  # a pool stays busy to the end


def _cost(task: dict) -> int:
    n = {"sweep": task.get("seeds"), "map": task.get("levels")}.get(task["part"]) or len(task["pairs"])
    return task["T"] * n


def _random_tasks(cfg: dict) -> list[dict]:
    """One task per T of the random-pairs part; the draws of the one seeded generator are made
    here, in a fixed order, and carried by the tasks (automaton, mechanism, level, seed)."""
    rng = np.random.default_rng(2026)
    per_T = cfg["random_pairs"] // len(cfg["random_T"])
    tasks = []
    for T in cfg["random_T"]:
        pairs = []
        for i in range(per_T):
            kind = ("dense", "sparse", "stale")[i % 3]
            level = float(10 ** rng.uniform(-2.5, 0.0)) if kind != "sparse" else float(rng.uniform(0.01, 0.5))
            tr = random_automaton_transition(16, 4, rng)
            seed = int(rng.integers(2**31))
            pairs.append(
                {"mechanism": kind, "level": level, "transition": tr.tolist(), "seed": seed}
                | {"reward": ("final", "both")[i % 2]}
            )
        tasks.append({"key": f"random_T{T}", "part": "random", "T": T, "pairs": pairs})
    return tasks


def _task_pairs(task: dict) -> list[ChainPair]:
    T = task["T"]
    if task["part"] == "random":
        return [
            random_chain_pair(
                np.asarray(p["transition"], dtype=np.int64),
                CHAIN_MECHANISM[p["mechanism"]],
                p["level"],
                T,
                seed=p["seed"],
                reward=p["reward"],
            )
            for p in task["pairs"]
        ]
    tr = last_k_transition(task["V"], task["k"])
    if task["part"] == "map":
        levels = np.logspace(-3, 0.3, task["levels"])
        return [random_chain_pair(tr, "dense", float(lv), T, seed=7) for lv in levels]
    kind, level, _ = MECHANISMS[task["mechanism"]]
    if task["family"] == "last2":
        return [random_chain_pair(tr, kind, level, T, seed=100 + s) for s in range(task["seeds"])]
    return [counter_pair(kind, level, T, seed=100 + s) for s in range(task["seeds"])]


def run_task(task: dict) -> dict:
    """Exact results of one task's pairs, JSON-ready: {"pairs": [{"abs_error", "eps", "delta",
    "bounds": {published bound: value}}]} in the task's order."""
    return {
        "pairs": [
            {
                "abs_error": _abs_error(d),
                "eps": float(d["eps"]),
                "delta": float(d["delta"]),
                "bounds": {b: float(d["bounds"][b]) for b in PUBLISHED_BOUNDS},
            }
            for d in chain_quantities_batch(_task_pairs(task))
        ]
    }


# --------------------------------------------------------------------------- 1. horizon sweep
def horizon_sweep(cfg: dict, results: dict[str, dict]) -> dict:
    """{family/mechanism: arrays over seeds x T grid, slopes, first T with median bound > 1}
    from the sweep tasks' results (key -> run_task result)."""
    out = {}
    for fam in FAMILIES:
        grid = _T_grid(cfg["T_max"] if fam == "last2" else cfg["T_max_counter"])
        for name, (_, _, label) in MECHANISMS.items():
            err = np.zeros((cfg["seeds"], len(grid)))
            bnd = {b: np.zeros((cfg["seeds"], len(grid))) for b in PUBLISHED_BOUNDS}
            eps = np.zeros(cfg["seeds"])
            delta = np.zeros(cfg["seeds"])
            for i, T in enumerate(grid):
                for s, d in enumerate(results[f"sweep_{fam}_{name}_T{T}"]["pairs"]):
                    err[s, i] = d["abs_error"]
                    for b in PUBLISHED_BOUNDS:
                        bnd[b][s, i] = d["bounds"][b]
                    eps[s], delta[s] = d["eps"], d["delta"]  # reported: those at the largest T
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
def delta_T_map(cfg: dict, results: dict[str, dict]) -> dict:
    """Tightest published bound and |Error| / unified over (dense level, T), from the map tasks."""
    grid = _T_grid(min(cfg["T_max"], 4096))
    levels = np.logspace(-3, 0.3, cfg["map_levels"])
    tight = np.empty((len(levels), len(grid)), dtype=object)
    tight_value = np.zeros((len(levels), len(grid)))
    ratio = np.zeros((len(levels), len(grid)))
    delta = np.zeros(len(levels))
    for i, T in enumerate(grid):
        for j, d in enumerate(results[f"map_T{T}"]["pairs"]):
            cand = {b: d["bounds"][b] for b in TIGHT_CANDIDATES}
            tight[j, i] = "=".join(tightest(cand))
            tight_value[j, i] = min(cand.values())
            ratio[j, i] = d["abs_error"] / d["bounds"]["unified"] if d["bounds"]["unified"] > 0 else 0.0
            delta[j] = d["delta"]
    return dict(
        T=grid, levels=levels, delta=delta, tightest=tight, tightest_value=tight_value, ratio_unified=ratio
    )


def tightest(values: dict[str, float], rtol: float = 1e-9) -> list[str]:
    """Every name whose value is within rtol of the smallest (ties kept, in the dict's order).

    At T = 1 most bounds are exactly 0 and tie; adaptive_tv often equals adaptive_star.
    """
    m = min(values.values())
    return [b for b, v in values.items() if v <= m + rtol * abs(m)]


# --------------------------------------------------------------------------- 3. random pairs
def random_ratios(cfg: dict, results: dict[str, dict]) -> dict:
    """|Error| / bound over the random pairs, one row per pair, from the random tasks."""
    rows = []
    for task in _random_tasks(cfg):
        for p, d in zip(task["pairs"], results[task["key"]]["pairs"]):
            e = d["abs_error"]
            rows.append(
                dict(
                    T=task["T"],
                    mechanism=p["mechanism"],
                    level=p["level"],
                    abs_error=e,
                    delta=d["delta"],
                    eps=d["eps"],
                    **{
                        f"ratio_{b}": (e / d["bounds"][b] if d["bounds"][b] > 0 else 0.0)
                        for b in PUBLISHED_BOUNDS
                    },
                )
            )
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


_NOTE_WIDTH = 82  # characters per line of a panel's note (7 pt under a 5.6 inch panel)


def plot_sweep(sweep: dict, out_dir: Path) -> list[str]:
    """|Error| and every bound vs T, one panel per (family, mechanism); one legend for all.

    Each panel names the bounds it draws as one line (`overlap_summary`) and, where the median
    over seeds is exactly 0 at some T > 1 (no mismatch on the visited states in most seeds),
    says so: a log axis cannot draw 0.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = pyplot()
    fams = list(FAMILIES)
    fig, axes = plt.subplots(len(fams), len(MECHANISMS), figsize=(5.6 * len(MECHANISMS), 5.6 * len(fams)))
    for row, fam in enumerate(fams):
        for col, name in enumerate(MECHANISMS):
            ax, r = axes[row, col], sweep[f"{fam}/{name}"]
            T = np.array(r["T"])
            pos = lambda y: np.where(y > 0, y, np.nan)  # noqa: E731  (|Error| = 0 exactly at T = 1)
            medians = {b: np.median(r["bounds"][b], 0) for b in SHOWN + ("unified",)}
            for b, y in medians.items():
                c, ls = _STYLE[b]
                lw = 2.2 if b == "unified" else 1.3
                # a bound that is exactly 0 (T = 1, or delta = 0 for a seed) has no place on a log axis
                ax.plot(T, pos(y), color=c, ls=ls, lw=lw, marker=".", ms=3)
            med = pos(np.median(r["abs_error"], 0))
            lo, hi = pos(r["abs_error"].min(0)), pos(r["abs_error"].max(0))
            ax.fill_between(
                T, np.nan_to_num(lo, nan=1e-12), np.nan_to_num(hi, nan=1e-12), color="k", alpha=0.15, lw=0
            )
            ax.plot(T, med, "k-o", ms=3, lw=2)
            ax.axhline(1.0, color="r", lw=0.8, ls=(0, (6, 3)))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_ylim(1e-9, 1e12)
            ax.set_xlabel("horizon T (tokens)")
            if col == 0:
                ax.set_ylabel(f"{fam}: |Error| and bounds\n(objective units, R in [0, 1])")
            slope = f"{r['error_slope']:.2f} +- {r['error_slope_se']:.2f}"
            ax.set_title(
                f"{fam} / {r['label']}\n"
                f"delta = {np.median(r['delta']):.2g} nats, eps = {np.median(r['eps']):.2g}; "
                f"|Error| slope (T >= {FIT_FROM:g}) {slope}",
                fontsize=8,
            )
            ax.grid(alpha=0.3, which="major")
            same = "\n".join(textwrap.fill(x, _NOTE_WIDTH) for x in overlap_summary(T, medians).splitlines())
            note = "\n".join(x for x in (same, _zero_median_note(r)) if x)
            ax.text(0.0, -0.2, note, transform=ax.transAxes, va="top", ha="left", fontsize=7)
    handles = [
        Line2D(
            [], [], color=_STYLE[b][0], ls=_STYLE[b][1], lw=2.2 if b == "unified" else 1.3, marker=".", ms=3
        )
        for b in SHOWN + ("unified",)
    ]
    labels = list(SHOWN + ("unified",))
    handles += [
        Line2D([], [], color="k", marker="o", ms=3, lw=2),
        Patch(color="k", alpha=0.15, lw=0),
        Line2D([], [], color="r", lw=0.8, ls=(0, (6, 3))),
    ]
    labels += [
        "true |Error|, median over seeds (= 0 exactly at T = 1: not drawn)",
        "|Error|, min-max over seeds",
        "level 1: " + LEVEL_ONE_NOTE,
    ]
    fig.legend(
        handles, labels, loc="lower center", ncol=4, fontsize=8.5, frameon=False, bbox_to_anchor=(0.5, 0.0)
    )
    fig.suptitle(
        "Exact |Error| = |J(theta) - J(roll) - L'| vs each published bound (median over seeds)", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, out_dir, "error_vs_horizon")


def _zero_median_note(r: dict) -> str:
    """Lines for a panel whose median |Error| is exactly 0 at some T > 1, "" otherwise."""
    T = np.asarray(r["T"])
    zero = np.sum(r["abs_error"] == 0, axis=0)  # seeds with |Error| = 0 exactly, per T
    n = r["abs_error"].shape[0]
    where = (T > 1) & (np.median(r["abs_error"], 0) == 0)
    if not where.any():
        return ""
    k_lo, k_hi = zero[where].min(), zero[where].max()
    k = f"{k_lo}" if k_lo == k_hi else f"{k_lo}-{k_hi}"
    return textwrap.fill(
        f"T = {', '.join(str(t) for t in T[where])}: |Error| is exactly 0 in {k} of the {n} seeds "
        "(no mismatch on the states visited), so its median is 0: not drawn on a log axis, nor is a "
        "bound whose median is 0 (a lone dot: a median with no drawn neighbour). Grey band: min-max "
        "of |Error| over the seeds.",
        _NOTE_WIDTH,
    )


def plot_map(m: dict, out_dir: Path) -> list[str]:
    """Left: the tightest published bound per (delta, T), ties as their own category (at T = 1
    most bounds are exactly 0). Right: log10(|Error| / B*), the cells where B* = 0 (0/0) hatched."""
    from matplotlib.patches import Patch

    plt = pyplot()
    names = list(dict.fromkeys(m["tightest"][:, ::-1].T.ravel()))  # categories, largest T first
    code = np.vectorize(names.index)(m["tightest"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 6.2), layout="constrained")
    cmap = plt.get_cmap("tab10", max(len(names), 2))
    a1.imshow(code, origin="lower", aspect="auto", cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5)
    zero = m["tightest_value"] == 0

    def label(cat: str) -> str:
        k = cat.count("=") + 1
        if k == 1:
            return cat
        cells = m["tightest"] == cat
        if np.all(zero[cells]):
            return f"tie at 0 ({k} bounds equal 0; there |Error| = 0 too):\n" + textwrap.fill(
                ", ".join(cat.split("=")), 60
            )
        return textwrap.fill(" = ".join(cat.split("=")) + f" (tie of {k})", 60)

    a1.legend(
        [Patch(color=cmap(i)) for i in range(len(names))],
        [label(c) for c in names],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.2),
        fontsize=7.5,
        frameon=False,
    )
    a1.set_title("tightest published bound (dense noise; ties shown as such)", fontsize=9)
    undefined = m["ratio_unified"] == 0  # B* = 0 (T = 1): |Error| / B* is 0/0, not a ratio
    shown = np.where(undefined, np.nan, np.log10(np.maximum(m["ratio_unified"], 1e-300)))
    cmap2 = plt.get_cmap("viridis").with_extremes(bad="white")
    r = a2.imshow(shown, origin="lower", aspect="auto", cmap=cmap2)
    for j, i in zip(*np.nonzero(undefined)):
        a2.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="///", ec="0.6", lw=0))
    if undefined.any():
        a2.text(
            0.02,
            -0.2,
            "hatched: B* = 0 and |Error| = 0 (T = 1), no ratio to show",
            transform=a2.transAxes,
            fontsize=7.5,
            va="top",
        )
    cb2 = fig.colorbar(r, ax=a2)
    cb2.set_label("log10(|Error| / unified bound B*)")
    a2.set_title("how much of B* the true error uses (0 = tight; -6 = a millionth)", fontsize=9)
    for ax in (a1, a2):
        ax.set_xticks(range(len(m["T"])), [str(t) for t in m["T"]], rotation=60, fontsize=7)
        ax.set_yticks(range(len(m["delta"])), [f"{d:.1e}" for d in m["delta"]], fontsize=7)
        ax.set_xlabel("horizon T (tokens)")
        ax.set_ylabel("delta = max token KL (nats)")
    return _save(fig, out_dir, "error_vs_horizon_map")


RATIO_SHOWN = ("classical_kl", "pm_kl", "mix_kl", "mix_tv", "coupling", "adaptive_star", "unified")


def plot_ratios(rr: dict, out_dir: Path) -> list[str]:
    """|Error| / bound over the random pairs: one histogram per bound (small multiples, same
    axes), each panel naming the bounds whose ratio equals its own on most pairs."""
    plt = pyplot()
    ratios = {b: np.array([r[f"ratio_{b}"] for r in rr["rows"]]) for b in RATIO_SHOWN}
    n = len(rr["rows"])
    ncol = 4
    nrow = -(-(len(RATIO_SHOWN) + 1) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.9 * nrow), sharex=True, sharey=True)
    axes = axes.ravel()
    bins = np.logspace(-12, 0.5, 51)
    for ax, b in zip(axes, RATIO_SHOWN):
        vals = ratios[b][ratios[b] > 0]
        c, _ = _STYLE[b]
        ax.hist(vals, bins=bins, color=c, alpha=0.85)
        ax.axvline(1.0, color="r", ls="--", lw=1)
        same = [
            f"{o} on {k} of {n}"
            for o in RATIO_SHOWN
            if o != b and (k := int(np.sum(np.isclose(ratios[o], ratios[b], rtol=1e-9, atol=0)))) >= n / 2
        ]
        text = f"worst {rr['worst'][b]:.2g}, median {np.median(ratios[b]):.2g}"
        if vals.size < n:
            text += f"\n{n - vals.size} at ratio 0 (|Error| or\nbound = 0): not drawn"
        if same:
            text += "\nequal to " + ", ".join(same) + "\n(identical histograms)"
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=7)
        ax.set_title(b, fontsize=9, color=c)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, axes[0].get_ylim()[1] * 1.45)  # room for each panel's text (shared y)
    over = sum(int(np.sum(v > 1.0)) for v in ratios.values())
    over = "no pair is" if over == 0 else f"{over} (pair, bound) cases are"
    for ax in axes[len(RATIO_SHOWN) :]:
        ax.axis("off")
    axes[len(RATIO_SHOWN)].text(
        0.0,
        0.95,
        textwrap.fill(
            "Each panel: the ratio |Error| / bound over the same random pairs. Right of the red "
            f"dashed line (ratio 1) a bound would be violated: {over}. A ratio of 1e-6 means the "
            "bound is a million times the true error. unified = min(pm_kl, pm_tv, mix_kl, mix_tv, "
            "coupling, adaptive_star), so it equals one of them on every pair.",
            48,
        ),
        transform=axes[len(RATIO_SHOWN)].transAxes,
        va="top",
        fontsize=7.5,
    )
    for ax in axes[::ncol]:
        ax.set_ylabel("number of pairs")
    for ax in axes[-ncol:]:
        ax.set_xlabel("|Error| / bound (< 1: holds)")
        ax.tick_params(labelbottom=True)
    fig.suptitle(
        f"{n} random automata (S = 16, V = 4), three mechanisms, "
        f"T in {sorted({r['T'] for r in rr['rows']})}: |Error| / bound, one panel per bound",
        fontsize=10,
    )
    fig.tight_layout()
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


def run_study(
    out_dir: Path,
    quick: bool,
    progress: bool = True,
    *,
    workers: int = 1,
    ray: str | None = None,
    cache_dir: Path | None = None,
) -> list[dict]:
    """Run every task (in-process, `workers` local processes or on Ray; finished tasks kept in
    `cache_dir`), write figures + tables into out_dir; return figure-job records."""
    from ..taskpool import run_tasks

    cfg = _config(quick)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = make_tasks(cfg)
    done = run_tasks(
        run_task,
        tasks,
        cache_dir=cache_dir,
        workers=workers,
        ray=ray,
        progress=progress,
        desc="error_vs_horizon",
    )
    results = {t["key"]: r for t, r in zip(tasks, done)}
    sweep = horizon_sweep(cfg, results)
    m = delta_T_map(cfg, results)
    rr = random_ratios(cfg, results)
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
                "shows": "the numbers in error_vs_horizon*.png, slopes, first T with median bound > 1",
                "inputs": inputs,
            }
        )
    return recs


def figures_job(out_dir: Path, quick: bool) -> list[dict]:
    """`trm-bounds figures` hook."""
    return run_study(Path(out_dir), quick)


def main(argv=None) -> int:
    from ..taskpool import add_arguments

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small configuration (CI, a few seconds)")
    ap.add_argument("--out", type=Path, default=Path("paper_figures"), help="output directory")
    add_arguments(ap, "error_vs_horizon_cache")
    args = ap.parse_args(argv)
    cache = args.cache if args.cache is not None else args.out / "error_vs_horizon_cache"
    for rec in run_study(args.out, args.quick, workers=args.workers, ray=args.ray, cache_dir=cache):
        print(args.out / rec["path"])
    return 0
