"""Write the small example inputs of docs/examples/ that the README and docs/formats.md use.

- docs/examples/pair.npz: a tabular policy pair (P = 2 prompts, V = 3, T = 4): a random tabular
  policy as pi_theta, pi_roll = the same logits moved by 0.3 N(0, 1) ("dense" mismatch), a
  random reward in [0, 1]; what `trm-bounds exact --policy tabular --P 2 --V 3 --T 4 --mismatch
  dense --strength 0.3 --seed 0 --save-pair docs/examples/pair.npz` writes.
- docs/examples/chain.npz: a finite-state chain pair (8 states = the last 3 tokens of V = 2,
  horizon T = 16384): a random softmax policy per state and a copy perturbed by "dense"
  mismatch of strength 0.05, reward at the final state.
- docs/examples/bf16_batch.npz (a batch of log-probs) is written by make_example_batch.py.

Deterministic (seeded, float64): rerunning gives the same arrays; a file whose arrays are already
equal is left untouched, so the clone stays clean. Command: python experiments/make_examples.py
[--out DIR].
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from trm_bounds.chain import last_k_transition, random_chain_pair
from trm_bounds.pair import make_pair
from trm_bounds.policies import make_policy
from trm_bounds.rewards import make_reward

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def example_pair():
    """The PolicyPair of docs/examples/pair.npz."""
    P, V, T = 2, 3, 4
    policy = make_policy("tabular", P, V, T, seed=0)
    reward = make_reward("random", P, V, T, seed=0)
    return make_pair(policy, "dense", 0.3, reward=reward, seed=0)


def example_chain():
    """The ChainPair of docs/examples/chain.npz."""
    return random_chain_pair(last_k_transition(2, 3), "dense", 0.05, T=16384, seed=0)


def _same_arrays(a: Path, b: Path) -> bool:
    if not (a.exists() and b.exists()):
        return False
    with np.load(a) as za, np.load(b) as zb:
        return set(za.files) == set(zb.files) and all(np.array_equal(za[k], zb[k]) for k in za.files)


def write_examples(out: Path = EXAMPLES) -> dict[str, str]:
    """Write pair.npz and chain.npz into `out`; {file name: "written" | "unchanged"}."""
    out.mkdir(parents=True, exist_ok=True)
    status = {}
    for name, obj in (("pair.npz", example_pair()), ("chain.npz", example_chain())):
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / name
            obj.save(fresh)
            if _same_arrays(fresh, out / name):
                status[name] = "unchanged"
            else:
                (out / name).write_bytes(fresh.read_bytes())
                status[name] = "written"
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=EXAMPLES, help="folder (default: docs/examples)")
    args = ap.parse_args(argv)
    for name, what in write_examples(args.out).items():
        print(f"{args.out / name}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
