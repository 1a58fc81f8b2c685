"""Toy analogues of the TRM paper's training figures (docs/theory.md section 8), with exact J every step.

What it measures, on the exact environment (MoE policy, P = 3 prompts, V = 4 with EOS, T = 5,
`match` reward, GRPO groups 8 x 8, Adam), over seeds 0, 1, 2 (mean line, min-max band):
- Fig. 1: token-level IS vs PPO clipping [0.8, 1.28];
- Fig. 2: TRM-Max (delta 0.05) and TRM-Avg (delta 0.001) vs PPO clipping;
- Fig. 3: TRM-Max (0.1) and TRM-Avg (0.002) alone vs their combination;
  each as exact J(pi_theta_new) and the log-perplexity gap over steps, in two mismatch regimes:
  "rare" (router noise 0.1 on a top-2-of-8 router: rare, concentrated flips) and "strong"
  (router noise 0.3 on a top-1-of-4 router with near-ties: a flip swaps the whole expert);
- length bias: acceptance vs response length of TRM-Max, TRM-Avg, LN-TRM and SER on 4000 rollouts
  (V = 3, T = 8) of a mismatched MoE pair;
- certified mode (beyond the paper): TRM-Max plain vs certified (backtrack/skip), tabular policy with
  bf16 rollouts (dense numeric mismatch) and MoE policy with fp16 rollouts (fp16 rounding flips routes).
Every step's certificate (L' > B*) and violation (certified but J_new <= J_roll) are counted; the
totals go to train_figures.json (they feed the audit, claims C13, C18, C24).

Run by ``trm-bounds figures`` (job ``experiments/train_figures``) and by the script
``python experiments/train_figures.py [--quick] [--out paper_figures]`` (`main`).
Writes into OUT/training/: fig1_token_is_vs_ppo, fig2_trm_vs_ppo, fig3_single_vs_combined,
length_bias, certified_mode (.png + .pdf each), curves.csv (every step of every run),
length_bias.csv, final_table.csv / .md (final exact J over seeds per regime and run, with
acceptance and log-ppl gap), train_figures.json (per-run summaries and totals).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from .. import masks, taskpool
from .._compute import cores, kernel_threads
from .._savefig import save_figure
from ..mismatch import RolloutEngine
from ..pair import sample_trajectories, token_kl_along, token_logprobs
from ..policies import MoEConfig, MoEPolicy
from ..taskpool import run_tasks
from ..trainer import TrainConfig, _response_mask, train
from . import pyplot

__all__ = [
    "SUBDIR",
    "training_tasks",
    "run_one",
    "run_training",
    "start_background",
    "length_bias",
    "totals",
    "tally_by_threshold",
    "final_table",
    "final_table_markdown",
    "figures_job",
    "main",
]

SUBDIR = "training"
SEEDS = (0, 1, 2)
REGIMES = {
    "rare": dict(mismatch="moe=0.1", lr=0.01),
    "strong": dict(mismatch="moe=0.3", n_experts=4, top_k=1, router_scale=0.5, lr=0.03),
}
RUNS = {  # label -> (method, thresholds)
    "token-IS": ("token-is", {}),
    "PPO-clip": ("ppo-clip", {}),
    "TRM-Max 0.05": ("trm-max", dict(max_threshold=0.05)),
    "TRM-Avg 0.001": ("trm-avg", dict(avg_threshold=0.001)),
    "TRM-Max 0.1": ("trm-max", dict(max_threshold=0.1)),
    "TRM-Avg 0.002": ("trm-avg", dict(avg_threshold=0.002)),
    "TRM-Max+Avg 0.1/0.002": ("trm-max+avg", dict(max_threshold=0.1, avg_threshold=0.002)),
}
FIGURES = {
    "fig1_token_is_vs_ppo": ("Fig. 1 analogue: token-level IS vs PPO clipping", ["token-IS", "PPO-clip"]),
    "fig2_trm_vs_ppo": (
        "Fig. 2 analogue: TRM-Max / TRM-Avg vs PPO clipping",
        ["TRM-Max 0.05", "TRM-Avg 0.001", "PPO-clip"],
    ),
    "fig3_single_vs_combined": (
        "Fig. 3 analogue: loose single criteria vs their combination",
        ["TRM-Max 0.1", "TRM-Avg 0.002", "TRM-Max+Avg 0.1/0.002"],
    ),
}
CERTIFIED_REGIMES = {  # certified mode vs plain TRM-Max (delta 0.05)
    "tabular, bf16 rollouts": dict(method="trm-max", policy="tabular", mismatch="precision=bf16", lr=0.1),
    "MoE, fp16 rollouts": dict(method="trm-max", mismatch="precision=fp16", lr=0.01),
}
LENGTH_METHODS = {  # label -> sequence_mask(method, **params), exact KL for the TRM rows
    "TRM-Max (exact KL) 0.05": ("trm-max", dict(delta=0.05), True),
    "TRM-Avg (exact KL) 0.001": ("trm-avg", dict(delta_avg=0.001), True),
    "LN-TRM 0.05": ("ln-trm", dict(delta_w=0.05, delta=0.05, eps=0.158), False),
    "SER 0.05": ("ser", dict(delta_ser=0.05), False),
}


LINESTYLES = ("-", "--", ":")
# imported by the worker processes before their first run (taskpool's fork server): torch's
# optimizers import torch._dynamo on first use, ~1.7 s of CPU that every worker paid again
PRELOAD = ("torch._dynamo",)


def _seeds(quick: bool) -> tuple[int, ...]:
    return SEEDS[:2] if quick else SEEDS


def _steps(quick: bool) -> int:
    return 3 if quick else 80


def training_tasks(quick: bool) -> list[dict]:
    """The runs of Figs. 1-3 and of the certified mode, one seeded task each (`run_one`'s input)."""
    seeds = _seeds(quick)
    runs = [(reg, label, seed) for reg in REGIMES for label in RUNS for seed in seeds]
    runs += [
        (reg, mode, seed) for reg in CERTIFIED_REGIMES for mode in ("plain", "certified") for seed in seeds
    ]
    return [
        {"key": f"run{i:03d}", "regime": reg, "label": label, "seed": seed, "steps": _steps(quick)}
        for i, (reg, label, seed) in enumerate(runs)
    ]


def run_one(task: dict) -> dict:
    """One training run of `training_tasks` -> {regime, label, seed, config, summary, steps}.

    Depends only on the task (its seed; torch on one thread inside `train`), so the same
    numbers come back in-process or from a worker process.
    """
    reg, label, seed, steps = task["regime"], task["label"], task["seed"], task["steps"]
    if reg in CERTIFIED_REGIMES:
        mode = dict(certified=label == "certified")
        cfg = TrainConfig(steps=steps, seed=seed, **mode, **CERTIFIED_REGIMES[reg])
    else:
        method, kw = RUNS[label]
        cfg = TrainConfig(method=method, steps=steps, seed=seed, **REGIMES[reg], **kw)
    res = train(cfg)
    return {
        "regime": reg,
        "label": label,
        "seed": seed,
        "config": cfg.to_json(),
        "summary": res.summary,
        "steps": res.steps,
    }


def _background_name(quick: bool) -> str:
    return f"train_figures-quick={quick}"


# CPU seconds of one default run, measured on 2026-12-01 (2-core machine): the order of `_longest_first`
_RUN_SECONDS = {"rare": 0.70, "strong": 0.61, "tabular, bf16 rollouts": 0.54, "MoE, fp16 rollouts": 0.75}
_CERTIFIED_MOE_SECONDS = 2.8  # backtracks up to 8 times a step, and mostly does


def _longest_first(tasks: list[dict]) -> list[dict]:
    """The tasks in the order to hand them to workers, slowest first (`_RUN_SECONDS`), so that
    the pool does not end on one long run while the other workers idle. Stable among equals;
    results are put back in task order (`_in_task_order`)."""

    def seconds(t: dict) -> float:
        if t["regime"] == "MoE, fp16 rollouts" and t["label"] == "certified":
            return _CERTIFIED_MOE_SECONDS
        return _RUN_SECONDS.get(t["regime"], 1.0)

    return sorted(tasks, key=seconds, reverse=True)


def _in_task_order(results: list[dict], ran: list[dict], tasks: list[dict]) -> list[dict]:
    """results[i] of ran[i], reordered to the order of `tasks` (the same task dicts, by key)."""
    by_key = {t["key"]: r for t, r in zip(ran, results)}
    return [by_key[t["key"]] for t in tasks]


def start_background(quick: bool) -> str:
    """Start the figure runs on one worker process per core and return at once.

    `trm-bounds figures` calls this first and runs its other jobs meanwhile; `run_training`
    (workers=None) then collects the results instead of running them again. Every core, not
    the cores free at this instant: the fork server importing for these workers (or a job
    starting) would otherwise count as load and halve the pool for the whole run. Returns the
    taskpool name of the run (`taskpool.background_done`).
    """
    name = _background_name(quick)
    tasks = _longest_first(training_tasks(quick))
    taskpool.start_background(name, run_one, tasks, workers=cores(), preload=PRELOAD)
    return name


def run_training(quick: bool, progress: bool = True, workers: int | None = None) -> list[dict]:
    """Every (regime, run, seed) of Figs. 1-3 plus the certified-mode runs; one dict per run with its log.

    workers: local processes (`trm_bounds.taskpool`); None = the runs `start_background` started
    if it was called, else the cores free now (TRM_BOUNDS_THREADS overrides). The results do not
    depend on where they ran (tests check).
    """
    tasks = training_tasks(quick)
    ran = _longest_first(tasks)
    if workers is None and taskpool.has_background(_background_name(quick)):
        return _in_task_order(taskpool.collect_background(_background_name(quick)), ran, tasks)
    if workers is None:
        workers = kernel_threads()
    results = run_tasks(
        run_one, ran, workers=min(workers, len(ran)), progress=progress, desc="train_figures",
        preload=PRELOAD,
    )  # fmt: skip
    return _in_task_order(results, ran, tasks)


def length_bias(quick: bool) -> list[dict]:
    """Acceptance by response length for each LENGTH_METHODS rule on n rollouts of a mismatched MoE pair."""
    n = 300 if quick else 4000
    rows = []
    for seed in _seeds(quick):
        pol = MoEPolicy(MoEConfig(P=2, V=3, T=8, eos=0, seed=seed, n_experts=8, top_k=2, router_scale=2.0))
        eng = RolloutEngine("moe=0.1", generator=torch.Generator().manual_seed(seed))
        roll = eng.log_prob_tree(pol)
        with torch.no_grad():
            theta = [x.detach() for x in pol.log_prob_tree()]
        pp = torch.full((2,), 0.5, dtype=torch.float64)
        b = sample_trajectories(roll, pp, n, torch.Generator().manual_seed(100 + seed))
        lp_theta = token_logprobs(theta, b["prompt"], b["tokens"])  # (n, T) log pi_theta(y_t | c_t)
        rmask, L = _response_mask(b["tokens"], 0)
        kl = token_kl_along(roll, theta, b["prompt"], b["tokens"])
        for label, (method, params, exact) in LENGTH_METHODS.items():
            res = masks.sequence_mask(
                method, lp_theta, b["logp"], rmask, exact_kl=kl if exact else None, **params
            )
            keep = res.seq_keep.bool()
            for ell in range(1, 9):
                sel = L == ell
                if int(sel.sum()) >= 5:
                    rows.append(
                        {
                            "seed": seed,
                            "method": label,
                            "length": ell,
                            "n": int(sel.sum()),
                            "acceptance": float(keep[sel].double().mean()),
                        }
                    )
    return rows


# --------------------------------------------------------------------------- plotting
def _band(ax, runs: list[dict], key: str, label: str, color, ls="-", smooth: int = 1) -> None:
    """Mean over seeds (line) and min-max (band) of a logged key; `smooth` > 1: trailing moving average."""
    Y = np.array([[s[key] for s in r["steps"]] for r in runs])  # (seeds, steps)
    if smooth > 1 and Y.shape[1] >= smooth:
        kernel = np.ones(smooth) / smooth
        Y = np.array([np.convolve(y, kernel, mode="valid") for y in Y])
    x = np.arange(Y.shape[1]) + 1 + (smooth - 1 if smooth > 1 and len(runs[0]["steps"]) >= smooth else 0)
    ax.plot(x, Y.mean(0), color=color, label=label, lw=1.6, ls=ls)
    ax.fill_between(x, Y.min(0), Y.max(0), color=color, alpha=0.15, lw=0)


def _save(fig, out: Path, stem: str) -> list[Path]:
    plt = pyplot()
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.tight_layout()
    for p in paths:
        save_figure(fig, p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def plot_training_figure(results: list[dict], stem: str, out: Path) -> list[Path]:
    plt = pyplot()
    title, labels = FIGURES[stem]
    fig, axes = plt.subplots(len(REGIMES), 2, figsize=(10, 3.2 * len(REGIMES)), squeeze=False)
    colors = plt.cm.tab10.colors
    for i, reg in enumerate(REGIMES):
        for j, label in enumerate(labels):
            runs = [r for r in results if r["regime"] == reg and r["label"] == label]
            _band(axes[i, 0], runs, "J_new", label, colors[j], LINESTYLES[j])
            _band(axes[i, 1], runs, "log_ppl_gap", label, colors[j], LINESTYLES[j], smooth=5)
        same = _identical_runs(results, reg, labels)
        if same:
            axes[i, 0].text(
                0.98,
                0.04,
                same,
                transform=axes[i, 0].transAxes,
                ha="right",
                va="bottom",
                fontsize=7,
                bbox=dict(facecolor="white", edgecolor="0.8", alpha=0.9, pad=2),
            )
        axes[i, 0].set_ylabel(f"{reg}: exact J(pi_theta)")
        axes[i, 1].set_ylabel("log-perplexity gap\n(5-step moving average)")
        axes[i, 1].set_yscale("log")
        for ax in axes[i]:
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
    axes[0, 0].legend(fontsize=8, loc="upper left")  # J rises from the lower left; the note sits lower right
    n_seeds = len({r["seed"] for r in results})
    fig.suptitle(f"{title} (toy, exact J; mean and min-max over {n_seeds} seeds)", fontsize=10)
    return _save(fig, out, stem)


def _identical_runs(results: list[dict], regime: str, labels: list[str]) -> str:
    """ "A = B: identical runs (one line hides the other)" for runs of a regime whose logged J and
    log-ppl gap agree at every step of every seed (`coincident_groups`), "" when none do."""
    from .plotting import coincident_groups

    curves = {}
    for label in labels:
        runs = sorted(
            (r for r in results if r["regime"] == regime and r["label"] == label), key=lambda r: r["seed"]
        )
        curves[label] = [s[k] for r in runs for s in r["steps"] for k in ("J_new", "log_ppl_gap")]
    groups = [g for g in coincident_groups(curves) if len(g) > 1]
    return (
        "identical runs (one line hides the other):\n" + "\n".join(" = ".join(g) for g in groups)
        if groups
        else ""
    )


def plot_certified(results: list[dict], out: Path) -> list[Path]:
    """Exact J and the applied step scale of plain vs certified TRM-Max. The scale is 1 or
    2^-k after k halvings (k <= max_backtracks), 0 when skipped: a symlog axis in base 2 with a
    tick at every other power, its linear part [0, 2^-k_max] holding the skipped steps."""
    plt = pyplot()
    n = len(CERTIFIED_REGIMES)
    k_max = max(
        int(r["config"].get("max_backtracks", 8)) for r in results if r["regime"] in CERTIFIED_REGIMES
    )
    fig, axes = plt.subplots(n, 2, figsize=(10.5, 3.3 * n), squeeze=False)
    colors = plt.cm.tab10.colors
    for i, reg in enumerate(CERTIFIED_REGIMES):
        for j, mode in enumerate(("plain", "certified")):
            runs = [r for r in results if r["regime"] == reg and r["label"] == mode]
            _band(axes[i, 0], runs, "J_new", f"J(theta_new), {mode} TRM-Max", colors[j])
            _band(axes[i, 0], runs, "J_roll", f"J(roll), {mode} TRM-Max", colors[j + 2], ls="--")
            _band(axes[i, 1], runs, "step_scale", f"{mode} TRM-Max", colors[j])
        axes[i, 0].set_ylabel(f"{reg}\nexact J")
        ax = axes[i, 1]
        ax.set_yscale("symlog", base=2, linthresh=2.0**-k_max, linscale=0.5)
        ticks = [0.0] + [2.0**-k for k in range(k_max, -1, -2)]
        ax.set_yticks(ticks, ["0 (skipped)"] + [f"1/{2**k}" if k else "1" for k in range(k_max, -1, -2)])
        ax.set_ylim(-(2.0 ** -(k_max + 2)), 1.6)
        ax.set_ylabel("applied step scale\n(1 = full step; 1/2^k: k halvings)", fontsize=9)
        for ax in axes[i]:
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].legend(fontsize=7, loc="center right")
    n_seeds = len({r["seed"] for r in results if r["regime"] in CERTIFIED_REGIMES})
    fig.suptitle(
        "Certified mode: halve the step until L' > B*, else skip (exact J never below J(roll))\n"
        f"lines: mean over {n_seeds} seeds; bands: min-max over seeds",
        fontsize=10,
    )
    return _save(fig, out, "certified_mode")


def plot_length_bias(rows: list[dict], out: Path) -> list[Path]:
    """Acceptance by response length, one marker per method dodged sideways at each length:
    the mean over seeds, bars from the smallest to the largest seed's acceptance."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4))
    k = len(LENGTH_METHODS)
    width = 0.6  # of one length unit, shared by the k methods
    n_seeds = len({r["seed"] for r in rows})
    for j, label in enumerate(LENGTH_METHODS):
        sub = [r for r in rows if r["method"] == label]
        lengths = sorted({r["length"] for r in sub})
        acc = np.array(
            [
                [
                    next((r["acceptance"] for r in sub if r["length"] == ell and r["seed"] == s), np.nan)
                    for ell in lengths
                ]
                for s in sorted({r["seed"] for r in sub})
            ]
        )
        mean = np.nanmean(acc, 0)
        x = np.array(lengths) + width * ((j + 0.5) / k - 0.5)
        ax.errorbar(
            x,
            mean,
            yerr=[mean - np.nanmin(acc, 0), np.nanmax(acc, 0) - mean],
            label=label,
            color=plt.cm.tab10.colors[j],
            marker="os^D"[j % 4],
            ms=4,
            ls="none",
            capsize=2,
            elinewidth=1,
        )
    lengths = sorted({r["length"] for r in rows})
    ax.set_xticks(lengths)
    for ell in lengths[:-1]:
        ax.axvline(ell + 0.5, color="0.85", lw=0.6)
    ax.set_xlabel("response length (position of first EOS)")
    ax.set_ylabel("acceptance (fraction of the rollouts kept)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(
        "Length bias of sequence masks (MoE router noise 0.1, V=3, T=8)\n"
        f"marker: mean over {n_seeds} seeds; bar: min-max over the seeds "
        "(lengths with >= 5 rollouts in a seed)",
        fontsize=9,
    )
    return _save(fig, out, "length_bias")


# --------------------------------------------------------------------------- numbers
def totals(results: list[dict]) -> dict:
    """Certified steps and violations over every run, and certified-mode statistics."""
    tot = {
        "runs": len(results),
        "steps": sum(r["summary"]["steps"] for r in results),
        "certified_steps": sum(r["summary"]["certified_steps"] for r in results),
        "violations": sum(r["summary"]["violations"] for r in results),
    }
    cert = [r for r in results if r["regime"] in CERTIFIED_REGIMES and r["label"] == "certified"]
    tot["certified_mode"] = {
        "steps": sum(r["summary"]["steps"] for r in cert),
        "shrunk": sum(r["summary"]["shrunk"] for r in cert),
        "skipped": sum(r["summary"]["skipped"] for r in cert),
        "applied_below_roll": sum(r["summary"]["applied_below_roll"] for r in cert),
    }
    for reg in CERTIFIED_REGIMES:
        c = [r["summary"] for r in cert if r["regime"] == reg]
        p = [r["summary"] for r in results if r["regime"] == reg and r["label"] == "plain"]
        tot["certified_mode"][reg] = {
            "steps": sum(s["steps"] for s in c),
            "shrunk": sum(s["shrunk"] for s in c),
            "skipped": sum(s["skipped"] for s in c),
            "J_first_mean": float(np.mean([s["J_first"] for s in c])),
            "J_last_mean_certified": float(np.mean([s["J_last"] for s in c])),
            "J_last_mean_plain": float(np.mean([s["J_last"] for s in p])),
            "certified_steps_plain": sum(s["certified_steps"] for s in p),
            "violations_plain": sum(s["violations"] for s in p),
        }
    acc_hi = [s for r in results if r["regime"] in REGIMES for s in r["steps"] if s["acceptance"] >= 0.7]
    tot["high_acceptance_steps"] = len(acc_hi)
    by_thr = tally_by_threshold(
        (r["config"]["max_threshold"], r["steps"])
        for r in results
        if r["regime"] in REGIMES and r["config"]["method"] in ("trm-max", "trm-max+avg")
    )
    tot["trm_max_by_threshold"] = by_thr
    return tot


def final_table(results: list[dict]) -> list[dict]:
    """One row per (regime of Figs. 1-3, run): the final exact J over the seeds (mean, sample
    standard deviation (ddof = 1; 0 for one seed), min, max), and the mean over seeds of each
    run's mean acceptance and mean log-perplexity gap. Rows in REGIMES x RUNS order."""
    rows = []
    for reg in REGIMES:
        for label in RUNS:
            s = [r["summary"] for r in results if r["regime"] == reg and r["label"] == label]
            if not s:
                continue
            J = np.array([x["J_last"] for x in s])
            rows.append(
                {
                    "regime": reg,
                    "run": label,
                    "seeds": len(s),
                    "J_last_mean": float(J.mean()),
                    "J_last_std": float(J.std(ddof=1)) if len(J) > 1 else 0.0,
                    "J_last_min": float(J.min()),
                    "J_last_max": float(J.max()),
                    "acceptance_mean": float(np.mean([x["acceptance_mean"] for x in s])),
                    "log_ppl_gap_mean": float(np.mean([x["log_ppl_gap_mean"] for x in s])),
                }
            )
    return rows


def final_table_markdown(rows: list[dict]) -> str:
    """`final_table` as a Markdown table (3 decimals for J, 2 for the rest)."""
    lines = [
        "| regime | run | final exact J, mean +- sample std | min - max over seeds | acceptance "
        "| log-ppl gap |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['regime']} | {r['run']} | {r['J_last_mean']:.3f} +- {r['J_last_std']:.3f} | "
            f"{r['J_last_min']:.3f} - {r['J_last_max']:.3f} | {r['acceptance_mean']:.2f} | "
            f"{r['log_ppl_gap_mean']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def tally_by_threshold(runs) -> dict[str, dict]:
    """Per TRM-Max threshold: steps, steps with acceptance >= 70%, those of them whose exact global
    max token KL (`delta_mismatch`, pi_roll vs pi_theta_old) exceeded the threshold, steps with
    B* < 1, and certified steps (C18, C24 evidence).

    runs: iterable of (threshold, list of step-log dicts with keys certified, bound_unified,
    acceptance, delta_mismatch).
    """
    by_thr: dict[str, dict] = {}
    for thr, steps in runs:
        keys = ("steps", "acc_ge_0.7", "acc_ge_0.7_but_delta_above", "bound_below_1", "certified")
        d = by_thr.setdefault(str(thr), dict.fromkeys(keys, 0))
        for s in steps:
            d["steps"] += 1
            d["certified"] += bool(s["certified"])
            d["bound_below_1"] += s["bound_unified"] < 1
            if s["acceptance"] >= 0.7:
                d["acc_ge_0.7"] += 1
                d["acc_ge_0.7_but_delta_above"] += s["delta_mismatch"] > thr
    return by_thr


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def figures_job(out_dir: Path, quick: bool) -> list[dict]:
    """Run everything, write figures + CSV/JSON into out_dir/training, return manifest records."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread avoids contention on shared cores
    try:
        results = run_training(quick)
        lb = length_bias(quick)
    finally:
        torch.set_num_threads(n_threads)
    out = Path(out_dir) / SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    inputs = {"seeds": list(_seeds(quick)), "steps": _steps(quick), "regimes": REGIMES, "quick": quick}
    records = []
    for stem, (title, labels) in FIGURES.items():
        for p in plot_training_figure(results, stem, out):
            records.append(
                {
                    "path": f"{SUBDIR}/{p.name}",
                    "shows": f"{title}: exact J and log-ppl gap over steps",
                    "inputs": inputs | {"runs": {lb_: RUNS[lb_] for lb_ in labels}},
                }
            )
    for p in plot_certified(results, out):
        records.append(
            {
                "path": f"{SUBDIR}/{p.name}",
                "shows": "certified mode vs plain TRM-Max: exact J, step scale",
                "inputs": inputs | {"regimes": CERTIFIED_REGIMES},
            }
        )
    for p in plot_length_bias(lb, out):
        records.append(
            {
                "path": f"{SUBDIR}/{p.name}",
                "shows": "acceptance vs response length, four sequence masks",
                "inputs": {
                    "seeds": list(_seeds(quick)),
                    "methods": {k: v[:2] for k, v in LENGTH_METHODS.items()},
                },
            }
        )
    curve_rows = [
        {
            "regime": r["regime"],
            "run": r["label"],
            "seed": r["seed"],
            "step": s["step"],
            "J_roll": s["J_roll"],
            "J_old": s["J_old"],
            "J_new": s["J_new"],
            "surrogate": s["surrogate"],
            "bound_unified": s["bound_unified"],
            "certified": int(s["certified"]),
            "violation": int(s["violation"]),
            "acceptance": s["acceptance"],
            "log_ppl_gap": s["log_ppl_gap"],
            "delta": s["delta"],
            "delta_mismatch": s["delta_mismatch"],
            "skipped": int(s["skipped"]),
            "step_scale": s["step_scale"],
        }
        for r in results
        for s in r["steps"]
    ]
    _write_csv(out / "curves.csv", curve_rows)
    _write_csv(out / "length_bias.csv", lb)
    table = final_table(results)
    _write_csv(out / "final_table.csv", table)
    (out / "final_table.md").write_text(final_table_markdown(table))
    summary = {
        "totals": totals(results),
        "runs": [{k: r[k] for k in ("regime", "label", "seed", "config", "summary")} for r in results],
        "length_bias": lb,
        "quick": quick,
    }
    (out / "train_figures.json").write_text(json.dumps(summary, indent=2) + "\n")
    records += [
        {
            "path": f"{SUBDIR}/curves.csv",
            "shows": "every logged step of every training run",
            "inputs": inputs,
        },
        {"path": f"{SUBDIR}/length_bias.csv", "shows": "acceptance by response length", "inputs": inputs},
        *(
            {
                "path": f"{SUBDIR}/final_table.{ext}",
                "shows": "final exact J over seeds (mean, sample std, min-max), acceptance, log-ppl gap",
                "inputs": inputs,
            }
            for ext in ("csv", "md")
        ),
        {
            "path": f"{SUBDIR}/train_figures.json",
            "shows": "run summaries; totals of certified steps and violations",
            "inputs": inputs,
        },
    ]
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps (seconds), for CI")
    p.add_argument("--out", type=Path, default=Path("paper_figures"))
    args = p.parse_args(argv)
    figures_job(args.out, args.quick)
    tot = json.loads((args.out / SUBDIR / "train_figures.json").read_text())["totals"]
    print(json.dumps(tot, indent=2))
    return 0
