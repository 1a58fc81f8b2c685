"""Benchmark: one exact long-horizon point of the chain DP engine (issue 6).

Measures `trm_bounds.chain_quantities` on a random automaton with S = 256 states, V = 32
tokens at T = 4096 (dense noise mismatch), against a plain numpy loop over t computing the
core quantities (J_roll, J_theta, L', Error, Dbar_t, D_KL^seq) in the same run, and
against the engine's own gather/scatter operators. Both routes must give the same Error.

    python experiments/bench_chain.py [--S 256] [--V 32] [--T 4096] [--repeats 3] [--device cpu]

Prints one JSON object: seconds per route (best of `repeats`), the ratio plain / engine,
and the errors of each route. Timings live here, never in unit tests.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from trm_bounds.chain import ChainPair, chain_quantities, random_automaton_transition, random_chain_pair


def plain_numpy_loop(pair: ChainPair) -> dict:
    """The obvious numpy implementation: per-step gather (backward) and bincount (forward)."""
    T, S = pair.T, pair.S
    pr, pth = np.exp(pair.logp_roll), np.exp(pair.logp_theta)
    trans = pair.transition
    tv = 0.5 * np.abs(pth - pr).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(pr > 0, pr * (pair.logp_roll - pair.logp_theta), 0.0).sum(-1)
    U, Ut = pair.reward_final.copy(), pair.reward_final.copy()
    g = np.empty((T, S))
    for k in range(T - 1, -1, -1):  # backward over t = k + 1
        q, qt = pair.reward_step / T + U[trans], pair.reward_step / T + Ut[trans]
        g[k] = ((pth - pr) * q).sum(-1)
        U, Ut = (pr * q).sum(-1), (pth * qt).sum(-1)
    mu = np.bincount(pair.init_state, weights=pair.prompt_probs, minlength=S)
    J_roll, J_theta = float(mu @ U), float(mu @ Ut)
    surrogate, dkl, dbar = 0.0, 0.0, np.empty(T)
    for k in range(T):  # forward
        surrogate += float(mu @ g[k])
        dbar[k] = mu @ tv
        dkl += float(mu @ kl)
        mu = np.bincount(trans.ravel(), weights=(mu[:, None] * pr).ravel(), minlength=S)
    return dict(
        J_roll=J_roll, J_theta=J_theta, surrogate=surrogate, error=J_theta - J_roll - surrogate, dkl_seq=dkl
    )


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--S", type=int, default=256)
    ap.add_argument("--V", type=int, default=32)
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    tr = random_automaton_transition(args.S, args.V, np.random.default_rng(0))
    pair = random_chain_pair(tr, "dense", 0.05, args.T, seed=0)
    t_eng, eng = _best(lambda: chain_quantities(pair, device=args.device), args.repeats)
    t_gs, gs = _best(lambda: chain_quantities(pair, device=args.device, dense=False), args.repeats)
    t_np, ref = _best(lambda: plain_numpy_loop(pair), args.repeats)
    out = {
        "S": args.S,
        "V": args.V,
        "T": args.T,
        "device": args.device,
        "seconds_engine": round(t_eng, 4),
        "seconds_engine_gather_scatter": round(t_gs, 4),
        "seconds_plain_numpy_loop": round(t_np, 4),
        "ratio_plain_over_engine": round(t_np / t_eng, 2),
        "error_engine": eng["error"],
        "error_gather_scatter": gs["error"],
        "error_plain": ref["error"],
        "abs_diff_error": abs(eng["error"] - ref["error"]),
        "note": "the engine also computes eps, delta, g_inf, D_TV bounds, reachability and both error forms",
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
