"""Empirical vs theoretical error: exact |Error| next to every bound, T = 1 .. 16384.

    python experiments/error_vs_horizon.py [--quick] [--out paper_figures]

A thin script over `trm_bounds.studies.error_vs_horizon` (its docstring says what is measured);
`trm-bounds figures` runs the same study as job ``experiments/error_vs_horizon``.
"""

from __future__ import annotations

from trm_bounds.studies.error_vs_horizon import figures_job, main

__all__ = ["figures_job", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
