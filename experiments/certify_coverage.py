"""Coverage of the sample certificate in the exact environment, and its growth with T.

Command: python experiments/certify_coverage.py [--quick] [--out DIR]
Writes certify/certify_coverage.{png,pdf,csv,json} and certify/certify_horizon.{png,pdf,csv}
under DIR (default paper_figures). The study lives in `trm_bounds.studies.coverage` (figures_job).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trm_bounds.studies.coverage import figures_job


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small configuration (a few seconds)")
    ap.add_argument("--out", type=Path, default=Path("paper_figures"), help="output directory")
    args = ap.parse_args(argv)
    for rec in figures_job(args.out, args.quick):
        print(args.out / rec["path"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
