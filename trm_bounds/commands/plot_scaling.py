"""Write the bounds-vs-T log-log figure (PNG, PDF) with its CSV/JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._validate import check_horizon, check_output_dir, number_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("paper_figures"), help="output directory")
    p.add_argument("--T-max", type=number_arg, default=1e6, help="largest horizon on the grid (default 1e6)")
    p.add_argument("--points", type=int, default=61, help="grid points (log-spaced)")


def run(args: argparse.Namespace) -> int:
    from ..report import write_scaling  # matplotlib: only when run

    T_max = int(check_horizon(args.T_max, "T-max"))
    if args.points < 2:
        raise ValueError(f"points must be >= 2, got {args.points}")
    if args.points > 10_000:
        raise ValueError(f"points must be <= 10000 (one figure), got {args.points}")
    check_output_dir(args.out, "out")  # before any work
    records = write_scaling(args.out, T_max=T_max, points=args.points)
    for r in records:
        print(args.out / r["path"])
    return 0
