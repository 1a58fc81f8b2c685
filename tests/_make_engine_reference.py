"""Regenerate tests/data/engine_reference.{npz,json}: inputs and outputs of the exact tree engine
and the chain engine, recorded from a trusted engine version (tests only).

    OMP_NUM_THREADS=1 python tests/_make_engine_reference.py [FIXTURES_DIR]

The recorded outputs were computed at commit 8254563 (before the fused kernels of issue 16);
tests/test_engine_reference.py checks every later engine against them. Rerun only on purpose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_chain import _make_pair as make_chain  # noqa: E402
from test_exact import build_pair  # noqa: E402

from trm_bounds.chain import ChainPair, chain_quantities, random_automaton_transition, random_chain_pair  # noqa: E402
from trm_bounds.exact import exact_quantities  # noqa: E402
from trm_bounds.pair import PolicyPair  # noqa: E402

TREE_OPTIONS = {  # name -> exact_quantities keyword arguments
    "plain": {},
    "chunked": {"chunk_leaves": 3},
    "full": {
        "baseline": 0.3,
        "mask": {"rule": "max+avg", "delta": 0.05, "delta_avg": 0.02},
        "future_tv": True,
    },
    "mask_max": {"mask": {"rule": "max", "delta": 0.1}, "chunk_leaves": 5},
}
TREE_CASES = [  # (seed, kind, P, V, T)
    (1, "dense", 1, 2, 6),
    (2, "dense", 2, 3, 4),
    (3, "sparse", 3, 2, 5),
    (4, "near_det", 1, 3, 4),
    (5, "zeros_roll", 2, 2, 5),
    (6, "zeros_theta", 2, 3, 3),
    (7, "extreme", 2, 2, 4),
    (8, "identical", 1, 2, 3),
    (9, "one_token", 3, 2, 4),
    (10, "dense", 1, 4, 4),
    (11, "dense", 2, 2, 1),
    (12, "zeros_roll", 1, 3, 4),
    (13, "sparse", 1, 2, 9),
]
CHAIN_CASES = [  # (seed, S, V, T, P, time_dep, zeros)
    (1, 5, 3, 7, 2, False, False),
    (2, 5, 3, 7, 2, True, False),
    (3, 6, 2, 9, 3, False, True),
    (4, 4, 3, 6, 1, True, True),
    (5, 9, 4, 20, 2, False, False),
    (6, 7, 3, 15, 3, True, True),
]


def tree_inputs(pair: PolicyPair) -> dict:
    out = {"reward": pair.reward, "prompt_probs": pair.prompt_probs}
    for t, (a, b) in enumerate(zip(pair.logp_roll, pair.logp_theta), start=1):
        out[f"logp_roll_{t}"], out[f"logp_theta_{t}"] = a, b
    return out


def chain_inputs(p: ChainPair) -> dict:
    return {
        "T": np.int64(p.T),
        "transition": p.transition,
        "init_state": p.init_state,
        "prompt_probs": p.prompt_probs,
        "logp_roll": p.logp_roll,
        "logp_theta": p.logp_theta,
        "reward_final": p.reward_final,
        "reward_step": p.reward_step,
    }


def main(fixtures: Path) -> None:
    arrays, outputs = {}, {"tree": {}, "chain": {}}
    trees = {
        f"random_{s}_{k}_{P}_{V}_{T}": tree_inputs(build_pair(s, k, P, V, T)) for s, k, P, V, T in TREE_CASES
    }
    for f in sorted(fixtures.glob("*.npz")):
        with np.load(f) as z:
            if "logp_roll_1" in z.files:
                trees[f.stem] = {k: z[k] for k in z.files}
    for name, inp in trees.items():
        T = sum(1 for k in inp if k.startswith("logp_roll_"))
        lr = [inp[f"logp_roll_{t}"] for t in range(1, T + 1)]
        lt = [inp[f"logp_theta_{t}"] for t in range(1, T + 1)]
        outputs["tree"][name] = {
            opt: exact_quantities(lr, lt, inp["reward"], inp["prompt_probs"], **kw)
            for opt, kw in TREE_OPTIONS.items()
        }
        arrays.update({f"tree/{name}/{k}": v for k, v in inp.items()})
    chains = {f"random_{'_'.join(str(x) for x in c)}": make_chain(*c) for c in CHAIN_CASES}
    tr = random_automaton_transition(16, 4, np.random.default_rng(0))
    chains["automaton_dense_homog"] = random_chain_pair(tr, "dense", 0.3, 50, seed=1, reward="both")
    for f in sorted(fixtures.glob("chain_*.npz")):
        chains[f.stem] = ChainPair.load(f)
    for name, p in chains.items():
        outputs["chain"][name] = chain_quantities(p)
        arrays.update({f"chain/{name}/{k}": v for k, v in chain_inputs(p).items() if v is not None})
    np.savez_compressed(HERE / "data" / "engine_reference.npz", **arrays)
    (HERE / "data" / "engine_reference.json").write_text(json.dumps(outputs, separators=(",", ":")))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/fixtures"))
