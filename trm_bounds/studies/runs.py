"""Training runs written by `trm-bounds train --out RUN`: read them back and plot them.

A run directory holds `config.json` (the TrainConfig) and `steps.jsonl`, one JSON object per
optimizer step (docs: "Training log"). The figure has four panels over the optimizer step, one
colour per run:
- exact J: J(theta_new) after the step (solid), J(roll) of the rollout policy (dashed) and
  J(theta_old) before the step (dotted);
- acceptance: the fraction of the batch the run's mask kept;
- surrogate L'(theta_new) against the unified bound B* (`bound_unified`), log scale. A step is
  certified when L' > B* (then J(theta_new) - J(roll) >= L' - B* > 0). Level 1 is the largest
  possible |J(theta) - J(roll)| for rewards in [0, 1]; it does not cap |Error| or B*, but a B* >= 1
  certifies no step whose L' <= 1. Steps with L' <= 0 cannot be drawn on a log axis and are
  marked along the bottom edge;
- certified steps, cumulative; violations (certified but J_new <= J_roll), and skipped steps in
  certified mode, when there are any.

`plot_runs(runs, prefix, force=False)` writes PREFIX.png and PREFIX.pdf; it refuses to replace
either without `force`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._savefig import save_figure
from . import pyplot
from .plotting import LEVEL_ONE_NOTE

__all__ = ["REQUIRED_STEP_KEYS", "load_run", "plot_runs"]

REQUIRED_STEP_KEYS = (
    "step",
    "J_roll",
    "J_old",
    "J_new",
    "surrogate",
    "bound_unified",
    "certified",
    "acceptance",
)


def load_run(run_dir: str | Path) -> dict:
    """{"name", "path", "config", "steps"} of a run directory written by `trm-bounds train`.

    Raises ValueError naming the file when config.json or steps.jsonl is missing or unreadable,
    when steps.jsonl has no step, or when a step lacks one of REQUIRED_STEP_KEYS.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"run {str(path)!r} is not a directory (expected the --out of trm-bounds train)")
    files = {name: path / name for name in ("config.json", "steps.jsonl")}
    for f in files.values():
        if not f.is_file():
            raise ValueError(
                f"run {str(path)!r}: {f.name} missing (is it a trm-bounds train --out directory?)"
            )
    try:
        config = json.loads(files["config.json"].read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{files['config.json']}: not JSON ({exc})") from None
    steps = []
    for i, line in enumerate(files["steps.jsonl"].read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            s = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{files['steps.jsonl']} line {i}: not JSON ({exc})") from None
        missing = [k for k in REQUIRED_STEP_KEYS if k not in s]
        if missing:
            raise ValueError(f"{files['steps.jsonl']} line {i}: missing {', '.join(missing)}")
        steps.append(s)
    if not steps:
        raise ValueError(f"{files['steps.jsonl']}: no steps logged")
    return {"name": path.name, "path": str(path), "config": config, "steps": steps}


def _label(run: dict, names: list[str]) -> str:
    """The run's name (its path when names repeat), with method and mismatch from its config."""
    name = run["name"] if names.count(run["name"]) == 1 else run["path"]
    cfg = run["config"]
    extra = [str(cfg[k]) for k in ("method", "mismatch") if k in cfg]
    if cfg.get("certified"):
        extra.append("certified mode")
    return f"{name} ({', '.join(extra)})" if extra else name


def plot_runs(runs: list[dict], prefix: str | Path, force: bool = False) -> list[Path]:
    """Draw the runs (dicts of `load_run`) into PREFIX.png and PREFIX.pdf; return both paths.

    Raises ValueError when there is no run, or when a file exists and `force` is false
    (before anything is written).
    """
    if not runs:
        raise ValueError("runs: give at least one run directory")
    prefix = Path(prefix)
    paths = [prefix.with_name(prefix.name + ext) for ext in (".png", ".pdf")]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise ValueError(f"out: {', '.join(existing)} exists; pass --force to overwrite")
    if prefix.parent != Path("") and not prefix.parent.is_dir():
        raise ValueError(f"out: folder {str(prefix.parent)!r} does not exist")

    plt = pyplot()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    (a_j, a_acc), (a_sb, a_cert) = axes
    colors = plt.cm.tab10.colors
    names = [r["name"] for r in runs]
    run_handles = []
    n_nonpos = 0
    any_extra = {"violations": False, "skipped": False}
    for i, run in enumerate(runs):
        c = colors[i % len(colors)]
        # later runs drawn thinner and smaller, so a run hidden under another still shows around it
        lw, ms, mk = 1.0 + 0.7 * (len(runs) - 1 - i), 3.0 + 2.0 * (len(runs) - 1 - i), "os^Dv<>p"[i % 8]
        st = run["steps"]
        x = np.array([s["step"] for s in st])
        col = {k: np.array([float(s[k]) for s in st]) for k in REQUIRED_STEP_KEYS if k != "certified"}
        cert = np.array([bool(s["certified"]) for s in st])
        a_j.plot(x, col["J_new"], "-", color=c, lw=1.6)
        a_j.plot(x, col["J_roll"], "--", color=c, lw=1.2)
        a_j.plot(x, col["J_old"], ":", color=c, lw=1.0)
        a_acc.plot(x, col["acceptance"], "-", marker=mk, color=c, lw=lw, ms=ms)
        sur, bnd = col["surrogate"], col["bound_unified"]
        a_sb.plot(x, np.where(sur > 0, sur, np.nan), "-", color=c, lw=1.4, marker=".", ms=4)
        a_sb.plot(x, np.where(bnd > 0, bnd, np.nan), "--", color=c, lw=1.2)
        a_sb.plot(x[cert], sur[cert], "*", color=c, ms=11, mec="k", mew=0.5)
        nonpos = sur <= 0
        n_nonpos += int(nonpos.sum())
        a_sb.plot(
            x[nonpos],
            np.zeros(nonpos.sum()),
            "v",
            color=c,
            ms=5,
            clip_on=False,
            transform=a_sb.get_xaxis_transform(),
        )
        a_cert.step(x, np.cumsum(cert), where="post", color=c, lw=lw)
        viol = np.array([bool(s.get("violation", False)) for s in st])
        if viol.any():
            any_extra["violations"] = True
            a_cert.step(x, np.cumsum(viol), where="post", color=c, lw=1.2, ls="--")
        skipped = np.array([bool(s.get("skipped", False)) for s in st])
        if skipped.any():
            any_extra["skipped"] = True
            a_cert.step(x, np.cumsum(skipped), where="post", color=c, lw=1.2, ls=":")
        run_handles.append(Line2D([], [], color=c, lw=2, marker=mk, ms=5, label=_label(run, names)))

    a_j.set_ylabel("exact J (expected reward, R in [0, 1])")
    a_j.set_title("exact J per step", fontsize=10)
    a_j.legend(
        [Line2D([], [], color="0.3", ls=ls) for ls in ("-", "--", ":")],
        ["J(theta_new): after the step", "J(roll): the rollout policy", "J(theta_old): before the step"],
        fontsize=8,
        loc="best",
    )
    a_acc.set_ylabel("acceptance (fraction of the batch kept)")
    a_acc.set_ylim(-0.03, 1.03)
    a_acc.set_title("acceptance of the run's mask", fontsize=10)
    a_sb.set_yscale("log")
    a_sb.axhline(1.0, color="0.4", lw=0.9, ls=(0, (1, 1)))
    a_sb.set_ylabel("objective units (R in [0, 1])")
    nonpos_note = f"; triangles at the bottom: L' <= 0 ({n_nonpos} steps)" if n_nonpos else ""
    a_sb.set_title(
        "surrogate L'(theta_new) (solid) vs unified bound B* (dashed)\n"
        f"star: certified step (L' > B*); dotted: level 1{nonpos_note}",
        fontsize=9,
    )
    a_cert.set_ylabel("number of steps (cumulative)")
    parts = ["certified (solid)"]
    if any_extra["violations"]:
        parts.append("violations: certified but J_new <= J_roll (dashed)")
    if any_extra["skipped"]:
        parts.append("skipped in certified mode (dotted)")
    a_cert.set_title("; ".join(parts), fontsize=10)
    for ax in axes.ravel():
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.legend(
        handles=run_handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.022),
        ncol=min(3, len(runs)),
        fontsize=9,
        frameon=False,
        title="runs (colour)",
    )
    fig.text(
        0.5,
        0.005,
        "Level 1: " + LEVEL_ONE_NOTE + ". |Error| and B* themselves can exceed 1.",
        ha="center",
        va="bottom",
        fontsize=8,
    )
    fig.suptitle(f"Training run{'s' if len(runs) > 1 else ''}: exact J, acceptance, L' vs B*, certificates")
    fig.tight_layout(rect=(0, 0.08 + 0.025 * ((len(runs) - 1) // 3), 1, 1))
    for p in paths:
        save_figure(fig, p, dpi=120)
    plt.close(fig)
    return paths
