"""Evaluate every registered bound for one setting: a readable table by default, JSON with --json.

Omitted inputs are filled as docs/theory.md ("Inputs of `trm-bounds bounds`") says: eps by
Pinsker from delta, dkl_seq = T delta, dtv_seq by Pinsker from dkl_seq, Dbar_t = eps for every t
(the worst case); the table and `inputs.sources` say which. The table gives each bound's paper
equation and version (or "refined, this package"), its assumption, the tightest, and whether
any attainable surrogate gain L' can exceed it (a certified improvement needs L' > B).
`--explain [NAME]` prints each key's formula, inputs and source. In the JSON the per-t array
`inputs.dbar` appears only when --dbar is given or with --full.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._json import dumps
from .._validate import number_arg, read_npy
from ..bound_table import bounds_summary, explain_bounds, format_bounds_table, surrogate_limit
from ..bounds import BoundInputs
from ..refined import REFINED_ASSUMPTION  # importing it registers the *_refined bounds


class _Explain(argparse.Action):
    """Print the formulas and exit 0, before the required --T/--delta are checked."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            print(explain_bounds(values))
        except ValueError as exc:
            parser.error(str(exc))
        parser.exit(0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=number_arg, required=True, help="horizon T >= 1 (an integer)")
    p.add_argument("--delta", type=float, required=True, help="max token KL D_KL^{tok,max} >= 0")
    p.add_argument("--eps", type=float, default=None, help="max token TV (default: Pinsker from delta)")
    p.add_argument("--dkl-seq", type=float, default=None, help="sequence KL (default: T*delta)")
    p.add_argument("--dtv-seq", type=float, default=None, help="sequence TV (default: Pinsker from dkl-seq)")
    p.add_argument("--dbar", type=Path, default=None, help=".npy file of Dbar_t, t=1..T (default: eps)")
    p.add_argument(
        "--target",
        type=float,
        default=0.1,
        help="bound you would like to reach: the table says which delta / T get there (default 0.1)",
    )
    p.add_argument(
        "--reward-range",
        type=float,
        default=1.0,
        help="max R - min R of your rewards (default 1: R in [0, 1]); a wider range scales the bounds "
        "(published: by range/2 above 2; refined and second_order: by range above 1)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--full", action="store_true", help="with --json: include the per-t array inputs.dbar")
    p.add_argument(
        "--explain",
        action=_Explain,
        metavar="NAME",
        help="print each bound's formula, inputs, regime, assumption and source (or NAME's) and exit",
    )


def run(args: argparse.Namespace) -> int:
    dbar = None if args.dbar is None else read_npy(args.dbar, "dbar")  # the library checks every input
    inputs = BoundInputs.from_partial(args.T, args.delta, args.eps, args.dkl_seq, args.dtv_seq, dbar)
    summary = bounds_summary(
        inputs, target=args.target, targets=not args.json, reward_range=args.reward_range
    )
    if not args.json:
        print(format_bounds_table(summary))
        return 0
    out_inputs = inputs.to_json(full=args.full)
    if dbar is None and not args.full:
        del out_inputs["dbar"]  # T copies of eps; sources["dbar"] says so
    out_inputs["dbar_sum"] = surrogate_limit(inputs)  # sum_t Dbar_t (a uniform dbar: no pass over T)
    out = {
        "inputs": out_inputs,
        "bounds": summary["bounds"],
        "tightest": summary["tightest"],
        "max_abs_surrogate": summary["surrogate_limit"],
        "never_certify": [n for n, ok in summary["certifies"].items() if not ok],
        "assumptions": {
            "reward_range": args.reward_range,
            "refined": f"*_refined and second_order: {REFINED_ASSUMPTION}",
            "published": "rewards with max R - min R <= 2 (|R| <= 1 after a shift); wider ranges multiply by range/2",
        },
    }
    print(dumps(out, indent=2))
    return 0
