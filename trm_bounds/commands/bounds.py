"""Evaluate every registered bound for one setting and print JSON.

Omitted inputs are filled as INTERFACES.md says (eps by Pinsker, dkl_seq = T delta,
dtv_seq by Pinsker, Dbar_t = eps), and `inputs.sources` says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._json import dumps
from .._validate import read_npy
from ..bounds import BoundInputs, evaluate_bounds
from ..refined import REFINED_OF  # noqa: F401 - importing it registers the *_refined bounds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=float, required=True, help="horizon T >= 1")
    p.add_argument("--delta", type=float, required=True, help="max token KL D_KL^{tok,max} >= 0")
    p.add_argument("--eps", type=float, default=None, help="max token TV (default: Pinsker from delta)")
    p.add_argument("--dkl-seq", type=float, default=None, help="sequence KL (default: T*delta)")
    p.add_argument("--dtv-seq", type=float, default=None, help="sequence TV (default: Pinsker from dkl-seq)")
    p.add_argument("--dbar", type=Path, default=None, help=".npy file of Dbar_t, t=1..T (default: eps)")
    p.add_argument(
        "--json", action="store_true", help="print JSON (the only output format; kept for clarity)"
    )


def run(args: argparse.Namespace) -> int:
    dbar = None if args.dbar is None else read_npy(args.dbar, "dbar")
    inputs = BoundInputs.from_partial(args.T, args.delta, args.eps, args.dkl_seq, args.dtv_seq, dbar)
    out = {"inputs": inputs.to_json(), "bounds": evaluate_bounds(inputs)}
    print(dumps(out, indent=2))
    return 0
