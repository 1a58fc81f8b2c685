"""Plot one or several training runs (`trm-bounds train --out RUN`): exact J, acceptance,
surrogate vs bound and certified steps, as PNG and PDF."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="run directories written by `trm-bounds train --out RUN`",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE_PREFIX",
        help="write FILE_PREFIX.png and FILE_PREFIX.pdf (default: RUN/plot for the first RUN)",
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE_PREFIX.png/.pdf if they exist")


def run(args: argparse.Namespace) -> int:
    from ..studies.runs import load_run, plot_runs  # matplotlib: only when run

    runs = [load_run(r) for r in args.runs]  # every run checked before anything is written
    prefix = args.out if args.out is not None else args.runs[0] / "plot"
    for p in plot_runs(runs, prefix, force=args.force):
        print(p)
    return 0
