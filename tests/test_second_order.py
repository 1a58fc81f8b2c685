"""Tests for trm_bounds/second_order.py: |Error| <= E_roll[Z] on exact pairs, attained; the chain
recursion equals the tree; per-sequence statistics against a plain loop; the T = 6 counterexample."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from test_exact import build_pair

from trm_bounds.chain import chain_quantities, chain_to_tree, last_k_transition, random_chain_pair
from trm_bounds.counterexamples import large_error_pair
from trm_bounds.exact import exact_quantities
from trm_bounds.pair import make_pair
from trm_bounds.policies import MoEConfig, MoEPolicy, TransformerConfig, TransformerPolicy
from trm_bounds.refined import tight_pair
from trm_bounds.second_order import second_order_tree, sequence_statistics

ROUND = 1e-12  # relative rounding allowance: Error and E[Z] are each exact to ~1e-14 relative


def _holds(out) -> float:
    """|Error| / E[Z] after asserting |Error| <= E[Z] (1 + ROUND) + 1e-300."""
    err, b = abs(out["error"]), out["bounds"]["second_order"]
    msg = f"error={out['error']!r} second_order={b!r} bounds={out['bounds']!r}"
    assert err <= b * (1 + ROUND) + 1e-300, msg
    return err / b if b > 0 else 0.0


def _run(p):
    return exact_quantities(p.logp_roll, p.logp_theta, p.reward, p.prompt_probs)


KINDS_AC = ["dense", "sparse", "near_det", "extreme", "identical", "zeros_theta", "one_token"]


@given(
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(KINDS_AC),
    P=st.integers(1, 3),
    V=st.integers(2, 3),
    T=st.integers(1, 5),
    scale=st.sampled_from([1e-3, 0.03, 0.3, 3.0]),
)
@example(seed=37, kind="near_det", P=2, V=3, T=2, scale=0.3)
@example(seed=1, kind="dense", P=1, V=2, T=1, scale=0.3)  # T = 1: Error = 0 = E[Z]
def test_second_order_bound_holds_on_random_tabular_pairs(seed, kind, P, V, T, scale):
    out = _run(build_pair(seed, kind, P, V, T, scale))
    if out["abs_continuous"]:
        _holds(out)
        if T == 1:
            assert out["bounds"]["second_order"] == 0.0 and abs(out["error"]) <= 1e-15
    else:
        assert "second_order" not in out["bounds"] and any("second_order" in n for n in out["notes"])


@pytest.mark.parametrize("family", ["transformer", "moe"])
@pytest.mark.parametrize("mismatch,strength", [("dense", 1e-3), ("dense", 0.3), ("reverse", 0.3)])
def test_second_order_bound_holds_on_model_pairs(family, mismatch, strength):
    torch.manual_seed(0)
    if family == "transformer":
        pol = TransformerPolicy(TransformerConfig(V=3, T=4, P=2))
    else:
        pol = MoEPolicy(MoEConfig(V=3, T=4, P=2))
    R = torch.rand(2, 3**4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = _run(make_pair(pol, mismatch, strength, reward=R, seed=3))
    _holds(out)


def test_second_order_is_attained_and_zero_at_T1():
    tp = tight_pair(0.1, 0.3)
    lv = lambda L: [np.log(np.array(x, dtype=float)) for x in L]  # noqa: E731
    out = exact_quantities(lv(tp["roll"]), lv(tp["theta"]), np.array(tp["reward"], float), np.ones(1))
    assert _holds(out) == pytest.approx(1.0, rel=1e-12)  # Error = 2ab = E[Z]
    assert out["bounds"]["second_order"] == pytest.approx(0.06, rel=1e-12)


def test_second_order_recursion_matches_a_per_trajectory_sum():
    p = build_pair(11, "dense", 2, 3, 3, 0.5)
    lr = [np.asarray(x) for x in p.logp_roll]
    lt = [np.asarray(x) for x in p.logp_theta]
    total = 0.0
    for x in range(2):
        for leaf in range(27):
            y = [(leaf // 3 ** (2 - k)) % 3 for k in range(3)]
            lp_roll = 0.0
            rho = []
            for k in range(3):
                row = sum(y[j] * 3 ** (k - 1 - j) for j in range(k))
                lp_roll += lr[k][x, row, y[k]]
                rho.append(math.exp(lt[k][x, row, y[k]] - lr[k][x, row, y[k]]))
            Z = sum(abs(rho[t] - 1) * sum(max(0.0, 1 - rho[s]) for s in range(t + 1, 3)) for t in range(3))
            total += p.prompt_probs[x] * math.exp(lp_roll) * Z
    assert second_order_tree(lr, lt, p.prompt_probs) == pytest.approx(total, rel=1e-12)


@given(seed=st.integers(0, 2**31 - 1), mismatch=st.sampled_from(["dense", "swap"]), T=st.integers(1, 5))
def test_chain_second_order_equals_the_tree(seed, mismatch, T):
    pair = random_chain_pair(last_k_transition(2, 1), mismatch, 0.5, T, seed=seed)
    d = chain_quantities(pair)
    tree = chain_to_tree(pair)
    ex = exact_quantities(
        [tree[f"logp_roll_{t}"] for t in range(1, T + 1)],
        [tree[f"logp_theta_{t}"] for t in range(1, T + 1)],
        tree["reward"],
        tree["prompt_probs"],
    )
    assert d["bounds"]["second_order"] == pytest.approx(ex["bounds"]["second_order"], rel=1e-10, abs=1e-300)
    assert abs(d["error"]) <= d["bounds"]["second_order"] * (1 + ROUND) + 1e-300


def _loop_statistics(lr, valid):
    """S, D, Z, tokens of every row with plain Python loops over the valid positions."""
    out = []
    for b in range(lr.shape[0]):
        rho = [math.exp(float(lr[b, t])) for t in range(lr.shape[1]) if valid[b, t]]
        S = sum(max(0.0, 1 - r) for r in rho)
        D = max(0.0, 1 - math.prod(rho))
        Z = sum(abs(rho[t] - 1) * sum(max(0.0, 1 - r) for r in rho[t + 1 :]) for t in range(len(rho)))
        out.append((S, D, Z, len(rho)))
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sequence_statistics_against_a_loop(dtype):
    """float32 log-ratios are read as the float64 numbers they are, then computed in float64."""
    rng = np.random.default_rng(0)
    lr = rng.normal(0, 0.5, (5, 7)).astype(dtype)
    lr[1, 2] = -np.inf
    valid = rng.random((5, 7)) < 0.7
    valid[4] = False
    s = sequence_statistics(lr, valid)
    assert s["tokens"].dtype.kind == "i"
    for b, (S, D, Z, n) in enumerate(_loop_statistics(lr, valid)):
        assert s["S"][b] == pytest.approx(S, rel=1e-12, abs=1e-15)
        assert s["D"][b] == pytest.approx(D, rel=1e-12, abs=1e-15)
        assert s["Z"][b] == pytest.approx(Z, rel=1e-12, abs=1e-15)
        assert s["tokens"][b] == n
    assert s["S"][4] == s["D"][4] == s["Z"][4] == 0.0


def test_sequence_statistics_with_an_overflowing_ratio():
    """rho = e^800 overflows: Z = inf when a (1 - rho_s)_+ > 0 follows it, 0 when nothing does; no warning."""
    lr = np.array([[800.0, -0.1, 0.0], [-0.1, 0.0, 800.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sequence_statistics(lr, np.ones((2, 3), bool))
    assert s["Z"][0] == math.inf
    assert s["Z"][1] == 0.0  # rho_2 = 1 and rho_3 >= 1: nothing after t = 1 is below 1
    assert s["S"].tolist() == [-math.expm1(-0.1)] * 2 and s["D"].tolist() == [0.0, 0.0]
    assert s["tokens"].tolist() == [3, 3]
    assert not np.signbit(s["D"]).any()  # D = +0.0, not -0.0 (a report would print "-0")


def test_large_error_pair_refutes_error_at_most_one():
    out = _run(large_error_pair())
    assert round(out["J_roll"], 3) == round(out["J_theta"], 3) == 0.994
    assert round(out["surrogate"], 3) == -5.958 and round(out["error"], 3) == 5.958
    assert abs(out["J_theta"] - out["J_roll"]) <= 1.0  # what is true for rewards in [0, 1]
    _holds(out)
