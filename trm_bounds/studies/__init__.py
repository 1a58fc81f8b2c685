"""Studies: measurements that make figures (run by `trm-bounds figures`, or by experiments/*.py).

- `error_vs_horizon`: exact |Error| next to every bound on finite-state chains, T up to 16384;
- `training`: toy analogues of the paper's training figures with exact J every step;
- `coverage`: coverage of the sample certificate (trm_bounds.certify) on exact pairs, and its growth in T;
- `runs`: read and plot the runs of `trm-bounds train` (`trm-bounds plot-run`);
- `plotting`: what the figures share: the meaning of the level 1, which drawn curves coincide.

The three studies have ``figures_job(out_dir, quick) -> list[dict]`` (listed in `trm_bounds.jobs`) and
``main(argv)`` (the scripts in experiments/ call it). Plots use matplotlib's Agg backend,
selected when the first figure is drawn (`pyplot`), never at import.
"""

from __future__ import annotations

__all__ = ["pyplot"]


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
