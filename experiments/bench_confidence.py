"""Tightness and coverage of the confidence bounds of trm_bounds.confidence (Hoeffding, empirical
Bernstein, betting) on [0, 1] laws shaped like the certificate's S / T_max: small means, small
variance, occasional spikes. Command: python experiments/bench_confidence.py [--reps 500].
Prints one table: law, n, method, mean width (upper - mean), coverage (1 - alpha = 0.95).
"""

from __future__ import annotations

import argparse

import numpy as np

from trm_bounds.confidence import METHODS

LAWS = {
    "beta mean 1e-3 (tiny variance)": lambda rng, s: rng.beta(0.05, 50, s),
    "beta mean 1e-2": lambda rng, s: rng.beta(0.5, 50, s),
    "spikes 1% at 1 + 1e-3": lambda rng, s: np.where(rng.random(s) < 0.01, 1.0, 1e-3),
    "bernoulli 0.5 (max variance)": lambda rng, s: (rng.random(s) < 0.5) * 1.0,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=500)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'law':32s} {'n':>5s} " + " ".join(f"{m + ' width':>16s} {'cov':>5s}" for m in METHODS))
    for name, draw in LAWS.items():
        mu = float(draw(np.random.default_rng(99), 2_000_000).mean())
        for n in (16, 64, 256, 1024):
            x = draw(rng, (args.reps, n))
            cells = []
            for f in METHODS.values():
                u = f(x, 0.05)
                cells.append(f"{float(np.mean(u - x.mean(-1))):16.4g} {float(np.mean(u >= mu)):5.3f}")
            print(f"{name:32s} {n:5d} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
