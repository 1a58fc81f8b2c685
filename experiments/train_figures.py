"""Toy analogues of the TRM paper's training figures, with exact J every step.

    python experiments/train_figures.py [--quick] [--out paper_figures]

A thin script over `trm_bounds.studies.training` (its docstring says what is measured);
`trm-bounds figures` runs the same study as job ``experiments/train_figures``.
"""

from __future__ import annotations

from trm_bounds.studies.training import figures_job, main

__all__ = ["figures_job", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
