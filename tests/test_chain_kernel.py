"""The fused chain kernel's routes and the chain engine's size estimate (issue 16).

Every route of `_chain_kernel.run` is compared with another route or with the level-by-level
reference on the same pair: table mode vs streaming (adjoint sums), one thread vs the two passes
side by side, the homogeneous reachability pre-pass when the reachable sets never repeat, and
a file read on the fast (stored) and the slow (compressed) path. The size estimate must accept a
homogeneous T = 10**6 chain on the fused kernel and refuse what does not fit.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
from _checks import max_rel_diff, sum_rounding
from hypothesis import given
from hypothesis import strategies as st
from test_chain import _make_pair  # the random pairs of the engine's own tests

from trm_bounds import _chain_kernel, chain
from trm_bounds.chain import (
    ChainPair,
    chain_bytes,
    chain_quantities,
    check_chain_size,
    counter_transition,
    evaluate_chain_file,
    random_automaton_transition,
    random_chain_pair,
)
from trm_bounds.divergences import log_softmax

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not _chain_kernel.available(), reason="numba not installed: no fused kernel"),
]


def _pair(seed: int, S: int, V: int, T: int, time_dep: bool, zeros: bool, P: int = 2) -> ChainPair:
    return _make_pair(seed, S, V, T, P, time_dep, zeros)


def _json(d: dict) -> dict:
    return json.loads(json.dumps(d))


def _assert_same(a: dict, b: dict, T: int) -> None:
    worst, where = max_rel_diff(_json(a), _json(b), abs_=sum_rounding(T))
    assert worst <= 1.0, f"{where}: difference {worst:.3g} x (1e-12 |old| + {sum_rounding(T):.2g})"


def _kernel(pair: ChainPair, monkeypatch, threads: int = 1, table: bool = True) -> dict:
    monkeypatch.setattr(chain, "kernel_threads", lambda: threads)
    monkeypatch.setattr(_chain_kernel, "TABLE_ENTRIES", 2**23 if table else 0)
    return chain_quantities(pair)


@given(
    seed=st.integers(0, 2**32 - 1), time_dep=st.booleans(), zeros=st.booleans(), T=st.sampled_from([1, 3, 40])
)
def test_streaming_equals_table_mode_and_level_by_level(seed, time_dep, zeros, T):
    """Streaming (adjoint sums, no tables) vs table mode vs the level-by-level numpy route."""
    pair = _pair(seed, 6, 3, T, time_dep, zeros)
    with pytest.MonkeyPatch.context() as mp:
        table = _kernel(pair, mp, table=True)
        stream = _kernel(pair, mp, table=False)
    _assert_same(stream, table, T)
    _assert_same(table, chain_quantities(pair, backend="numpy"), T)


@pytest.mark.parametrize("time_dep", [False, True])
def test_two_threads_give_the_same_bits_as_one(time_dep, monkeypatch):
    """The forward and backward passes are independent: running them side by side changes nothing."""
    pair = _pair(7, 9, 4, 60, time_dep, zeros=True)
    one = _kernel(pair, monkeypatch, threads=1)
    two = _kernel(pair, monkeypatch, threads=2)
    assert _json(one) == _json(two)


def test_forward_error_in_the_worker_thread_is_raised(monkeypatch):
    pair = _pair(3, 5, 3, 10, False, zeros=False)

    def boom(*args):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(_chain_kernel, "forward_steps", boom)
    with pytest.raises(RuntimeError, match="forward failed"):
        _kernel(pair, monkeypatch, threads=2)


@pytest.mark.parametrize("rows", [1, 2, 4096])
def test_reachability_pre_pass_when_sets_never_repeat(rows, monkeypatch):
    """A 2-periodic chain (the reachable set alternates, never repeats from one step to the next)
    and a counter chain (grows for S steps): g_inf needs the reachable set of every step. rows:
    the pre-pass's first buffer (too short forces the second, full-length pass)."""
    monkeypatch.setattr(_chain_kernel, "REACH_ROWS", rows)
    S, V, T = 6, 2, 23
    periodic = np.array([[(s + 1) % S, (s + 3) % S] for s in range(S)])  # odd steps only: parity flips
    for trans in (periodic, counter_transition(S, V)):
        base = random_chain_pair(trans, "dense", 0.3, T, seed=5, reward="both")
        lr, lth = np.array(base.logp_roll), np.array(base.logp_theta)
        lth[:, 1] = -np.inf  # theta reaches fewer states than roll
        lth = log_softmax(lth)
        pair = ChainPair(
            T, trans, base.init_state, base.prompt_probs, lr, lth, base.reward_final, base.reward_step
        )
        fused = _kernel(pair, monkeypatch)
        _assert_same(fused, chain_quantities(pair, backend="numpy"), T)
        assert max(fused["g_inf"]) > 0


def test_long_homogeneous_chain_streams(monkeypatch):
    """T = 20000 on the streaming route against table mode (forced on) and the level-by-level route."""
    tr = random_automaton_transition(5, 3, np.random.default_rng(0))
    pair = random_chain_pair(tr, "dense", 0.05, 20000, seed=1, reward="both")
    monkeypatch.setattr(_chain_kernel, "TABLE_ENTRIES", 0)
    stream = chain_quantities(pair)
    monkeypatch.setattr(_chain_kernel, "TABLE_ENTRIES", 2**23)
    _assert_same(stream, chain_quantities(pair), pair.T)
    _assert_same(stream, chain_quantities(pair, backend="numpy"), pair.T)


@pytest.mark.parametrize("compressed", [False, True])
def test_file_load_paths_are_identical(tmp_path, compressed):
    """A time-dependent pair saved stored (fast reader) or compressed (np.load): the same arrays,
    bit for bit, and evaluate_chain_file gives exactly chain_quantities of the pair in memory."""
    pair = _pair(11, 7, 3, 30, True, zeros=True)
    path = tmp_path / "c.npz"
    pair.save(path)
    if compressed:  # the same members, deflated: np.load's route
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        np.savez_compressed(path, **arrays)
    back = ChainPair.load(path)
    for name in ("transition", "init_state", "prompt_probs", "logp_roll", "logp_theta", "reward_final"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pair, name))
    assert _json(evaluate_chain_file(path)) == _json(chain_quantities(pair))


@pytest.mark.parametrize("bad_half", [0, 1])
def test_row_check_split_between_threads_finds_a_bad_row(bad_half, monkeypatch):
    """The validation splits large inputs in two halves (two threads): a row off by 1e-6 in
    either half is found; a clean input passes."""
    monkeypatch.setattr(chain, "kernel_threads", lambda: 2)
    rng = np.random.default_rng(0)
    x = log_softmax(rng.standard_normal((2**17, 32)))  # 2**22 entries: the two-thread route
    assert chain._rows_normalised(x)
    i = rng.integers(0, 2**16) + bad_half * 2**16
    x[i] += 1e-6
    assert not chain._rows_normalised(x)


def test_size_estimate_accepts_a_million_step_homogeneous_chain(monkeypatch):
    """1 GB available: a homogeneous S = 64, V = 16 chain at T = 10**6 fits on the fused kernel
    (O(T) outputs); the same on the level-by-level route, or time-dependent at S = 256, V = 32,
    does not, and the message carries the estimate."""
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", str(10**9))
    check_chain_size(10**6, 64, 16, time_dependent=False, fused=True)
    assert chain_bytes(10**6, 64, 16, time_dependent=False, fused=True) < 400e6
    with pytest.raises(ValueError, match=r"^T: the chain engine \(level-by-level route.*GiB"):
        check_chain_size(10**6, 64, 16, time_dependent=False, fused=False)
    with pytest.raises(ValueError, match=r"^T: the chain engine \(fused kernel, time-dependent.*GiB"):
        check_chain_size(10**6, 256, 32, time_dependent=True, fused=True)
    with pytest.raises(ValueError, match="exceeds the chain engine's"):
        check_chain_size(2**20 + 1, 2, 2, time_dependent=False, fused=True)


def test_engine_refuses_before_work_when_the_estimate_does_not_fit(monkeypatch):
    tr = random_automaton_transition(4, 2, np.random.default_rng(0))
    pair = random_chain_pair(tr, "dense", 0.05, 5000, seed=0)
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", str(10**5))
    with pytest.raises(ValueError, match=r"^T: .*fused kernel, homogeneous.*T = 5000"):
        chain_quantities(pair)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("time_dep", [False, True])
def test_size_estimate_covers_what_the_fused_kernel_allocates(time_dep, threads, monkeypatch):
    """Peak traced memory (numpy buffers and Python objects) <= the estimate <= 3 x the peak,
    with the passes one after the other or side by side (both passes' scratch at once)."""
    monkeypatch.setattr(chain, "kernel_threads", lambda: threads)
    T = 20000 if not time_dep else 2000
    pair = _pair(2, 16, 4, T, time_dep, zeros=False, P=1)
    chain_quantities(pair.with_horizon(2))
    tracemalloc.start()
    try:
        chain_quantities(pair)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    est = chain_bytes(T, 16, 4, 1, time_dep, fused=True)
    assert peak <= est <= 3 * peak, (peak, est)


def test_cli_accepts_a_long_homogeneous_horizon(tmp_path, monkeypatch, capsys):
    """`trm-bounds exact --chain F --T N` with 80 MB usable: the old per-step estimate
    (T (1024 + 64 S V) bytes) refused T = 10**5 of an S = 8 chain; the fused kernel's fits."""
    from trm_bounds.cli import main

    path = tmp_path / "c.npz"
    random_chain_pair(random_automaton_transition(8, 2, np.random.default_rng(0)), "dense", 0.05, 16).save(
        path
    )
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", str(10**8))
    assert 10**5 * (1024 + 64 * 8 * 2) > 0.8 * 10**8
    assert main(["exact", "--chain", str(path), "--T", "100000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["T"] == 100000 and len(out["dbar"]) == 100000 and len(out["g_inf"]) == 100000


def test_chain_bytes_defaults_and_the_stacked_steps_of_time_dependent_chains():
    """Defaults: one pair, time-dependent, level-by-level route, one start-state group. The level-by-level
    route stores the logits of every step of a time-dependent chain (64 S V bytes a step) but one step
    of a homogeneous one, so the difference is at least 64 S V (T - 1)."""
    T, S, V = 1000, 64, 16  # S > 2 V: no dense operators
    assert chain_bytes(T, S, V) == chain_bytes(T, S, V, 1, True, False, 1)
    assert chain_bytes(T, S, V, fused=True) == chain_bytes(T, S, V, 1, True, True, 1)
    hom, td = chain_bytes(T, S, V, time_dependent=False), chain_bytes(T, S, V, time_dependent=True)
    assert td - hom >= 64 * S * V * (T - 1)
    assert chain_bytes(T, S, V, n_pairs=3, time_dependent=False) > 2.9 * hom


def test_check_chain_size_checks_the_chain_bytes_of_its_arguments(monkeypatch):
    """check_chain_size hands chain_bytes of the same arguments (same defaults) to the memory check."""
    seen = []
    monkeypatch.setattr(chain, "check_memory", lambda name, n, what, hint="": seen.append((name, n, what)))
    check_chain_size(100, 8, 4)
    check_chain_size(100, 8, 4, 2, False, True, 3)
    want = [chain_bytes(100, 8, 4, 1, True, False, 1), chain_bytes(100, 8, 4, 2, False, True, 3)]
    assert [n for _, n, _ in seen] == want and seen[0][0] == "T"
    assert "level-by-level route, time-dependent, S = 8, V = 4) over T = 100" in seen[0][2]
    assert "(fused kernel, homogeneous" in seen[1][2]
