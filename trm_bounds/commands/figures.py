"""Regenerate every figure and table the project makes (the main job), with manifest.json."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=Path("paper_figures"), help="output directory (default: paper_figures)"
    )
    p.add_argument("--quick", action="store_true", help="small grids and few seeds (< 1 minute)")
    p.add_argument("--only", nargs="+", default=None, metavar="JOB", help="run only these jobs")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from ..figures import make_figures  # matplotlib, every job: only when run

    manifest = make_figures(args.out, quick=args.quick, only=args.only, progress=not args.no_progress)
    print(f"wrote {len(manifest['outputs'])} outputs and {args.out / 'manifest.json'}")
    return 0
