"""Are the bounds tight in T? Worst |Error| and |Error| / bound found by search, T = 2 .. 4096 (issue 14).

At a fixed per-token divergence (delta = max token KL, or separately eps = max token TV), it
maximises |Error| and |Error| / B for every registered bound (published, refined, second_order)
over binary policy pairs with rewards in [0, 1] (`trm_bounds.tightness_search`): enumerable
trees for T = 2 .. 10 (to 14 with --heavy; gradient ascent through the level-by-level tree DP
`tree_terms`; saved as tabular pairs) and finite-state chains for T = 16 .. 4096 (saved as
chain files), from seeded random restarts (gradient ascent through an exact DP) plus
structured candidates (the parity construction of docs/tightness.md, the tight pair of
`trm_bounds.refined`). Every candidate is re-evaluated by the exact engines
(`exact_quantities` / `chain_quantities`); the worst instance per (bound, T, fixed) is saved
and its "bound holds" verdict comes from `trm_bounds.verdict` (rounding bound, or mpmath).

Writes into out_dir/tightness: tightness.json (docs/formats.md "Tightness results": a list of
{"bound", "T", "fixed", "value", "error", "bound_value", "ratio", "instance", "kind"} plus
"verdict", "verdict_method"), instances/*.npz, tightness.png/.pdf (worst ratio vs T per bound;
worst |Error| vs T with the proved sandwich), tightness_exponents.md/.csv/.json (fitted growth
exponent of the worst |Error| in T at fixed delta and at fixed eps).

    python experiments/tightness_sweep.py [--quick] [--heavy] [--workers N] [--ray auto|ADDRESS]

Every (fixed, T, structure, seed) is an independent task (`trm_bounds.taskpool`): in-process by
default, a process pool with --workers, a Ray cluster with --ray; finished tasks are cached in
the cache folder so an interrupted sweep resumes. Default 15 s measured on a 2-core machine
(7 s when trees stopped at T = 4).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import shutil
import textwrap
from pathlib import Path

import numpy as np

from .._json import dumps
from .._savefig import save_png_pdf
from ..bounds import PUBLISHED_BOUNDS
from . import pyplot
from .plotting import overlap_summary

__all__ = [
    "config",
    "make_tasks",
    "run_task",
    "run_study",
    "start_background",
    "figures_job",
    "main",
    "SUBDIR",
    "RESULTS_JSON",
]

SUBDIR = "tightness"
RESULTS_JSON = "tightness.json"
DELTA, EPS = 1e-4, 5e-3  # the paper's KL+TV column of v3 Table 1


def config(quick: bool, heavy: bool = False) -> dict:
    """Grid and effort. quick: CI (~5 s); default: the figures job (trees T = 2 .. 10, 15 s measured
    quiet); heavy: the sweep (trees to T = 14, chains to 4096, more structures, seeds, steps)."""
    if quick:
        return dict(trees=[2, 3], chains=[16, 64], structures=["random8"], seeds=1, restarts=6, iters=12)
    if heavy:
        return dict(
            trees=list(range(2, 15)),
            chains=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
            structures=["mod2", "mod4", "sat4", "last2", "random8"],
            seeds=4,
            restarts=20,
            iters=150,
        )
    return dict(
        trees=list(range(2, 11)),
        chains=[16, 64, 256, 1024, 4096],
        structures=["random8"],
        seeds=1,
        restarts=8,
        iters=20,
    )


def make_tasks(cfg: dict) -> list[dict]:
    """One task per (fixed, T, structure, seed); trees use the structure "tree"; plus one
    structured-candidates task per (fixed, T)."""
    tasks = []
    for fixed, target in (("delta", DELTA), ("eps", EPS)):
        for T in cfg["trees"] + cfg["chains"]:
            kind = "pair" if T in cfg["trees"] else "chain"
            structs = ["tree"] if kind == "pair" else cfg["structures"]
            for st in structs + ["structured"]:
                for seed in range(cfg["seeds"] if st != "structured" else 1):
                    tasks.append(
                        dict(
                            key=f"{fixed}_T{T}_{st}_s{seed}",
                            fixed=fixed,
                            target=target,
                            T=T,
                            kind=kind,
                            structure=st,
                            seed=1000 * seed + T,
                            restarts=cfg["restarts"],
                            iters=cfg["iters"],
                        )
                    )
    return tasks


# --------------------------------------------------------------------------- one task
def run_task(task: dict) -> dict:
    """Search (or build) candidates, evaluate each exactly; JSON-ready result:
    {"candidates": [{"kind", "arrays" (chain fields as lists), "ratios" {bound: r}, "error",
    "value"}]} keeping, per bound and for |Error|, the best candidate of this task."""
    import torch

    from ..tightness_search import search_chains, search_trees, structure_transition

    torch.set_num_threads(1)  # the same numbers on any machine and under any pool
    T, fixed, target, kind = task["T"], task["fixed"], task["target"], task["kind"]
    effort = (task["seed"], task["restarts"], task["iters"])
    if task["structure"] == "structured":
        pairs = _structured(T, fixed, target)
    elif task["structure"] == "tree":
        pairs = search_trees(T, fixed, target, *effort)
    else:
        pairs = search_chains(
            structure_transition(task["structure"], task["seed"]), T, fixed, target, *effort
        )
    cands = []
    for p, d in zip(pairs, _evaluate(pairs, kind)):
        e = abs(d["error"])
        ratios = {b: (e / v if v > 0 else (0.0 if e == 0 else math.inf)) for b, v in d["bounds"].items()}
        cands.append(
            {
                "kind": kind,
                "arrays": _arrays(p, tree=task["structure"] == "tree"),
                "ratios": ratios,
                "error": d["error"],
                "value": d[fixed],
                "bounds": d["bounds"],
            }
        )
    keep = {max(range(len(cands)), key=lambda i: abs(cands[i]["error"]))}
    for b in cands[0]["ratios"]:
        keep.add(max(range(len(cands)), key=lambda i: cands[i]["ratios"][b]))
    return {"task": task, "candidates": [cands[i] for i in sorted(keep)]}


def _structured(T: int, fixed: str, target: float) -> list:
    from ..chain import tree_to_chain
    from ..refined import tight_pair
    from ..tightness_search import parity_chain

    e = target if fixed == "eps" else -math.expm1(-target)  # parity: delta = -log(1 - e)
    out = [parity_chain(T, e)]
    if T == 2:  # the tight pair of refined.py: eps = b, Error = 2 a b = adaptive_tv_refined
        b = target if fixed == "eps" else _uniform_b(target)
        tp = tight_pair(b, b)
        tree = {f"logp_roll_{t + 1}": np.log(np.array(tp["roll"][t], dtype=np.float64)) for t in range(2)}
        tree |= {f"logp_theta_{t + 1}": np.log(np.array(tp["theta"][t], dtype=np.float64)) for t in range(2)}
        tree |= {"reward": np.array(tp["reward"], dtype=np.float64), "prompt_probs": np.ones(1)}
        out.append(tree_to_chain(tree))
    return out


def _uniform_b(delta: float) -> float:
    """b with KL(uniform || (1/2 + b, 1/2 - b)) = -log(1 - 4 b^2) / 2 = delta."""
    return 0.5 * math.sqrt(-math.expm1(-2.0 * delta))


def _evaluate(pairs: list, kind: str) -> list[dict]:
    """Exact engine results of the candidates (one batched chain DP when the shapes allow)."""
    from ..chain import chain_quantities, chain_quantities_batch, chain_to_tree
    from ..exact import exact_quantities

    if kind == "chain":
        if len({(p.S, len(np.unique(p.init_state))) for p in pairs}) == 1:
            return chain_quantities_batch(pairs)
        return [chain_quantities(p) for p in pairs]
    out = []
    for pair in pairs:
        tree, T = chain_to_tree(pair), pair.T
        out.append(
            exact_quantities(
                [tree[f"logp_roll_{t}"] for t in range(1, T + 1)],
                [tree[f"logp_theta_{t}"] for t in range(1, T + 1)],
                tree["reward"],
                tree["prompt_probs"],
            )
        )
    return out


def _arrays(pair, tree: bool = False) -> dict:
    """The chain's fields as lists; a searched tree's transition (`tree_transition(T)`) as None."""
    return {
        "T": int(pair.T),
        "transition": None if tree else pair.transition.tolist(),
        "init_state": pair.init_state.tolist(),
        "prompt_probs": pair.prompt_probs.tolist(),
        "logp_roll": pair.logp_roll.tolist(),
        "logp_theta": pair.logp_theta.tolist(),
        "reward_final": pair.reward_final.tolist(),
    }


def _pair_of(arrays: dict):
    from ..chain import ChainPair
    from ..tightness_search import tree_transition

    a = {
        k: (np.asarray(v, dtype=np.float64) if k.startswith(("logp", "reward", "prompt")) else v)
        for k, v in arrays.items()
    }
    return ChainPair(
        T=a["T"],
        transition=(
            tree_transition(a["T"])
            if a["transition"] is None
            else np.asarray(a["transition"], dtype=np.int64)
        ),
        init_state=np.asarray(a["init_state"], dtype=np.int64),
        prompt_probs=a["prompt_probs"],
        logp_roll=a["logp_roll"],
        logp_theta=a["logp_theta"],
        reward_final=a["reward_final"],
    )


# --------------------------------------------------------------------------- aggregation
def aggregate(results: list[dict]) -> tuple[list[tuple[dict, dict]], dict]:
    """Per (bound, T, fixed) the candidate with the largest ratio, and per (T, fixed) the
    largest |Error|: ([(record stub, candidate)], {(fixed, T): candidate})."""
    best: dict[tuple, tuple[float, dict]] = {}
    worst_err: dict[tuple, dict] = {}
    for res in results:
        task = res["task"]
        for c in res["candidates"]:
            key = (task["fixed"], task["T"])
            if key not in worst_err or abs(c["error"]) > abs(worst_err[key]["error"]):
                worst_err[key] = c
            for b, r in c["ratios"].items():
                k = (b, task["T"], task["fixed"])
                if k not in best or r > best[k][0]:
                    best[k] = (r, c)
    recs = [
        ({"bound": b, "T": T, "fixed": f}, c)
        for (b, T, f), (_, c) in sorted(best.items(), key=lambda x: (x[0][2], x[0][0], x[0][1]))
    ]
    return recs, worst_err


def _save_instance(c: dict, inst_dir: Path, fixed: str) -> str:
    """Write the candidate as a pair or chain .npz named by its content; the relative path."""
    from ..chain import chain_to_tree

    pair = _pair_of(c["arrays"])
    blob = json.dumps(c["arrays"], sort_keys=True).encode()
    name = f"{fixed}_T{pair.T}_{hashlib.sha256(blob).hexdigest()[:10]}.npz"
    path = inst_dir / name
    if not path.exists():
        if c["kind"] == "chain":
            pair.save(path)
        else:
            np.savez(path, **chain_to_tree(pair))
    return f"instances/{name}"


def _verdict(c: dict, bound: str, inst_path: Path, cache: dict) -> dict:
    """bound_verdict on the saved file, evaluated and read once per file (cache: path -> engine
    result, (path, "pair") -> the loaded PolicyPair)."""
    from ..chain import evaluate_chain_file
    from ..exact import evaluate_pair_file
    from ..pair import PolicyPair
    from ..verdict import bound_verdict

    T = c["arrays"]["T"]
    if c["kind"] == "chain":
        if cache.get(inst_path) is None:
            cache[inst_path] = evaluate_chain_file(inst_path)
        d = cache[inst_path]
        S = len(c["arrays"]["transition"])
        return {**bound_verdict(d, bound, T=T, n_ops=(T + 1) * (S + 2)), "result": d}
    if cache.get(inst_path) is None:
        cache[inst_path] = evaluate_pair_file(inst_path)
    d = cache[inst_path]
    if cache.get((inst_path, "pair")) is None:  # the file's arrays, read (and checked) once
        cache[(inst_path, "pair")] = PolicyPair.load(inst_path)
    p = cache[(inst_path, "pair")]
    n_ops = T + math.ceil(math.log2(p.P * p.V**T)) + p.V
    v = bound_verdict(d, bound, T=T, n_ops=n_ops, pair=(p.logp_roll, p.logp_theta, p.reward, p.prompt_probs))
    return {**v, "result": d}


def _verdict_word(v: dict) -> str:
    """holds / violated / attained (a tie within the rounding interval) / undecided."""
    if v["holds"] is not None:
        return "holds" if v["holds"] else "violated"
    return "attained within rounding" if abs(v["ratio"] - 1.0) <= 1e-9 else "undecided"


def records(results: list[dict], out: Path) -> tuple[list[dict], dict]:
    """Save the worst instances and build the tightness.json records and the |Error| table."""
    import trm_bounds.refined  # noqa: F401 - the *_refined keys

    inst_dir = out / "instances"
    inst_dir.mkdir(parents=True, exist_ok=True)
    stubs, worst_err = aggregate(results)
    out_recs, cache, saved = [], {}, {}

    def save(c: dict, fixed: str) -> str:  # one candidate is the worst for many bounds: saved once
        key = (id(c), fixed)
        if key not in saved:
            saved[key] = _save_instance(c, inst_dir, fixed)
        return saved[key]

    for stub, c in stubs:
        rel = save(c, stub["fixed"])
        v = _verdict(c, stub["bound"], out / rel, cache)
        d = v.pop("result")
        err, bval = float(d["error"]), float(d["bounds"][stub["bound"]])
        out_recs.append(
            {
                **stub,
                "value": float(d[stub["fixed"]]),
                "error": err,
                "bound_value": bval,
                "ratio": abs(err) / bval if bval > 0 else (0.0 if err == 0 else math.inf),
                "instance": rel,
                "kind": c["kind"],
                "verdict": _verdict_word(v),
                "verdict_method": v["method"],
            }
        )
    errs = {}
    for (fixed, T), c in sorted(worst_err.items()):
        rel = save(c, fixed)
        errs.setdefault(fixed, []).append(
            {"T": T, "abs_error": abs(c["error"]), "value": c["value"], "instance": rel, "kind": c["kind"]}
        )
    return out_recs, errs


def exponents(errs: dict, fit_from: int = 16) -> list[dict]:
    """Least-squares slope of log worst |Error| on log T (chains, T >= fit_from), per fixed
    setting, beside the slope of the parity construction's exact |Error| on the same grid and
    the proved upper rate."""
    rows = []
    for fixed, pts in errs.items():
        pts = [p for p in pts if p["T"] >= fit_from]
        if len(pts) < 2:
            continue
        T = np.array([p["T"] for p in pts], dtype=float)
        y = np.array([p["abs_error"] for p in pts])
        slope = float(np.polyfit(np.log(T), np.log(np.maximum(y, 1e-300)), 1)[0])
        e = EPS if fixed == "eps" else -math.expm1(-DELTA)
        par = np.abs((1 - (1 - 2 * e) ** T) / 2 - T * e)
        rows.append(
            {
                "fixed": fixed,
                "value": EPS if fixed == "eps" else DELTA,
                "T_range": [int(T.min()), int(T.max())],
                "worst_abs_error_slope": slope,
                "parity_slope": float(np.polyfit(np.log(T), np.log(par), 1)[0]),
                "proved_upper": "|Error| <= sum_t Dbar_t + D_TV^seq <= T eps + 1 (docs/tightness.md): slope <= 1 for large T",
                "proved_lower": "parity family: |Error| = T e - (1 - (1 - 2e)^T)/2 >= T e - 1/2 (slope -> 1)",
                "worst_abs_error": [float(v) for v in y],
                "T": [int(t) for t in T],
            }
        )
    return rows


# --------------------------------------------------------------------------- outputs
SHOWN = (
    *PUBLISHED_BOUNDS,
    "second_order",
)  # the plotted keys: every published bound and the second-order one


def plot(recs: list[dict], errs: dict, out: Path) -> list[str]:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6))
    cmap = plt.get_cmap("tab20")
    for ax, fixed in zip(axes[:2], ("delta", "eps")):
        curves, xs = {}, None
        for i, b in enumerate(SHOWN):
            rr = sorted((r for r in recs if r["bound"] == b and r["fixed"] == fixed), key=lambda r: r["T"])
            if rr:
                x, y = [r["T"] for r in rr], [max(r["ratio"], 1e-12) for r in rr]
                ax.plot(x, y, "o-", ms=3, lw=1.2, color=cmap(i), label=b)
                if xs is None or x == xs:
                    xs, curves[b] = x, y
        ax.axhline(1.0, color="r", lw=0.8, ls="--")
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.text(
            0.99,
            1.08,
            "1: the published bound is attained",
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="bottom",
            fontsize=7,
            color="r",
        )
        ax.text(
            0.99,
            0.47,
            "0.5: the refined (halved) bound is attained",
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="top",
            fontsize=7,
            bbox=dict(fc="white", ec="none", alpha=0.8, pad=1),
        )
        note = overlap_summary(xs or [], curves) if curves else ""
        if note:  # which curves hide which (on a log axis identical ratios draw one line)
            note = "\n".join(textwrap.fill(line, 100, subsequent_indent="  ") for line in note.splitlines())
            ax.text(0.0, -0.16, note, transform=ax.transAxes, ha="left", va="top", fontsize=6.5)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_ylim(1e-6, 2)
        ax.set_xlabel("horizon T (tokens)")
        ax.set_ylabel("worst |Error| / published bound found")
        val = DELTA if fixed == "delta" else EPS
        ax.set_title(f"fixed {fixed} = {val:g}: worst ratio found (refined = 2x)", fontsize=9)
        ax.legend(fontsize=6, ncol=2, loc="lower left")
    ax = axes[2]
    for fixed, mk in (("delta", "o-"), ("eps", "s-")):
        pts = errs.get(fixed, [])
        T = np.array([p["T"] for p in pts], dtype=float)
        ax.plot(T, [p["abs_error"] for p in pts], mk, label=f"worst |Error| found, fixed {fixed}")
        e = EPS if fixed == "eps" else -math.expm1(-DELTA)
        ax.plot(
            T,
            np.abs((1 - (1 - 2 * e) ** T) / 2 - T * e),
            "--",
            lw=1,
            label=f"parity construction, fixed {fixed}",
        )
        ax.plot(
            T,
            T * (EPS if fixed == "eps" else min(1, math.sqrt(DELTA / 2))) + 1,
            ":",
            lw=1,
            label=f"proved upper T eps + 1, fixed {fixed}",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("horizon T (tokens)")
    ax.set_ylabel("|Error| (objective units, R in [0, 1])")
    ax.set_title("worst |Error| found vs the proved sandwich", fontsize=9)
    ax.legend(fontsize=6)
    ax.text(
        0.0,
        -0.16,
        "at fixed eps the worst found is the parity construction\n(the two curves coincide)",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=6.5,
    )
    fig.subplots_adjust(left=0.05, right=0.99, top=0.93, bottom=0.3, wspace=0.22)
    return save_png_pdf(fig, out, "tightness")


def write_tables(recs: list[dict], errs: dict, exps: list[dict], out: Path) -> list[str]:
    (out / RESULTS_JSON).write_text(dumps(recs, indent=1) + "\n")
    (out / "tightness_exponents.json").write_text(
        dumps({"exponents": exps, "worst_abs_error": errs}, indent=1) + "\n"
    )
    with open(out / "tightness_exponents.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fixed", "value", "T_min", "T_max", "worst_abs_error_slope", "parity_slope"])
        for r in exps:
            w.writerow(
                [
                    r["fixed"],
                    r["value"],
                    *r["T_range"],
                    f"{r['worst_abs_error_slope']:.3f}",
                    f"{r['parity_slope']:.3f}",
                ]
            )
    lines = [
        "# Growth exponent of the worst |Error| in T (searched, binary chains)",
        "",
        "| fixed | value | T range | slope of worst found | slope of parity construction | proved rate |",
        "|---|---|---|---|---|---|",
    ]
    for r in exps:
        lines.append(
            f"| {r['fixed']} | {r['value']:g} | {r['T_range'][0]}-{r['T_range'][1]} | "
            f"{r['worst_abs_error_slope']:.2f} | {r['parity_slope']:.2f} | between T e - 1/2 and T eps + 1 |"
        )
    worst = {}
    for r in recs:
        worst[r["bound"]] = max(worst.get(r["bound"], 0.0), r["ratio"])
    lines += [
        "",
        "Worst |Error| / bound found over all T and both settings:",
        "",
        "| bound | worst ratio | verdicts |",
        "|---|---|---|",
    ]
    for b in sorted(worst):
        vs = sorted({r["verdict"] for r in recs if r["bound"] == b})
        lines.append(f"| {b} | {worst[b]:.4g} | {', '.join(vs)} |")
    (out / "tightness_exponents.md").write_text("\n".join(lines) + "\n")
    return [RESULTS_JSON, "tightness_exponents.json", "tightness_exponents.csv", "tightness_exponents.md"]


def run_study(
    out_dir: Path,
    quick: bool,
    *,
    heavy: bool = False,
    workers: int = 1,
    ray: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    results: list[dict] | None = None,
) -> list[dict]:
    """Run every task, write outputs into out_dir (the tightness folder); figure-job records.

    results: `run_task` of every `make_tasks(config(quick, heavy))` task, in order, when they
    were run elsewhere (`start_background`); then nothing is searched here."""
    from ..taskpool import run_tasks

    cfg = config(quick, heavy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "instances").exists():  # only what this run reports stays
        shutil.rmtree(out / "instances")
    if results is None:
        results = run_tasks(
            run_task,
            make_tasks(cfg),
            cache_dir=cache_dir,
            workers=workers,
            ray=ray,
            progress=progress,
            desc="tightness",
        )
    recs, errs = records(results, out)
    exps = exponents(errs)
    inputs = {"quick": quick, "heavy": heavy, "delta": DELTA, "eps": EPS, **cfg}
    shows = {
        "tightness.png": "worst |Error| / bound found vs T per bound (fixed delta, fixed eps) and worst |Error| vs T",
        "tightness.pdf": "the same figure as tightness.png",
        RESULTS_JSON: "worst instance per (bound, T, fixed): exact error, bound, ratio, verdict, instance file",
        "tightness_exponents.json": "fitted growth exponents and the worst |Error| per T",
        "tightness_exponents.csv": "fitted growth exponents of the worst |Error| in T",
        "tightness_exponents.md": "exponent table and worst ratio per bound",
    }
    files = plot(recs, errs, out) + write_tables(recs, errs, exps, out)
    recs_out = [{"path": p, "shows": shows[p], "inputs": inputs} for p in files]
    for p in sorted((out / "instances").glob("*.npz")):
        recs_out.append(
            {
                "path": f"instances/{p.name}",
                "shows": "a worst instance (trm-bounds exact re-evaluates it)",
                "inputs": inputs,
            }
        )
    return recs_out


def _background_name(quick: bool) -> str:
    return f"tightness_sweep-quick={quick}"


def start_background(quick: bool) -> str:
    """Start the default search's tasks on one worker process per core and return at once;
    `figures_job` then collects them (`trm-bounds figures` calls this first, so the search runs
    beside the other jobs instead of after them); returns the taskpool name of the run."""
    from .. import taskpool
    from .._compute import cores

    name = _background_name(quick)
    taskpool.start_background(name, run_task, make_tasks(config(quick)), workers=cores())
    return name


def figures_job(out_dir: Path, quick: bool) -> list[dict]:
    """`trm-bounds figures` hook: writes into out_dir/tightness; paths relative to out_dir. Uses
    the results `start_background` started, if it was called."""
    from .. import taskpool

    name = _background_name(quick)
    results = taskpool.collect_background(name) if taskpool.has_background(name) else None
    recs = run_study(Path(out_dir) / SUBDIR, quick, progress=False, results=results)
    return [{**r, "path": f"{SUBDIR}/{r['path']}"} for r in recs]


def main(argv=None) -> int:
    from ..taskpool import add_arguments

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI configuration (a few seconds)")
    ap.add_argument("--heavy", action="store_true", help="the long search (more T, structures, seeds, steps)")
    ap.add_argument(
        "--out", type=Path, default=Path("paper_figures"), help="figures directory (writes OUT/tightness)"
    )
    add_arguments(ap, "tightness_cache")
    args = ap.parse_args(argv)
    cache = args.cache if args.cache is not None else args.out / "tightness_cache"
    for rec in run_study(
        args.out / SUBDIR, args.quick, heavy=args.heavy, workers=args.workers, ray=args.ray, cache_dir=cache
    ):
        print(args.out / SUBDIR / rec["path"])
    return 0
