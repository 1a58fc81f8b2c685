"""Certify a dumped batch: a sample certificate on |Error| from the batch alone, then what the TRM
mask guarantees and the conditional delta-based bound B* with the provenance of every input.

Reads an .npz with arrays `log_prob`, `rollout_log_prob`, `response_mask` (B, T) and optionally
`exact_kl` (B, T), `group_id` (B,) and `advantages` (B,) or (B, T) (e.g. dumped from a verl or
TRL run; `trm_bounds.certify.save_logprobs` writes one). Prints a short human summary; `--json`
prints the machine form (the `certify` dict plus "sample_certificate").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from .._json import dumps
from .._validate import number_arg
from ..certify import certificate_targets, certify, load_logprobs, sample_certificate
from ..confidence import DEFAULT_METHOD, METHODS
from ..masks import AVG_ESTIMATORS, MAX_ESTIMATORS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logprobs", type=Path, required=True, help=".npz with log_prob, rollout_log_prob, ...")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the sample certificate")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=tuple(METHODS), help="confidence bound")
    p.add_argument("--target", type=float, default=0.1, help="bound on |Error| you would like to certify")
    p.add_argument("--delta", type=float, default=None, help="TRM-Max threshold (max token k2 or exact KL)")
    p.add_argument(
        "--delta-avg", type=float, default=None, help="TRM-Avg threshold (mean token k3 or exact KL)"
    )
    p.add_argument("--T", type=number_arg, default=None, help="horizon T_max (default: padded width)")
    p.add_argument("--eps", type=float, default=None, help="assume this max token TV (default: Pinsker)")
    p.add_argument("--dkl-seq", type=float, default=None, help="assume this sequence KL")
    p.add_argument("--dtv-seq", type=float, default=None, help="assume this sequence TV (default: Pinsker)")
    p.add_argument("--max-estimator", default="k2", choices=tuple(MAX_ESTIMATORS), help="TRM-Max statistic")
    p.add_argument("--avg-estimator", default="k3", choices=tuple(AVG_ESTIMATORS), help="TRM-Avg statistic")
    p.add_argument("--json", action="store_true", help="print the machine form (JSON)")


def run(args: argparse.Namespace) -> int:
    data = load_logprobs(args.logprobs)
    sample = sample_certificate(
        data["log_prob"],
        data["rollout_log_prob"],
        data["response_mask"],
        confidence=args.confidence,
        group_id=data.get("group_id"),
        horizon=args.T,
        method=args.method,
    )
    targets = certificate_targets(sample, args.target)
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
    gain = _surrogate_gain(data)
    sample["targets"] = targets
    if gain is not None:
        sample["surrogate_gain_estimate"] = gain
    cert["sample_certificate"] = sample
    print(dumps(cert, indent=2) if args.json else summary(cert))
    return 0


def _surrogate_gain(data: dict) -> float | None:
    """Estimate of L'(theta) = E_roll[A sum_t (rho_t - 1)] from `advantages` (B,) or (B, T); None without.

    With a baseline b, E_roll[(R - b) sum_t (rho_t - 1)] = L'(theta) (E_roll[rho_t - 1] = 0 when
    pi_theta << pi_roll), so sequence advantages give an unbiased estimate; token advantages the
    token-level analogue. An estimate, not a bound.
    """
    if "advantages" not in data:
        return None
    m = data["response_mask"] > 0
    lr = np.where(m, data["log_prob"].astype(np.float64) - data["rollout_log_prob"].astype(np.float64), 0.0)
    dev = np.where(m, np.expm1(lr), 0.0)  # rho_t - 1
    a = np.asarray(data["advantages"], dtype=np.float64)
    if a.shape == m.shape[:1]:
        per = a * dev.sum(-1)
    elif a.shape == m.shape:
        per = np.where(m, a * dev, 0.0).sum(-1)
    else:
        raise ValueError(f"advantages must have shape {m.shape[:1]} or {m.shape}, got {a.shape}")
    if not np.isfinite(per).all():
        raise ValueError("advantages: the surrogate estimate is not finite (NaN/inf advantages or rho)")
    rows = m.any(-1)
    return float(per[rows].mean())


def _f(x) -> str:
    return "inf" if isinstance(x, float) and math.isinf(x) else f"{x:.4g}"


def summary(cert: dict) -> str:
    """The human summary: the sample certificate first, then what would help, then the conditional B*."""
    s = cert["sample_certificate"]
    t = s["targets"]
    X = s["bound"]
    sd, dt, so = s["sum_dbar"], s["dtv_seq"], s["second_order"]
    conf = f"{s['confidence']:.0%}"
    lines = [
        f"Sample certificate ({s['units']} {s['unit']}s, {s['n_tokens']} tokens, horizon T = {s['horizon']}, "
        f"{s['method']} bound):",
        f"  with probability >= {conf} over this batch, |J(theta) - J(roll) - L'(theta)| <= {_f(X)}",
        "  (rewards of range <= 1; 4 x instead of 2 x for rewards in [-1, 1]: "
        f"{_f(s['bounds']['linear_dbar'])})",
        f"  inputs: sum_t Dbar_t  estimate {_f(sd['estimate'])}, {conf} upper bound {_f(sd['upper'])}",
        f"          D_TV^seq      estimate {_f(dt['estimate'])}, {conf} upper bound {_f(dt['upper'])}",
        f"          mean (1 - rho)_+ per token: {_f(s['per_token_mean'])} (estimate)",
        f"  second-order estimate of the error scale E[Z]: {_f(so['estimate'])}, approximate interval "
        f"[{_f(so['interval'][0])}, {_f(so['interval'][1])}] (CLT; NOT a guarantee)",
    ]
    gain = s.get("surrogate_gain_estimate")
    if gain is not None:
        verdict = "exceeds" if gain > X else "does NOT exceed"
        lines.append(
            f"  improvement: the surrogate gain L'(theta) is estimated at {_f(gain)} from the advantages; "
            f"it {verdict} X = {_f(X)}"
            + (" (an estimate: certify only with a margin for its own noise)" if gain > X else "")
        )
    else:
        lines.append(
            f"  improvement: J(theta) > J(roll) is certified only when the surrogate gain L'(theta) exceeds "
            f"X = {_f(X)} (the file has no advantages to estimate it)"
        )
    if X > t["target"]:
        n_needed = 2.0 * s["horizon"] * math.log(1.0 / s["alpha"]) / t["target"]
        longest = t["longest_T_now"]
        lines += [
            f"  to reach X <= {_f(t['target'])} (--target): the mean (1 - rho)_+ per token must be below "
            f"{_f(t['per_token_mean_needed'])} at T = {s['horizon']} (now {_f(t['per_token_mean_now'])});",
            "  at today's mismatch, "
            + (
                f"X stays below the target only up to T ~ {longest} (estimate)"
                if math.isfinite(longest)
                else "the mismatch is 0"
            )
            + f"; even without mismatch a valid bound needs about {n_needed:.0f} units "
            f"(width ~ T log(1/alpha) / n)",
        ]
    else:
        lines.append(f"  the target X <= {_f(t['target'])} is met")
    b = cert["bound"]
    acc = cert["acceptance"]
    src = b["inputs"]["sources"]
    lines += [
        "",
        f"Conditional bound (TRM paper's B*, {cert['mask']['mode']} mask, acceptance {acc['overall']:.1%}, "
        f"{acc['n_accepted']} of {cert['batch']['n_nonempty']} sequences):",
        f"  CONDITIONAL: IF the token KL is <= delta = {_f(b['inputs']['delta'])} at EVERY reachable "
        "context, "
        f"THEN |Error| <= B* = {_f(b['unified'])}; the batch cannot check this hypothesis",
        f"  delta: {src['delta']}",
        f"  dkl_seq = {_f(b['inputs']['dkl_seq'])}: {src['dkl_seq']}",
    ]
    warnings = cert.get("warnings", [])
    if warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in warnings]
    return "\n".join(lines)
