"""Train a tiny policy on the exact environment with exact monotonic-improvement checks every step.

Writes OUT/config.json and OUT/steps.jsonl (one JSON object per optimizer step; every field is
described in docs/formats.md, "Training log") and, with --save-pair-every K, OUT/pairs/step_<step>.npz (pi_roll against
pi_theta_new). Prints a JSON summary: certified steps, violations (certified but
J_new <= J_roll: must be 0), skipped and shrunk steps (--certified).

The run is written into a staging folder beside OUT (.<name>.staging-<pid>-<time>-<random>/, where
steps.jsonl grows as it trains) and moved to OUT in one rename when it finishes; an existing
non-empty OUT is refused unless --force, which replaces it as a whole (no file of the old run
stays beside the new one).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from .._json import dumps
from .._outdir import staged_output
from ..trainer import ADVANTAGES, TRAIN_METHODS, TrainConfig, train
from ._mismatch_args import add_mismatch_arguments, print_notes, resolve_mismatch_args

HELP = "policy-gradient training with mismatch, masks and exact per-step certificates (steps.jsonl)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    mismatch_default = next(f.default for f in fields(TrainConfig) if f.name == "mismatch")  # a bare name
    p.add_argument("--method", default=d.method, help=f"one of: {', '.join(TRAIN_METHODS)}")
    add_mismatch_arguments(
        p,
        default=mismatch_default,
        target_help=f"the rollout engine's: 'none', or several joined by '+', e.g. moe+lag; "
        f"default {d.mismatch.replace('=', ' at strength ')}",
    )
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the policy, reward, rollouts and mismatch")
    p.add_argument("--out", type=Path, required=True, help="run directory (config.json, steps.jsonl)")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out (the whole folder)")
    p.add_argument(
        "--save-pair-every", type=int, default=0, metavar="K", help="write pairs/step_<k>.npz every K steps"
    )
    p.add_argument(
        "--certified", action="store_true", help="backtrack / skip until L' > B* (J never below J_roll)"
    )
    p.add_argument(
        "--max-backtracks",
        type=int,
        default=d.max_backtracks,
        help="with --certified: step halvings before a skip",
    )
    p.add_argument("--policy", default=d.policy, help="tabular | transformer | moe")
    p.add_argument("--reward", default=d.reward, help="reward family (trm_bounds.rewards.REWARDS)")
    p.add_argument("--P", type=int, default=d.P, help="prompts of the exact environment")
    p.add_argument("--V", type=int, default=d.V, help="vocabulary size")
    p.add_argument("--T", type=int, default=d.T, help="horizon (maximum response length)")
    p.add_argument("--eos", type=int, default=d.eos, help="EOS token id (-1: no EOS, fixed length)")
    p.add_argument("--n-groups", type=int, default=d.n_groups, help="prompts per step")
    p.add_argument("--group-size", type=int, default=d.group_size, help="G responses per prompt")
    p.add_argument("--advantage", default=d.advantage, help=", ".join(ADVANTAGES))
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--loss-norm", default=d.loss_norm, help="total (paper) | kept (verl)")
    p.add_argument("--max-threshold", type=float, default=d.max_threshold, help="TRM-Max delta")
    p.add_argument("--avg-threshold", type=float, default=d.avg_threshold, help="TRM-Avg delta")
    p.add_argument("--ln-threshold", type=float, default=d.ln_threshold, help="LN-TRM delta_W")
    p.add_argument("--ser-threshold", type=float, default=d.ser_threshold, help="SER delta")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    chosen, notes = resolve_mismatch_args(args, "engine")
    spec = "+".join(f"{mech.name}={s}" for mech, s in chosen) or "none"
    cfg = TrainConfig(
        method=args.method,
        mismatch=spec,
        policy=args.policy,
        reward=args.reward,
        P=args.P,
        V=args.V,
        T=args.T,
        eos=None if args.eos == -1 else args.eos,
        steps=args.steps,
        n_groups=args.n_groups,
        group_size=args.group_size,
        advantage=args.advantage,
        lr=args.lr,
        loss_norm=args.loss_norm,
        max_threshold=args.max_threshold,
        avg_threshold=args.avg_threshold,
        ln_threshold=args.ln_threshold,
        ser_threshold=args.ser_threshold,
        certified=args.certified,
        max_backtracks=args.max_backtracks,
        seed=args.seed,
    )
    print_notes(notes, "trm-bounds train")
    with staged_output(args.out, None, args.force) as stage:  # checked here, before training
        result = train(
            cfg, out_dir=stage, save_pair_every=args.save_pair_every, progress=not args.no_progress
        )
        (stage / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
    print(dumps({"out": str(args.out), "config": cfg.to_json(), "summary": result.summary}, indent=2))
    return 0
