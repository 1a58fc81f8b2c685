"""Bounds-vs-horizon scaling: the numbers (CSV/JSON) and the log-log figure (PNG/PDF).

Two settings, each a family of bound inputs indexed by T (docs/theory.md section 6):
- "small divergence": delta = 1e-4, eps = 5e-3, D_KL^seq = min(0.01, T delta),
  D_TV^seq = min(0.05, sqrt(D_KL^seq / 2)), Dbar_t = eps (worst case) - the v3 KL+TV column at T = 4096;
- "large divergence": delta = 1, eps = min(1, sqrt(delta/2)), D_KL^seq = min(1, T delta),
  D_TV^seq = min(1, sqrt(D_KL^seq / 2)), Dbar_t = eps - the v2 large-divergence column at T = 4096.
The sequence-level inputs are held at the paper's values but never above what the token
level allows (chain rule, Pinsker), so every point is a consistent input set.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._savefig import save_figure
from .bounds import PUBLISHED_BOUNDS, BoundInputs, evaluate_bounds

__all__ = [
    "ScalingSetting",
    "SCALING_SETTINGS",
    "scaling_table",
    "plot_scaling",
    "write_scaling",
    "figures_job",
]


@dataclass(frozen=True)
class ScalingSetting:
    """One panel of the scaling figure: token-level divergences and the paper's sequence values."""

    name: str  # panel title
    delta: float  # max token KL
    eps: float | None  # max token TV (None: Pinsker from delta)
    dkl_seq: float  # D_KL^seq at large T (capped at T delta)
    dtv_seq: float | None  # D_TV^seq (None: Pinsker from D_KL^seq), capped by Pinsker

    def inputs(self, T: int) -> BoundInputs:
        eps = self.eps if self.eps is not None else min(1.0, float(np.sqrt(self.delta / 2)))
        dkl = min(self.dkl_seq, T * self.delta)
        dtv_pinsker = min(1.0, float(np.sqrt(dkl / 2)))
        dtv = dtv_pinsker if self.dtv_seq is None else min(self.dtv_seq, dtv_pinsker)
        src = {
            "delta": "given",
            "eps": "given" if self.eps is not None else "pinsker: min(1, sqrt(delta/2))",
            "dkl_seq": "given: min(dkl_seq, T delta)",
            "dtv_seq": "given: min(dtv_seq, sqrt(dkl_seq/2))" if self.dtv_seq is not None else "pinsker",
            "dbar": "worst_case: Dbar_t = eps",
        }
        return BoundInputs(
            T=T, eps=eps, delta=self.delta, dkl_seq=dkl, dtv_seq=dtv, dbar=np.full(T, eps), sources=src
        )


SCALING_SETTINGS = (
    ScalingSetting("small divergence (delta=1e-4, eps=5e-3)", 1e-4, 5e-3, 0.01, 0.05),
    ScalingSetting("large divergence (delta=1, eps=Pinsker)", 1.0, None, 1.0, None),
)


def scaling_table(T_grid: np.ndarray, settings=SCALING_SETTINGS) -> list[dict]:
    """One row per (setting, T): the inputs and every published bound."""
    rows = []
    for s in settings:
        for T in T_grid:
            b = s.inputs(int(T))
            row = {"setting": s.name, "T": int(T), "delta": b.delta, "eps": b.eps, "dkl_seq": b.dkl_seq}
            row["dtv_seq"] = b.dtv_seq
            row.update(evaluate_bounds(b, PUBLISHED_BOUNDS))
            rows.append(row)
    return rows


_STYLE = {  # bound -> (colour, line style); the unified bound is drawn thick and black
    "classical_tv": ("#8c564b", "--"),
    "classical_kl": ("#8c564b", "-"),
    "linear": ("#7f7f7f", ":"),
    "pm_kl": ("#1f77b4", "-"),
    "pm_tv": ("#1f77b4", "--"),
    "mix_kl": ("#2ca02c", "-"),
    "mix_tv": ("#2ca02c", "--"),
    "coupling": ("#d62728", "-."),
    "adaptive_kl": ("#9467bd", "-"),
    "adaptive_tv": ("#9467bd", "--"),
    "adaptive_star": ("#e377c2", ":"),
    "unified": ("#000000", "-"),
}


def plot_scaling(rows: list[dict], png: Path, pdf: Path) -> None:
    """Log-log bound-vs-T panels, one per setting, the level 1 marked (`LEVEL_ONE_NOTE`).

    Bounds equal at every T of a panel are drawn once and listed together in that panel's
    legend ("pm_kl = pm_tv"); pairs drawn within a line width of each other over part of the
    axis are named under the legend (`overlap_notes`).
    """
    import textwrap

    from .studies import pyplot
    from .studies.plotting import LEVEL_ONE_NOTE, overlap_notes

    plt = pyplot()
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    fig, axes = plt.subplots(1, len(settings), figsize=(6.8 * len(settings), 8.0), squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.91, bottom=0.40, wspace=0.22)
    for ax, name in zip(axes[0], settings):
        sub = [r for r in rows if r["setting"] == name]
        T = np.array([r["T"] for r in sub])
        curves = {}
        for key in PUBLISHED_BOUNDS:
            y = np.array([r[key] for r in sub], dtype=float)
            y[y <= 0] = np.nan  # at T = 1 several bounds are exactly 0: nothing to draw on a log axis
            curves[key] = y
        for group in _groups_unified_last(curves):
            colour, ls = _STYLE[group[0]]
            lw = 2.6 if "unified" in group else 1.4
            label = textwrap.fill(" = ".join(group) + (" (identical here)" if len(group) > 1 else ""), 44)
            ax.loglog(T, curves[group[0]], ls, color=colour, lw=lw, label=label, zorder=3 if lw > 2 else 2)
        ax.axhline(1.0, color="0.3", lw=1.0, ls=(0, (1, 1)), label="level 1 (see the note at the bottom)")
        ax.axvline(4096, color="0.75", lw=0.8)
        finite = [r[k] for r in sub for k in PUBLISHED_BOUNDS if r[k] > 0]
        ax.set_ylim(min(max(min(finite), 1e-8) / 2, 0.1), max(finite) * 3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("horizon T (tokens)")
        ax.set_ylabel("upper bound on |Error| (reward units, R in [0, 1])")
        ax.grid(True, which="major", alpha=0.3)
        leg = ax.legend(loc="upper left", bbox_to_anchor=(-0.02, -0.1), ncol=2, fontsize=8, frameon=False)
        notes = overlap_notes(T, curves)
        near = [n for n in notes if "identical" not in n]
        text = (
            "Also drawn on top of each other (one line hides the other):\n"
            + "\n".join(textwrap.fill(n, 95, subsequent_indent="    ") for n in near)
            if near
            else "No other pair of lines is within 12% of each other."
        )
        ax.annotate(
            text,
            xy=(0, 0),
            xycoords=leg,
            xytext=(0, -6),
            textcoords="offset points",
            va="top",
            ha="left",
            fontsize=7.5,
            color="0.2",
            annotation_clip=False,
        )
    fig.text(
        0.5,
        0.012,
        textwrap.fill("Level 1: " + LEVEL_ONE_NOTE + ". |Error| itself can exceed 1.", 170),
        ha="center",
        va="bottom",
        fontsize=8.5,
    )
    fig.suptitle(
        "TRM paper error bounds vs horizon (Dbar_t = eps worst case; grey line: T = 4096)", fontsize=11
    )
    save_figure(fig, png, dpi=130)
    save_figure(fig, pdf)
    plt.close(fig)


def _groups_unified_last(curves: dict[str, np.ndarray]) -> list[list[str]]:
    """`coincident_groups` of the curves, the group holding "unified" drawn last (on top)."""
    from .studies.plotting import coincident_groups

    groups = coincident_groups(curves)
    return sorted(groups, key=lambda g: "unified" in g)


def write_scaling(out_dir: Path, T_max: int = 10**6, points: int = 61) -> list[dict]:
    """Write scaling.csv/.json/.png/.pdf into out_dir; return figures-manifest records."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    T_grid = np.unique(np.round(np.logspace(0, np.log10(T_max), points)).astype(np.int64))
    T_grid = np.union1d(T_grid, [4096])
    rows = scaling_table(T_grid)
    with open(out_dir / "scaling.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out_dir / "scaling.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot_scaling(rows, out_dir / "scaling.png", out_dir / "scaling.pdf")
    inputs = {"T_max": T_max, "points": len(T_grid), "settings": [s.__dict__ for s in SCALING_SETTINGS]}
    shows = "every published bound vs horizon T, log-log, small and large divergence; level 1 marked"
    return [
        {"path": "scaling.png", "shows": shows, "inputs": inputs},
        {"path": "scaling.pdf", "shows": shows, "inputs": inputs},
        {
            "path": "scaling.csv",
            "shows": "the plotted numbers: inputs and bounds per (setting, T)",
            "inputs": inputs,
        },
        {"path": "scaling.json", "shows": "the plotted numbers as JSON", "inputs": inputs},
    ]


def figures_job(out_dir: Path, quick: bool) -> list[dict]:
    """`trm-bounds figures` job "scaling": the scaling figure and its numbers."""
    return write_scaling(out_dir, T_max=10**5 if quick else 10**6, points=31 if quick else 61)
