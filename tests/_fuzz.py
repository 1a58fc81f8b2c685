"""Shared pieces of the fuzz suite (tests/test_fuzz_*.py): strategies for wild values and files,
the CLI runner that checks the exit contract, and the example budget.

Budget: half the active hypothesis profile's examples (conftest.py: "ci" 40 -> 20; "thorough"
1000 -> 500), so the whole fuzz suite stays well under a minute in CI.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from trm_bounds.cli import main

fuzz_settings = settings(
    settings.default,
    max_examples=max(10, settings.default.max_examples // 2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)

# numbers a user or a fuzzer types: tiny, huge, signed zero, non-finite, exact integers at 2**53
special_floats = st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, 1e-12, 1e12, 1e20, 1e308, math.inf, -math.inf, math.nan]
)
wild_floats = st.one_of(special_floats, st.floats(allow_nan=True, allow_infinity=True))
wild_ints = st.one_of(
    st.sampled_from([0, 1, -1, 2**31, 2**53, 2**53 + 1, 2**63, 2**64]), st.integers(-(2**70), 2**70)
)
wild_scalars = st.one_of(
    wild_floats, wild_ints, st.none(), st.sampled_from(["x", "1", "", "nan"]), st.booleans()
)
number_texts = st.one_of(
    st.sampled_from(
        ["nan", "inf", "-inf", "1e400", "-0", "0x10", "1_000", "", " ", "abc", "9007199254740993"]
    ),
    wild_floats.map(repr),
    wild_ints.map(str),
)


def wild_arrays(max_dims: int = 3, max_side: int = 5):
    """float64 / float32 / float16 / int / bool arrays of small random shape with any values."""
    dtypes = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.bool_])
    return dtypes.flatmap(
        lambda dt: arrays(
            dt,
            array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
            elements=None if dt in (np.int64, np.int8, np.bool_) else st.floats(width=np.finfo(dt).bits),
        )
    )


def chain_fields() -> dict:
    """A valid 2-state, 2-token chain pair of horizon 3 (ChainPair keyword arguments)."""
    return dict(
        T=3,
        transition=np.array([[0, 1], [1, 0]]),
        init_state=np.array([0]),
        prompt_probs=np.array([1.0]),
        logp_roll=np.log(np.full((2, 2), 0.5)),
        logp_theta=np.log(np.array([[0.4, 0.6], [0.5, 0.5]])),
        reward_final=np.array([0.2, 0.5]),
        reward_step=np.array([[0.5, 0.0], [0.1, 0.2]]),
    )


def pair_arrays() -> dict[str, np.ndarray]:
    """The .npz arrays of a valid tabular pair (P = 1, V = 2, T = 3, dense mismatch)."""
    from trm_bounds.pair import make_pair
    from trm_bounds.policies import make_policy
    from trm_bounds.rewards import make_reward

    reward = make_reward("random", 1, 2, 3, seed=0)
    return make_pair(make_policy("tabular", 1, 2, 3, seed=0), "dense", None, reward=reward, seed=0).arrays()


def write_examples(d: Path) -> dict[str, Path]:
    """Valid pair.npz, chain.npz, logprobs.npz and a plain file `a_file` (for output paths under it)."""
    from trm_bounds.certify import save_logprobs
    from trm_bounds.chain import ChainPair

    f = {
        "pair": d / "pair.npz",
        "chain": d / "chain.npz",
        "logprobs": d / "logprobs.npz",
        "file": d / "a_file",
    }
    np.savez(f["pair"], **pair_arrays())
    ChainPair(**chain_fields()).save(f["chain"])
    rng = np.random.default_rng(0)
    rlp = -rng.uniform(0.1, 2.0, (8, 6))
    lp = np.minimum(rlp + 0.05 * rng.standard_normal((8, 6)), 0.0)  # log-probs are <= 0
    m = (np.arange(6)[None] < rng.integers(1, 7, 8)[:, None]).astype(np.float32)
    save_logprobs(f["logprobs"], lp, rlp, m)
    f["file"].write_text("x")
    return f


def finite_in(*values) -> bool:
    """True when every numeric input is finite (then no NaN may come out)."""
    for v in values:
        a = np.asarray(v, dtype=object).reshape(-1) if not isinstance(v, np.ndarray) else v.reshape(-1)
        for x in a.tolist():
            if isinstance(x, float) and not math.isfinite(x):
                return False
    return True


def has_nan(obj) -> bool:
    if isinstance(obj, dict):
        return any(has_nan(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(has_nan(v) for v in obj)
    if hasattr(obj, "detach"):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return bool(np.isnan(obj).any())
    return isinstance(obj, float) and math.isnan(obj)


def run_cli(argv, cwd: Path) -> tuple[int, str, str]:
    """`trm-bounds argv` in-process: (exit code, stdout, stderr); the exit contract is checked.

    Exit 0 or 2 only; on 2 exactly one stderr line (notes excepted), never a traceback, and
    nothing new under `cwd` (nothing written half-way); on 0, JSON output holds no NaN.
    """
    before = set(cwd.rglob("*"))
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)  # default output folders land in the workspace, never in the clone
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        os.chdir(here)
    o, e = out.getvalue(), err.getvalue()
    assert code in (0, 2), (argv, code, e)
    assert "Traceback" not in e, (argv, e)
    if code == 2:
        lines = [ln for ln in e.splitlines() if ln.strip() and ": note:" not in ln]
        assert len(lines) == 1, (argv, e)
        assert set(cwd.rglob("*")) == before, (argv, "wrote files on failure")
    elif o.lstrip().startswith(("{", "[")):
        assert not has_nan(json.loads(o)), (argv, "NaN in the JSON")
    return code, o, e
