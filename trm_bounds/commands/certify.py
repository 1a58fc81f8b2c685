"""Certify a dumped batch: what its TRM mask guarantees, and the unified bound B* with provenance.

Reads an .npz with arrays `log_prob`, `rollout_log_prob`, `response_mask` (B, T) and optionally
`exact_kl` (e.g. dumped from a verl or TRL run; `trm_bounds.certify.save_logprobs` writes one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._json import dumps
from ..certify import certify, load_logprobs
from ..masks import AVG_ESTIMATORS, MAX_ESTIMATORS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logprobs", type=Path, required=True, help=".npz with log_prob, rollout_log_prob, ...")
    p.add_argument("--delta", type=float, default=None, help="TRM-Max threshold (max token k2 or exact KL)")
    p.add_argument(
        "--delta-avg", type=float, default=None, help="TRM-Avg threshold (mean token k3 or exact KL)"
    )
    p.add_argument("--T", type=float, default=None, help="horizon for the bound (default: padded width)")
    p.add_argument("--eps", type=float, default=None, help="assume this max token TV (default: Pinsker)")
    p.add_argument("--dkl-seq", type=float, default=None, help="assume this sequence KL (default: T*delta)")
    p.add_argument("--dtv-seq", type=float, default=None, help="assume this sequence TV (default: Pinsker)")
    p.add_argument("--max-estimator", default="k2", choices=tuple(MAX_ESTIMATORS), help="TRM-Max statistic")
    p.add_argument("--avg-estimator", default="k3", choices=tuple(AVG_ESTIMATORS), help="TRM-Avg statistic")
    p.add_argument(
        "--json", action="store_true", help="print JSON (the only output format; kept for clarity)"
    )


def run(args: argparse.Namespace) -> int:
    data = load_logprobs(args.logprobs)
    cert = certify(
        data["log_prob"],
        data["rollout_log_prob"],
        data["response_mask"],
        exact_kl=data.get("exact_kl"),
        delta=args.delta,
        delta_avg=args.delta_avg,
        T=args.T,
        eps=args.eps,
        dkl_seq=args.dkl_seq,
        dtv_seq=args.dtv_seq,
        max_estimator=args.max_estimator,
        avg_estimator=args.avg_estimator,
    )
    print(dumps(cert, indent=2))
    return 0
