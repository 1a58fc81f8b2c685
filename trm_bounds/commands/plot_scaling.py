"""Write the bounds-vs-T log-log figure (PNG, PDF) with its CSV/JSON.

Into --out DIR (default runs/scaling, which git ignores): scaling.png, scaling.pdf,
scaling.csv, scaling.json. Existing files of those names are replaced only with --force.
The tracked copies in paper_figures/ are made by `trm-bounds figures`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._validate import check_horizon, number_arg

SCALING_FILES = ("scaling.png", "scaling.pdf", "scaling.csv", "scaling.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / "scaling",
        help="output directory (default: runs/scaling, ignored by git; paper_figures/ is written by "
        "`trm-bounds figures`)",
    )
    p.add_argument("--force", action="store_true", help="replace existing scaling.* files in --out")
    p.add_argument("--T-max", type=number_arg, default=1e6, help="largest horizon on the grid (default 1e6)")
    p.add_argument("--points", type=int, default=61, help="grid points (log-spaced)")


def run(args: argparse.Namespace) -> int:
    from .._outdir import staged_output
    from ..report import write_scaling  # matplotlib: only when run

    T_max = int(check_horizon(args.T_max, "T-max"))
    if args.points < 2:
        raise ValueError(f"points must be >= 2, got {args.points}")
    if args.points > 10_000:
        raise ValueError(f"points must be <= 10000 (one figure), got {args.points}")
    with staged_output(args.out, SCALING_FILES, args.force) as stage:
        records = write_scaling(stage, T_max=T_max, points=args.points)
    for r in records:
        print(args.out / r["path"])
    return 0
