"""The streamed exact engine (issue 16, memory): inputs read block by block from a pair source.

`exact_quantities_streamed` must return the dict `exact_quantities` returns on the same pair,
bit for bit (the kernel's per-task sums are carried between blocks in task order), whatever
the block size; on random and adversarial pairs (all ADVERSARIAL_KINDS: near-deterministic,
sparse large perturbations, zero probabilities / disjoint supports, T = 1, ...), with the
split level inside the tree (TASK_LEAVES small) and the shared fixtures. Bad sources and
arguments raise ValueError naming the argument, with `exact_quantities`' messages for bad
level values. The synthetic source must not depend on the blocks asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trm_bounds import _tree_kernel
from trm_bounds.adversarial import ADVERSARIAL_KINDS, adversarial_pair
from trm_bounds.exact import exact_quantities
from trm_bounds.exact_stream import (
    ArrayPairSource,
    PairSource,
    SyntheticPairSource,
    exact_quantities_streamed,
)
from trm_bounds.pair import PolicyPair, validate_pair_arrays

pytestmark = pytest.mark.skipif(not _tree_kernel.available(), reason="numba kernel not available")
_MASK = {"rule": "max+avg", "delta": 0.05, "delta_avg": 0.02}


def _same(a: dict, b: dict) -> bool:
    """Bit-for-bit equal result dicts (floats by repr, so NaN == NaN and -0.0 != 0.0)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(ADVERSARIAL_KINDS), T=st.integers(1, 6),
       V=st.integers(2, 3), P=st.integers(1, 3), task=st.sampled_from([2, 4, 9, 2**12]),
       block=st.integers(1, 800), extras=st.booleans())  # fmt: skip
def test_streamed_equals_exact_quantities_bit_for_bit(monkeypatch, seed, kind, T, V, P, task, block, extras):
    lr, lt, R, pp = adversarial_pair(np.random.default_rng(seed), kind, P, V, T)
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", task)  # split level inside the tree, many tasks
    kw = {"baseline": 0.4, "mask": _MASK} if extras else {}
    ref = exact_quantities(lr, lt, R, pp, **kw)
    got = exact_quantities_streamed(ArrayPairSource(lr, lt, R, pp), block_leaves=block, **kw)
    assert set(got) == set(ref)
    assert _same(got, ref), kind


def test_streamed_equals_on_the_shared_fixtures(fixtures_dir):
    names = sorted(p.stem for p in fixtures_dir.glob("pair_*.npz"))
    assert names, "no pair fixtures"
    for name in names:
        pair = PolicyPair.load(fixtures_dir / f"{name}.npz")
        arrays = (pair.logp_roll, pair.logp_theta, pair.reward, pair.prompt_probs)
        for kw in ({}, {"baseline": 0.25, "mask": {"rule": "max", "delta": 0.1}}):
            ref = exact_quantities(*arrays, **kw)
            for block in (1, 2**20):
                assert _same(
                    exact_quantities_streamed(ArrayPairSource(*arrays), block_leaves=block, **kw), ref
                ), name


@pytest.mark.parametrize("P,V,T,task", [(2, 2, 14, 2**12), (1, 3, 7, 8), (3, 2, 1, 2**12)])
def test_block_size_does_not_change_a_bit(monkeypatch, P, V, T, task):
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", task)  # V = 3, task 8: 2 rows of 3 leaves per task
    src = SyntheticPairSource(P, V, T, seed=7)
    outs = [
        exact_quantities_streamed(src, block_leaves=b, mask=_MASK, baseline=0.5) for b in (1, 7, 5000, 2**30)
    ]
    assert all(_same(o, outs[0]) for o in outs[1:])
    assert _same(outs[0], exact_quantities(*src.to_arrays(), mask=_MASK, baseline=0.5))
    assert outs[0]["leaves"] == P * V**T and outs[0]["surrogate"] != 0.0  # (T = 1: Error = 0 exactly)


def test_synthetic_source_rows_do_not_depend_on_the_blocks():
    src = SyntheticPairSource(2, 3, 5, seed=11, noise=0.3)
    lr, lt, R, pp = src.to_arrays()
    validate_pair_arrays(lr, lt, R, pp)  # normalised rows, rewards in [0, 1]
    for s, a, b in ((0, 1, 2), (2, 5, 9), (4, 0, 162)):
        br, bt, bR = src.block(s, a, b)
        for j, k in enumerate(range(s, 5)):
            rows = slice(a * 3**j, b * 3**j)
            assert np.array_equal(br[j], lr[k].reshape(-1, 3)[rows])
            assert np.array_equal(bt[j], lt[k].reshape(-1, 3)[rows])
        assert np.array_equal(bR, R.reshape(-1)[a * 3 ** (5 - s) : b * 3 ** (5 - s)])
    other = SyntheticPairSource(2, 3, 5, seed=12, noise=0.3).to_arrays()
    assert not np.array_equal(other[1][4], lt[4])
    # the family: pi_theta logits N(0, 1) (log-softmax differences have variance 2), roll = theta + noise
    big = SyntheticPairSource(1, 2, 15, seed=0, noise=0.1).top(15)
    d_theta = np.concatenate([x[..., 1] - x[..., 0] for x in big[1]], axis=None)
    d_gap = np.concatenate([(r - t)[..., 1] - (r - t)[..., 0] for r, t in zip(*big)], axis=None)
    assert abs(d_theta.var() - 2.0) < 0.05 and abs(d_theta.mean()) < 0.02
    assert abs(d_gap.var() - 2 * 0.1**2) < 0.001


class _Bad(PairSource):
    """An ArrayPairSource whose block (or top) output is spoiled by `spoil(levels_r, levels_t, reward)`."""

    def __init__(self, arrays, spoil, where="block"):
        self.inner, self.spoil, self.where = ArrayPairSource(*arrays), spoil, where
        self.P, self.V, self.T, self.prompt_probs = (
            self.inner.P,
            self.inner.V,
            self.inner.T,
            self.inner.prompt_probs,
        )

    def top(self, s):
        lr, lt = self.inner.top(s)
        return self.spoil(list(lr), list(lt), None) if self.where == "top" else (lr, lt)

    def block(self, s, a, b):
        lr, lt, R = self.inner.block(s, a, b)
        return self.spoil([x.copy() for x in lr], [x.copy() for x in lt], R.copy()) if a >= 4 else (lr, lt, R)


def _pair(T=6):
    return adversarial_pair(np.random.default_rng(3), "dense", 2, 2, T)


def _with(levels, k, x):
    levels[k] = x
    return levels


@pytest.mark.parametrize(
    "spoil,match",
    [
        (
            lambda r, t, R: (_with(r, 1, r[1][:-1]), t, R),
            r"^logp_roll_6: wrong shape \(1, 2\) for rows \[4, 5\) of level 5, expected \(2, 2\)$",
        ),
        (
            lambda r, t, R: (r, _with(t, 0, t[0].astype(np.int64)), R),
            r"^logp_theta_5: dtype int64, expected float64$",
        ),
        (lambda r, t, R: (r, t, R[:-1]), r"^reward: wrong shape \(3,\) for rows \[4, 5\) of level 5"),
        (lambda r, t, R: (r, t, np.where(R > 0.5, np.nan, R)), r"^reward contains NaN$"),
        (lambda r, t, R: (r, t, R + 1.0), r"^reward must lie in \[0, 1\]"),
        (lambda r, t, R: (r[:1], t, R), r"^source.block\(4, 4, 5\) must return two lists of 2 levels"),
        (lambda r, t, R: (r, t), r"^source.block\(4, 4, 5\) must return \(logp_roll, logp_theta, reward\)$"),
    ],
)
def test_bad_blocks_raise_naming_the_array(monkeypatch, spoil, match):
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 4)  # T = 6, V = 2: split level s = 4, 2 rows per task
    with pytest.raises(ValueError, match=match):
        exact_quantities_streamed(_Bad(_pair(), spoil), block_leaves=4)


@pytest.mark.parametrize("how", ["nan", "posinf", "positive", "sum"])
@pytest.mark.parametrize("side,k", [("roll", 5), ("theta", 4), ("roll", 1)])
def test_bad_level_values_raise_the_message_of_exact_quantities(monkeypatch, how, side, k):
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 4)  # split level 4: k = 1 is a top level
    lr, lt, R, pp = _pair()
    level = (lr if side == "roll" else lt)[k]
    row = level.reshape(-1, 2)[-1]  # the last row: the last block (or the top)
    if how == "nan":
        row[0] = np.nan
    elif how == "posinf":
        row[1] = np.inf
    elif how == "positive":
        row[:] = [0.1, -3.0]
    else:
        row[:] = np.log(np.exp(row) * (1.0 + 1e-6))
    with pytest.raises(ValueError) as full:
        exact_quantities(lr, lt, R, pp)
    with pytest.raises(ValueError) as streamed:
        exact_quantities_streamed(ArrayPairSource(lr, lt, R, pp), block_leaves=4)
    assert str(streamed.value) == str(full.value)
    assert f"logp_{side}_{k + 1}" in str(full.value)


def test_bad_top_and_source_attributes(monkeypatch):
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 8)  # T = 6, V = 2: split level s = 3
    arrays = _pair()
    with pytest.raises(ValueError, match=r"^logp_theta_1: wrong shape \(2, 2\), expected \(2, 1, 2\)$"):
        exact_quantities_streamed(_Bad(arrays, lambda r, t, R: (r, _with(t, 0, t[0][:, 0])), where="top"))
    with pytest.raises(ValueError, match=r"^source.top\(3\) must return two lists of 3 levels"):
        exact_quantities_streamed(_Bad(arrays, lambda r, t, R: (r[:2], t), where="top"))
    src = ArrayPairSource(*arrays)
    src.T = 0
    with pytest.raises(ValueError, match=r"^source.T must be an integer >= 1, got 0$"):
        exact_quantities_streamed(src)
    with pytest.raises(ValueError, match=r"^source must have a block\(\) method"):
        exact_quantities_streamed(
            type("S", (), {"P": 1, "V": 2, "T": 1, "prompt_probs": [1.0], "top": print})()
        )
    src = ArrayPairSource(*arrays)
    src.prompt_probs = np.array([0.7, 0.7])
    with pytest.raises(ValueError, match=r"^prompt_probs must sum to 1, got 1.4$"):
        exact_quantities_streamed(src)
    lr, lt, R, pp = arrays
    with pytest.raises(ValueError, match=r"^reward: wrong shape \(2, 63\), expected \(2, 64\)$"):
        ArrayPairSource(lr, lt, R[:, 1:], pp)  # the source checks shapes as validate_pair_arrays does


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"block_leaves": 0}, r"^block_leaves must be an integer >= 1, got 0$"),
        ({"block_leaves": -3}, r"^block_leaves must be an integer >= 1"),
        ({"block_leaves": 2.5}, r"^block_leaves must be an integer >= 1, got 2.5$"),
        ({"block_leaves": True}, r"^block_leaves must be an integer >= 1, got True$"),
        ({"future_tv": True}, r"^future_tv cannot be streamed"),
        ({"device": "meta"}, r"^device: "),
        ({"device": "nonsense"}, r"^device: unknown torch device"),
        ({"mask": {"rule": "max"}}, r"^mask\['delta'\] must be a finite number"),
        ({"baseline": float("nan")}, r"^baseline must be finite"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        exact_quantities_streamed(SyntheticPairSource(1, 2, 3), **kw)


def test_without_the_kernel_the_streamed_engine_refuses(monkeypatch):
    monkeypatch.setenv("TRM_BOUNDS_JIT", "0")
    with pytest.raises(ValueError, match=r"^device: exact_quantities_streamed runs on the fused CPU kernel"):
        exact_quantities_streamed(SyntheticPairSource(1, 2, 3))


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"P": 0}, r"^P must be an integer >= 1, got 0$"),
        ({"T": 2.0}, r"^T must be an integer >= 1, got 2.0$"),
        ({"seed": -1}, r"^seed must be an integer in \[0, 2\*\*32\)"),
        ({"noise": float("inf")}, r"^noise must be a finite number >= 0"),
    ],
)
def test_synthetic_source_bad_arguments(kw, match):
    args = {"P": 1, "V": 2, "T": 3} | kw
    with pytest.raises(ValueError, match=match):
        SyntheticPairSource(args.pop("P"), args.pop("V"), args.pop("T"), **args)


def test_torch_inputs_stream_like_numpy():
    lr, lt, R, pp = _pair(4)
    tl = lambda xs: [torch.from_numpy(x) for x in xs]
    got = exact_quantities_streamed(
        ArrayPairSource(tl(lr), tl(lt), torch.from_numpy(R), torch.from_numpy(pp))
    )
    assert _same(got, exact_quantities(lr, lt, R, pp))


_CHILD = textwrap.dedent(
    """
    import json
    from trm_bounds.exact_stream import SyntheticPairSource, exact_quantities_streamed

    def hwm():
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))

    exact_quantities_streamed(SyntheticPairSource(1, 2, 14), block_leaves=2**14)  # kernels loaded
    before = hwm()
    out = exact_quantities_streamed(SyntheticPairSource(1, 2, 21), block_leaves=2**14)
    print(json.dumps({"growth": hwm() - before, "leaves": out["leaves"]}))
    """
)


def test_streamed_memory_stays_far_below_the_materialised_inputs():
    """2**21 leaves at V = 2: the materialised inputs alone would take 40 B per leaf (80 MB); the
    streamed engine's peak RSS growth must stay below 8 B per leaf (it is about 1)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, env=env)
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["leaves"] == 2**21
    assert m["growth"] < 8 * 2**21, m


def test_a_source_must_provide_top_and_block():
    class Half(PairSource):
        def top(self, s):
            return [], []

    with pytest.raises(TypeError, match="block"):
        Half()
