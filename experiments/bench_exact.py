"""Benchmark of the exact engine (trm_bounds.exact): leaves per second, speed-up ratios, memory.

Measures, in one run and on the same machine:
1. the engine (`exact_quantities`, every quantity, future_tv off) at V = 2, T = 10..24;
2. a per-trajectory reference (a Python loop over leaves: J, L' by ratios, Error, joint KL/TV)
   at the small sizes, and a plain level-by-level numpy implementation (same forward/backward
   idea, plain p * (log p - log q) / |p - q| formulas, no chunking) at equal sizes: ratios;
3. peak memory per leaf at the largest size, extrapolated to the largest V**T within 8 GB;
4. CPU vs GPU when CUDA is present.

Command: python experiments/bench_exact.py [--max-T 24] [--json out.json]
Writes nothing unless --json is given; prints a table. Timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import time

import numpy as np
import torch
from tqdm import tqdm

from trm_bounds.exact import exact_quantities


def make_tree(P: int, V: int, T: int, seed: int = 0):
    """A dense-noise pair (float64 torch): pi_theta logits ~ N(0, 1), pi_roll = + N(0, 0.1^2)."""
    gen = torch.Generator().manual_seed(seed)
    lt = [
        torch.log_softmax(torch.randn((P, V**k, V), generator=gen, dtype=torch.float64), -1) for k in range(T)
    ]
    lr = [
        torch.log_softmax(x + 0.1 * torch.randn(x.shape, generator=gen, dtype=torch.float64), -1) for x in lt
    ]
    R = torch.rand((P, V**T), generator=gen, dtype=torch.float64)
    return lr, lt, R, torch.full((P,), 1.0 / P, dtype=torch.float64)


def per_trajectory(lr, lt, R, pp) -> dict:
    """Python loop over every (x, y): J_roll, J_theta, L' (ratio form), Error, joint KL and TV."""
    lr = [x.numpy() for x in lr]
    lt = [x.numpy() for x in lt]
    R, pp = R.numpy(), pp.numpy()
    P, V, T = lr[0].shape[0], lr[0].shape[-1], len(lr)
    J_r = J_t = Lp = kl = tv = 0.0
    for x in range(P):
        for leaf, y in enumerate(itertools.product(range(V), repeat=T)):
            row, a, b, s = 0, 0.0, 0.0, 0.0
            for t in range(T):
                ar, bt = lr[t][x, row, y[t]], lt[t][x, row, y[t]]
                a, b, s = a + ar, b + bt, s + math.exp(bt - ar) - 1.0
                row = row * V + y[t]
            pr, pt = pp[x] * math.exp(a), pp[x] * math.exp(b)
            J_r, J_t, Lp = J_r + pr * R[x, leaf], J_t + pt * R[x, leaf], Lp + pr * R[x, leaf] * s
            kl, tv = kl + pr * (a - b), tv + 0.5 * abs(pr - pt)
    return {
        "J_roll": J_r,
        "J_theta": J_t,
        "surrogate": Lp,
        "error": J_t - J_r - Lp,
        "dkl_seq": kl,
        "dtv_seq": tv,
    }


def plain_numpy(lr, lt, R, pp) -> dict:
    """Level-by-level numpy, the textbook way: forward d_t, backward Q_t, plain divergences."""
    lr = [x.numpy().reshape(-1, x.shape[-1]) for x in lr]
    lt = [x.numpy().reshape(-1, x.shape[-1]) for x in lt]
    R, pp = R.numpy().reshape(-1), pp.numpy()
    T = len(lr)
    d_r, d_t, stash = pp.copy(), pp.copy(), []
    eps = delta = dkl = 0.0
    dbar = np.zeros(T)
    for k in range(T):
        pr, pt = np.exp(lr[k]), np.exp(lt[k])
        kl = np.sum(pr * (lr[k] - lt[k]), -1)
        tv = 0.5 * np.abs(pr - pt).sum(-1)
        eps, delta, dkl, dbar[k] = max(eps, tv.max()), max(delta, kl.max()), dkl + d_r @ kl, d_r @ tv
        stash.append((pr, pt, d_r, d_t))
        d_r, d_t = (d_r[:, None] * pr).reshape(-1), (d_t[:, None] * pt).reshape(-1)
    J_r, J_t, dtv = d_r @ R, d_t @ R, 0.5 * np.abs(d_r - d_t).sum()
    Q, Lp, err = R, 0.0, 0.0
    for pr, pt, dr, dt in reversed(stash):
        Q = Q.reshape(pr.shape)
        g = ((pt - pr) * Q).sum(-1)
        Lp, err = Lp + dr @ g, err + (dt - dr) @ g
        Q = (pr * Q).sum(-1)
    return {"J_roll": J_r, "J_theta": J_t, "surrogate": Lp, "error": err, "dkl_seq": dkl, "dtv_seq": dtv}


def _time(fn, *args, repeat: int = 1) -> tuple[float, dict]:
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-T", type=int, default=24, help="largest horizon for the engine (V = 2)")
    ap.add_argument("--json", default=None, help="write the measurements to this JSON file")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs per size (engine, numpy)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = []
    engine = lambda lr, lt, R, pp: exact_quantities(lr, lt, R, pp, validate=False)
    sizes = [T for T in (10, 12, 16, 20, 22, 24) if T <= args.max_T]
    for T in tqdm(sizes, desc="bench_exact"):
        tree = make_tree(1, 2, T)
        leaves = 2**T
        t_eng, out = _time(engine, *tree, repeat=args.repeat)
        row = {"T": T, "leaves": leaves, "engine_s": t_eng, "engine_leaves_per_s": leaves / t_eng}
        if T <= 16:
            t_ref, ref = _time(per_trajectory, *tree)
            row.update(
                reference_s=t_ref,
                speedup_vs_reference=t_ref / t_eng,
                max_abs_diff_vs_reference=max(abs(out[k] - ref[k]) for k in ref),
            )
        if T <= 22:
            t_np, ref = _time(plain_numpy, *tree, repeat=args.repeat)
            row.update(
                numpy_s=t_np,
                speedup_vs_numpy=t_np / t_eng,
                max_abs_diff_vs_numpy=max(abs(out[k] - ref[k]) for k in ref),
            )
        if torch.cuda.is_available():
            gpu = lambda lr, lt, R, pp: exact_quantities(lr, lt, R, pp, validate=False, device="cuda")
            _time(gpu, *tree)  # warm-up
            t_gpu, _ = _time(gpu, *tree)
            row.update(gpu_s=t_gpu, gpu_leaves_per_s=leaves / t_gpu)
        rows.append(row)
        del tree
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux: KiB)
    per_leaf = peak / rows[-1]["leaves"]
    largest = 2 ** int(math.floor(math.log2(8 * 2**30 / per_leaf)))
    summary = {
        "threads": torch.get_num_threads(),
        "rows": rows,
        "peak_rss_bytes": peak,
        "bytes_per_leaf_at_largest": per_leaf,
        "largest_leaves_within_8GB_estimate": largest,
        "cuda": torch.cuda.is_available(),
    }
    for r in rows:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    print(
        f"peak RSS {peak / 2**30:.2f} GiB = {per_leaf:.0f} B/leaf at 2^{sizes[-1]} -> "
        f"largest V**T within 8 GB ~ 2^{int(math.log2(largest))} (inputs held in memory; engine chunked)"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
