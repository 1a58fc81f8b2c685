"""Exact quantities of a policy pair: J, L', Error, every divergence and every bound.

Three sources (exactly one):
  --pair FILE.npz    a tabular pair (docs/formats.md, "Policy pair");
  --chain FILE.npz   a finite-state pair (trm_bounds.chain; --T overrides its horizon);
  --policy NAME      build one: a policy (tabular / transformer / moe, the trainer's
                     builder) of --P, --V, --T, a reward family, and a --mismatch mechanism
                     of --strength (--list-mismatch lists them), seeded by --seed;
                     --save-pair OUT.npz writes the generated pair in the tabular layout.
Prints one JSON object (its keys: docs/formats.md, "exact JSON"). Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._json import dumps
from .._validate import check_output_file
from ._mismatch_args import add_mismatch_arguments, print_notes, resolve_mismatch_args

HELP = "exact J, surrogate, error, divergences and bounds of a policy pair (JSON)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..exact import MASK_RULES
    from ..policies import POLICIES
    from ..rewards import REWARDS

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--pair", type=Path, help="tabular pair file (.npz; docs/formats.md; e.g. docs/examples/pair.npz)"
    )
    src.add_argument(
        "--chain",
        type=Path,
        help="finite-state chain pair file (.npz; docs/formats.md; e.g. docs/examples/chain.npz)",
    )
    src.add_argument("--policy", choices=sorted(POLICIES), help="build a pair from this policy")
    p.add_argument("--P", type=int, default=1, help="prompts (with --policy)")
    p.add_argument("--V", type=int, default=2, help="vocabulary size (with --policy)")
    p.add_argument(
        "--T", type=int, default=None, help="horizon (with --policy: default 8; with --chain: override)"
    )
    p.add_argument("--eos", type=int, default=None, help="absorbing EOS token id (with --policy)")
    add_mismatch_arguments(p, default="dense", target_help="with --policy: makes pi_roll from the policy")
    p.add_argument(
        "--reward", choices=sorted(REWARDS), default="random", help="reward family (with --policy)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds policy, reward and perturbation")
    p.add_argument("--save-pair", type=Path, default=None, help="write the generated pair (.npz)")
    p.add_argument("--baseline", type=float, default=None, help="b for L_b = E_roll[(R - b) sum_t rho_t]")
    p.add_argument("--mask", choices=sorted(MASK_RULES), default=None, help="TRM mask rule for acceptance")
    p.add_argument("--mask-delta", type=float, default=None, help="TRM-Max threshold on max_t KL")
    p.add_argument("--mask-delta-avg", type=float, default=None, help="TRM-Avg threshold on mean_t KL")
    p.add_argument(
        "--future-tv", action="store_true", help="also the future-trajectory TV sup per t (O(T V**T))"
    )
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument(
        "--json", action="store_true", help="print JSON (the only output format; kept for clarity)"
    )


# options that only some sources use: passing one to another source is refused, never ignored
_INLINE = 64  # per-t lists longer than this print on one line (same JSON; long chains print fast)
_POLICY_ONLY = ("P", "V", "eos", "mismatch", "strength", "reward", "seed", "save_pair")
_TREE_ONLY = ("baseline", "mask", "mask_delta", "mask_delta_avg", "future_tv")


def _refuse_unused(args: argparse.Namespace, names, source: str | None = None) -> None:
    """ValueError naming the first option in `names` given a non-default value (it would be ignored)."""
    defaults = {"P": 1, "V": 2, "eos": None, "mismatch": "dense", "strength": None, "reward": "random",
                "seed": 0, "save_pair": None, "baseline": None, "mask": None, "mask_delta": None,
                "mask_delta_avg": None, "future_tv": False, "T": None}  # fmt: skip
    if source is None:
        given = "--chain" if args.chain is not None else "--pair" if args.pair is not None else "--policy"
        source = f"to {given}"
    for name in names:
        if getattr(args, name) != defaults[name]:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{name}: {flag} does not apply {source}")


def _check_args(args: argparse.Namespace) -> None:
    """Every option the chosen source would ignore, and every output path, before any work."""
    from .._compute import check_device

    check_device(args.device)
    if args.chain is not None:
        _refuse_unused(args, _POLICY_ONLY + _TREE_ONLY)
    elif args.pair is not None:
        _refuse_unused(args, _POLICY_ONLY + ("T",))
    if args.mask is None:
        _refuse_unused(args, ("mask_delta", "mask_delta_avg"), "without --mask (a threshold needs a rule)")
    else:
        for name, needed in (("mask_delta", "max" in args.mask), ("mask_delta_avg", "avg" in args.mask)):
            if needed and getattr(args, name) is None:
                raise ValueError(f"{name}: --mask {args.mask} needs --{name.replace('_', '-')}")
    if args.save_pair is not None:
        check_output_file(args.save_pair, "save_pair")


def run(args: argparse.Namespace) -> int:
    if args.pair is not None and args.save_pair is not None:
        raise ValueError("save_pair: only with --policy (a --pair file is already saved)")
    _check_args(args)
    if args.chain is not None:
        from ..chain import evaluate_chain_file  # another layer; imported only when asked

        out = evaluate_chain_file(args.chain, device=args.device, T=args.T)
        print(dumps(out, indent=2, inline_lists=_INLINE))
        return 0
    from ..exact import evaluate_pair_file, exact_quantities

    kwargs = {"baseline": args.baseline, "future_tv": args.future_tv, "device": args.device}
    if args.mask is not None:
        kwargs["mask"] = {"rule": args.mask, "delta": args.mask_delta, "delta_avg": args.mask_delta_avg}
    if args.pair is not None:
        out = evaluate_pair_file(args.pair, **kwargs)
    else:
        pair, notes = build_pair(args, with_notes=True)
        out = exact_quantities(pair.logp_roll, pair.logp_theta, pair.reward, pair.prompt_probs, **kwargs)
        print_notes(notes, "trm-bounds exact")
        out["generated"] = {
            k: getattr(args, k)
            for k in ("policy", "P", "V", "T", "eos", "mismatch", "strength", "reward", "seed")
        }
        if args.save_pair is not None:  # written only after everything above succeeded
            pair.save(args.save_pair)
            out["generated"]["saved_to"] = str(args.save_pair)
    print(dumps(out, indent=2, inline_lists=_INLINE))
    return 0


def build_pair(args: argparse.Namespace, with_notes: bool = False):
    """The PolicyPair that --policy ... describes (validated arguments, seeded); with_notes: and
    the notes on old mismatch spellings."""
    from ..pair import make_pair
    from ..policies import make_policy
    from ..rewards import make_reward

    ((mech, strength),), notes = resolve_mismatch_args(args, "tree")
    args.mismatch, args.strength = mech.name, strength  # the canonical spelling, in "generated" too
    args.T = 8 if args.T is None else args.T
    P, V, T = args.P, args.V, args.T
    policy = make_policy(args.policy, P, V, T, eos=args.eos, seed=args.seed)
    reward = make_reward(args.reward, P, V, T, seed=args.seed, eos=args.eos)
    pair = make_pair(policy, mech.name, strength, reward=reward, seed=args.seed)
    return (pair, notes) if with_notes else pair
