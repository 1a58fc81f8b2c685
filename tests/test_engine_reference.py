"""The exact tree engine and the chain engine against outputs recorded from the engine
before its fused kernels (tests/data/engine_reference.*, made by _make_engine_reference.py at
commit 8254563): every key, every value, within 1e-12 relative (REL below).

Inputs are stored beside the outputs, so these checks do not depend on the shared fixtures
or on the random generators of other test modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _checks import max_rel_diff  # |new - old| <= 1e-12 |old| + 1e-16 over every number
from _make_engine_reference import TREE_OPTIONS  # the options the outputs were recorded with

from trm_bounds.chain import ChainPair, chain_quantities
from trm_bounds.exact import exact_quantities

DATA = Path(__file__).resolve().parent / "data"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load():
    ref = json.loads((DATA / "engine_reference.json").read_text())
    with np.load(DATA / "engine_reference.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return ref, arrays


REF, ARRAYS = _load()


def _inputs(kind: str, name: str) -> dict:
    pre = f"{kind}/{name}/"
    return {k[len(pre) :]: v for k, v in ARRAYS.items() if k.startswith(pre)}


@pytest.mark.parametrize("name", sorted(REF["tree"]))
def test_tree_engine_matches_recorded_outputs(name):
    inp = _inputs("tree", name)
    T = sum(1 for k in inp if k.startswith("logp_roll_"))
    lr = [inp[f"logp_roll_{t}"] for t in range(1, T + 1)]
    lt = [inp[f"logp_theta_{t}"] for t in range(1, T + 1)]
    for opt, kw in TREE_OPTIONS.items():
        new = json.loads(json.dumps(exact_quantities(lr, lt, inp["reward"], inp["prompt_probs"], **kw)))
        worst, where = max_rel_diff(new, REF["tree"][name][opt])
        assert worst <= 1.0, f"{opt}{where}: difference {worst:.3g} x (1e-12 |old| + 1e-16)"


@pytest.mark.parametrize("name", sorted(REF["chain"]))
def test_chain_engine_matches_recorded_outputs(name):
    inp = _inputs("chain", name)
    pair = ChainPair(**{k: (int(v) if k == "T" else v) for k, v in inp.items()})
    new = json.loads(json.dumps(chain_quantities(pair)))
    worst, where = max_rel_diff(new, REF["chain"][name])
    assert worst <= 1.0, f"{where}: difference {worst:.3g} x (1e-12 |old| + 1e-16)"


def _tree_case(name):
    inp = _inputs("tree", name)
    T = sum(1 for k in inp if k.startswith("logp_roll_"))
    lr = [inp[f"logp_roll_{t}"] for t in range(1, T + 1)]
    lt = [inp[f"logp_theta_{t}"] for t in range(1, T + 1)]
    return lr, lt, inp["reward"], inp["prompt_probs"]


@pytest.mark.parametrize("name", sorted(REF["tree"]))
def test_level_by_level_torch_path_matches_recorded_outputs(name, monkeypatch):
    """TRM_BOUNDS_JIT=0 (or no numba): the torch level-by-level engine, the GPU's path."""
    monkeypatch.setenv("TRM_BOUNDS_JIT", "0")
    for opt, kw in TREE_OPTIONS.items():
        new = json.loads(json.dumps(exact_quantities(*_tree_case(name), **kw)))
        worst, where = max_rel_diff(new, REF["tree"][name][opt])
        assert worst <= 1.0, f"{opt}{where}: difference {worst:.3g} x (1e-12 |old| + 1e-16)"


def test_fused_kernel_is_used_and_thread_count_does_not_change_a_bit(monkeypatch):
    from trm_bounds import _tree_kernel

    if not _tree_kernel.available():
        pytest.skip("numba not installed: the torch path serves every call")
    calls = []
    real = _tree_kernel.call
    monkeypatch.setattr(_tree_kernel, "call", lambda *a: (calls.append(a[0]), real(*a))[1])
    monkeypatch.setattr(_tree_kernel, "TASK_LEAVES", 8)  # many tasks on a small tree
    case = _tree_case("random_13_sparse_1_2_9")
    outs = []
    for n in ("1", "2", "3"):
        monkeypatch.setenv("TRM_BOUNDS_THREADS", n)
        outs.append(exact_quantities(*case, baseline=0.2, mask={"rule": "max", "delta": 0.1}))
    assert calls == [1, 2, 3]
    assert json.dumps(outs[0]) == json.dumps(outs[1]) == json.dumps(outs[2])  # tasks reduce in a fixed order


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(REF["tree"]))
def test_tree_engine_on_cuda_matches_recorded_outputs(name):
    for opt, kw in TREE_OPTIONS.items():
        new = json.loads(json.dumps(exact_quantities(*_tree_case(name), device="cuda", **kw)))
        worst, where = max_rel_diff(new, REF["tree"][name][opt])
        assert worst <= 1.0, f"cuda {opt}{where}: difference {worst:.3g} x (1e-12 |old| + 1e-16)"


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(REF["chain"]))
def test_chain_engine_on_cuda_matches_recorded_outputs(name):
    inp = _inputs("chain", name)
    pair = ChainPair(**{k: (int(v) if k == "T" else v) for k, v in inp.items()})
    new = json.loads(json.dumps(chain_quantities(pair, device="cuda")))
    worst, where = max_rel_diff(new, REF["chain"][name])
    assert worst <= 1.0, f"cuda {where}: difference {worst:.3g} x (1e-12 |old| + 1e-16)"


def test_device_errors_name_the_argument():
    from trm_bounds._compute import check_device

    with pytest.raises(ValueError, match="device: unknown torch device 'bogus'"):
        check_device("bogus")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(ValueError, match="device: 'cuda' requested but"):
            exact_quantities(*_tree_case("random_8_identical_1_2_3"), device="cuda")
        with pytest.raises(ValueError, match="device: 'cuda' requested but"):
            chain_quantities(
                ChainPair(
                    **{
                        k: (int(v) if k == "T" else v)
                        for k, v in _inputs("chain", "random_1_5_3_7_2_False_False").items()
                    }
                ),
                device="cuda",
            )


@pytest.mark.parametrize("env, expect", [("1", 1), ("3", 3), ("0", ValueError), ("two", ValueError)])
def test_thread_override(env, expect, monkeypatch):
    from trm_bounds._compute import engine_threads, kernel_threads

    monkeypatch.setenv("TRM_BOUNDS_THREADS", env)
    if expect is ValueError:
        with pytest.raises(ValueError, match="TRM_BOUNDS_THREADS"):
            kernel_threads()
        return
    torch = __import__("torch")
    before = torch.get_num_threads()
    with engine_threads() as n:
        assert n == expect and torch.get_num_threads() == expect
    assert torch.get_num_threads() == before


def test_auto_threads_never_exceed_free_cores(monkeypatch):
    from trm_bounds import _compute

    monkeypatch.delenv("TRM_BOUNDS_THREADS", raising=False)
    monkeypatch.setattr(_compute, "_affinity", lambda: 2)
    for others, expect in ((0, 2), (1, 1), (5, 1)):
        monkeypatch.setattr(_compute, "_busy_others", lambda o=others: o)
        assert _compute.kernel_threads() == expect
