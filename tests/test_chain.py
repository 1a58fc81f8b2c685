"""Tests for trm_bounds/chain.py: the finite-state pair record, its DP engine, conversions.

The slow twin `_enumerate` walks every response y in V**T of every prompt and computes each
quantity from its THEORY.md definition on whole contexts (no state recursion); the DP must
agree with it to 1e-10, and its `_upper` / `_lower` values must bracket the whole-context
TVs that only the enumeration can compute.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from _checks import assert_bound_holds, max_rel_diff, sum_rounding
from hypothesis import example, given, note
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from trm_bounds import _chain_kernel
from trm_bounds import chain as ch
from trm_bounds.chain import (
    ChainPair,
    chain_quantities,
    chain_quantities_batch,
    chain_to_tree,
    counter_transition,
    evaluate_chain_file,
    last_k_transition,
    random_automaton_transition,
    random_chain_pair,
    tree_to_chain,
)
from trm_bounds.divergences import log_softmax

TOL = 1e-10
SHARED_KEYS = ("J_roll", "J_theta", "surrogate", "error", "eps", "delta", "dkl_seq")
LIST_KEYS = ("dbar", "g_inf")


# --------------------------------------------------------------------------- random instances
def _log_softmax(z):
    return log_softmax(z)  # log1p form: the rows sum to 1 even at logits of 1e3


def _bounds_reading_dtv_seq() -> frozenset:
    """Registered bounds whose value changes with D_TV^seq (published ones and any refined variant)."""
    from trm_bounds.bounds import BOUNDS, BoundInputs

    lo = BoundInputs(T=5, eps=0.3, delta=0.5, dkl_seq=0.4, dtv_seq=0.01, dbar=[0.2] * 5)
    hi = BoundInputs(T=5, eps=0.3, delta=0.5, dkl_seq=0.4, dtv_seq=0.02, dbar=[0.2] * 5)
    return frozenset(n for n, f in BOUNDS.items() if float(f(lo)) != float(f(hi)))


_READS_DTV_SEQ = _bounds_reading_dtv_seq()


def _make_pair(seed, S, V, T, P, time_dep, zeros, scale=1.0, roll_zero_only=False):
    """A random chain pair; `zeros`: some -inf log-probs (roll_zero_only: only in pi_roll)."""
    rng = np.random.default_rng(seed)
    shape = (T, S, V) if time_dep else (S, V)
    zr = scale * rng.standard_normal(shape)
    zth = zr + rng.choice([0.0, 0.3, 2.0], p=[0.3, 0.5, 0.2]) * rng.standard_normal(shape)
    if zeros:
        for z, p in ((zr, 0.3), (zth, 0.0 if roll_zero_only else 0.3)):
            kill = rng.random(shape) < p
            kill[..., 0] &= False  # keep every row non-empty
            z[kill] = -np.inf
    probs = rng.random(P)
    probs[rng.random(P) < 0.2] = 0.0
    if probs.sum() == 0:
        probs[0] = 1.0
    rf_share = rng.choice([0.0, 0.5, 1.0])
    return ChainPair(
        T=T,
        transition=rng.integers(0, S, size=(S, V)),
        init_state=rng.integers(0, S, size=P),
        prompt_probs=probs / probs.sum(),
        logp_roll=_log_softmax(zr),
        logp_theta=_log_softmax(zth),
        reward_final=rf_share * rng.random(S),
        reward_step=(1.0 - rf_share) * rng.random((S, V)),
    )


# --------------------------------------------------------------------------- the slow twin
def _enumerate(pair: ChainPair) -> dict:
    """Every quantity from its definition, by walking all P * V**T full responses."""
    T, V = pair.T, pair.V

    def logp(which, t, s):
        lp = pair.logp_roll if which == "roll" else pair.logp_theta
        return lp[t - 1, s] if pair.time_dependent else lp[s]

    # per full response: prob under each policy (given x), reward, and per-t contexts
    ctx = {}  # (t, x, prefix) -> dict(d_roll, d_theta, reach_roll, reach_theta, state)
    J = {"roll": 0.0, "theta": 0.0}
    Qnum = {}  # (t, x, prefix, v) -> sum over completions of prod_{u>t} pi_roll * R
    paths = []
    ratio_sum, ratio_ok = 0.0, True
    for x in range(pair.P):
        for y in itertools.product(range(V), repeat=T):
            s = int(pair.init_state[x])
            states, lr_tok, lth_tok, step = [], [], [], 0.0
            for t in range(1, T + 1):
                states.append(s)
                lr_tok.append(logp("roll", t, s)[y[t - 1]])
                lth_tok.append(logp("theta", t, s)[y[t - 1]])
                step += pair.reward_step[s, y[t - 1]]
                s = int(pair.transition[s, y[t - 1]])
            R = pair.reward_final[s] + step / T
            pr = pair.prompt_probs[x] * math.exp(sum(lr_tok)) if all(v > -np.inf for v in lr_tok) else 0.0
            pth = pair.prompt_probs[x] * math.exp(sum(lth_tok)) if all(v > -np.inf for v in lth_tok) else 0.0
            J["roll"] += pr * R
            J["theta"] += pth * R
            paths.append((x, y, pr, pth))
            for t in range(1, T + 1):
                key = (t, x, y[: t - 1])
                if key not in ctx:
                    pre_r = lr_tok[: t - 1]
                    pre_th = lth_tok[: t - 1]
                    ctx[key] = dict(
                        state=states[t - 1],
                        d_roll=pair.prompt_probs[x] * math.prod(math.exp(v) for v in pre_r),
                        d_theta=pair.prompt_probs[x] * math.prod(math.exp(v) for v in pre_th),
                        reach=pair.prompt_probs[x] > 0
                        and (all(v > -np.inf for v in pre_r) or all(v > -np.inf for v in pre_th)),
                    )
                fut = math.prod(math.exp(v) for v in lr_tok[t:])
                Qnum[key + (y[t - 1],)] = Qnum.get(key + (y[t - 1],), 0.0) + fut * R
            # ratio identity term, only on roll-positive trajectories
            if pr > 0:
                rho = [math.exp(b - a) if b > -np.inf else 0.0 for a, b in zip(lr_tok, lth_tok)]
                ratio_sum += pr * R * sum((rho[t] - 1) * (1 - math.prod(rho[t + 1 :])) for t in range(T))
    surrogate, pdi = 0.0, 0.0
    eps, delta = 0.0, 0.0
    dbar, dkl_seq = np.zeros(T), 0.0
    g_inf = np.zeros(T)
    for (t, x, pre), c in ctx.items():
        s = c["state"]
        lr, lth = logp("roll", t, s), logp("theta", t, s)
        p, q = np.exp(lr), np.exp(lth)
        Q = np.array([Qnum[(t, x, pre, v)] for v in range(V)])
        g = float(np.sum((q - p) * Q))
        tv = 0.5 * float(np.abs(q - p).sum())
        kl = sum(
            math.inf if lth[v] == -np.inf else p[v] * (lr[v] - lth[v]) for v in range(V) if lr[v] > -np.inf
        )
        surrogate += c["d_roll"] * g
        pdi += c["d_theta"] * g
        dbar[t - 1] += c["d_roll"] * tv
        if c["d_roll"] > 0:
            dkl_seq += c["d_roll"] * kl
        if c["reach"]:
            eps, delta = max(eps, tv), max(delta, kl)
            g_inf[t - 1] = max(g_inf[t - 1], abs(g))
        if _roll_reach(pair, x, pre) and any(lr[v] == -np.inf and lth[v] > -np.inf for v in range(V)):
            ratio_ok = False  # theta emits a token that roll cannot, on a roll-reachable context
    # whole-context TVs: per prefix length j, TV of the laws of (x, y_1..y_j)
    ctx_tv = np.zeros(T + 1)
    for j in range(T + 1):
        agg = {}
        for x, y, pr, pth in paths:
            a = agg.setdefault((x, y[:j]), [0.0, 0.0])
            a[0] += pr
            a[1] += pth
        ctx_tv[j] = 0.5 * sum(abs(a - b) for a, b in agg.values())
    return dict(
        J_roll=J["roll"],
        J_theta=J["theta"],
        surrogate=surrogate,
        error=J["theta"] - J["roll"] - surrogate,
        error_pdi=pdi - surrogate,
        error_ratio_identity=-ratio_sum if ratio_ok else None,
        eps=eps,
        delta=delta,
        dkl_seq=dkl_seq,
        dbar=dbar,
        g_inf=g_inf,
        dtv_seq=ctx_tv[T],
        context_tv=ctx_tv[:T],
        n_paths=len(paths),  # the whole-context TVs add this many path probabilities
    )


def _roll_reach(pair, x, pre):
    """Whether pi_roll gives the prefix `pre` of prompt x positive probability (exact)."""
    s = int(pair.init_state[x])
    for t, v in enumerate(pre, start=1):
        lp = pair.logp_roll[t - 1, s] if pair.time_dependent else pair.logp_roll[s]
        if lp[v] == -np.inf:
            return False
        s = int(pair.transition[s, v])
    return pair.prompt_probs[x] > 0


def _note(msg: str):
    """hypothesis note() inside a property test; plain tests carry the message in the assert."""
    try:
        note(msg)
    except InvalidArgument:  # outside @given there is no report to add to
        pass


def _assert_matches(dp: dict, ref: dict):
    for k in SHARED_KEYS:
        _note(f"{k}: dp={dp[k]!r} ref={ref[k]!r}")
        if math.isinf(ref[k]):
            assert dp[k] == ref[k]
        else:
            assert abs(dp[k] - ref[k]) <= TOL * max(1.0, abs(ref[k]))
    for k in LIST_KEYS:
        np.testing.assert_allclose(dp[k], ref[k], rtol=0, atol=TOL)
    assert abs(dp["error_pdi"] - ref["error"]) <= TOL
    assert abs(dp["error_second_order"] - ref["error"]) <= TOL
    if ref["error_ratio_identity"] is None:
        assert dp["error_ratio_identity"] is None
        assert any("undefined" in n for n in dp["notes"])
    else:
        assert abs(dp["error_ratio_identity"] - ref["error_ratio_identity"]) <= TOL
    # proven brackets of the whole-context TVs, never below / above the value
    _note(f"dtv: lower={dp['dtv_seq_lower']!r} exact={ref['dtv_seq']!r} upper={dp['dtv_seq_upper']!r}")
    r = sum_rounding(ref["n_paths"])  # the enumeration's TVs are sums over every path: absolute rounding
    assert_bound_holds(dp["dtv_seq_lower"], ref["dtv_seq"], "dtv_seq_lower <= D_TV^seq", atol=r)
    assert_bound_holds(ref["dtv_seq"], dp["dtv_seq_upper"], "D_TV^seq <= dtv_seq_upper", atol=r)
    assert_bound_holds(ref["context_tv"], dp["context_tv_upper"], "context TV <= context_tv_upper", atol=r)
    assert_bound_holds(dp["context_tv_lower"], ref["context_tv"], "context_tv_lower <= context TV", atol=r)


# --------------------------------------------------------------------------- fixtures
@pytest.mark.parametrize("name", ["chain_small.npz", "chain_homog.npz"])
def test_fixture_values(fixtures_dir, expected, name):
    d = evaluate_chain_file(fixtures_dir / name)
    e = expected[name]
    assert d["T"] == e["T"]
    for k in ("J_roll", "J_theta", "surrogate", "error"):
        assert abs(d[k] - e[k]) <= 1e-12
    for k in ("eps", "delta", "dkl_seq"):
        assert abs(d[k] - e[k]) <= 1e-12 + 1e-9 * abs(e[k])
    for k in LIST_KEYS:
        np.testing.assert_allclose(d[k], e[k], rtol=1e-9, atol=1e-12)
    assert_bound_holds(e["dtv_seq_exact_for_reference"], d["dtv_seq_upper"], "D_TV^seq <= upper")
    assert_bound_holds(e["context_tv_exact_for_reference"], d["context_tv_upper"], "context TV <= upper")
    assert_bound_holds(d["dtv_seq_lower"], e["dtv_seq_exact_for_reference"], "lower <= D_TV^seq")
    assert abs(d["error_ratio_identity"] - e["error"]) <= 1e-12
    assert set(d["bounds"]) >= {"classical_tv", "pm_kl", "mix_tv", "adaptive_star", "unified"}
    assert d["bound_inputs"]["dtv_seq"].startswith("upper_bound")
    assert d["bound_inputs"]["dbar"] == "exact"
    json.dumps(d)  # JSON-ready


def test_fixture_matches_slow_enumeration(fixtures_dir):
    pair = ChainPair.load(fixtures_dir / "chain_small.npz")
    _assert_matches(chain_quantities(pair), _enumerate(pair))


# --------------------------------------------------------------------------- DP vs enumeration
@given(
    seed=st.integers(0, 2**32 - 1),
    S=st.integers(1, 4),
    V=st.integers(1, 3),
    T=st.integers(1, 4),
    P=st.integers(1, 3),
    time_dep=st.booleans(),
    zeros=st.booleans(),
)
@example(seed=0, S=1, V=1, T=1, P=1, time_dep=False, zeros=False)  # a single deterministic token
@example(seed=1, S=3, V=3, T=4, P=2, time_dep=True, zeros=True)  # zero probabilities on both sides
@example(seed=7, S=4, V=2, T=4, P=3, time_dep=False, zeros=True)
def test_dp_equals_enumeration(seed, S, V, T, P, time_dep, zeros):
    pair = _make_pair(seed, S, V, T, P, time_dep, zeros)
    _assert_matches(chain_quantities(pair), _enumerate(pair))


@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 4))
@example(seed=3, T=3)
def test_roll_zeros_make_ratio_identity_undefined(seed, T):
    """pi_roll has zeros that pi_theta lacks: ratio form undefined, everything else exact."""
    pair = _make_pair(seed, 3, 3, T, 2, False, zeros=True, roll_zero_only=True)
    dp, ref = chain_quantities(pair), _enumerate(pair)
    note(f"ratio ref={ref['error_ratio_identity']!r}")
    _assert_matches(dp, ref)


@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 3))
@example(seed=0, T=3)
def test_extreme_logits(seed, T):
    """Logits of magnitude 1e3: probabilities underflow, supports and values stay exact."""
    pair = _make_pair(seed, 3, 3, T, 1, False, zeros=False, scale=1e3)
    _assert_matches(chain_quantities(pair), _enumerate(pair))


@given(seed=st.integers(0, 2**32 - 1), time_dep=st.booleans(), backend=st.sampled_from(["numpy", "torch"]))
def test_operators_and_backends_agree(seed, time_dep, backend):
    """numpy vs torch, dense S x S matrices vs gather/scatter: the same numbers."""
    pair = _make_pair(seed, 5, 3, 7, 2, time_dep, zeros=seed % 2 == 0)
    a = chain_quantities(pair, dense=False, backend="numpy")
    b = chain_quantities(pair, dense=not time_dep, backend=backend)
    for k in SHARED_KEYS + ("error_second_order", "dtv_seq_upper", "dtv_seq_lower"):
        assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(a["context_tv_upper"], b["context_tv_upper"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a["g_inf"], b["g_inf"], rtol=1e-12, atol=1e-15)


@given(
    seed=st.integers(0, 2**32 - 1),
    time_dep=st.booleans(),
    zeros=st.booleans(),
    T=st.sampled_from([1, 2, 13, 200]),
)
@example(seed=3, time_dep=False, zeros=True, T=200)
def test_fused_kernel_equals_level_by_level(seed, time_dep, zeros, T):
    """The default CPU route (numba kernel, adjoint sums) against the level-by-level numpy route:
    every key and value of the JSON within 1e-12 relative; values that are rounding noise around
    0 (g_t of a state whose rows nearly agree) within the rounding of T unit-size terms."""
    if not _chain_kernel.available():
        pytest.skip("numba not installed: the level-by-level route serves every call")
    pair = _make_pair(seed, 7, 3, T, 3, time_dep, zeros)
    fused = json.loads(json.dumps(chain_quantities(pair)))
    plain = json.loads(json.dumps(chain_quantities(pair, backend="numpy")))
    worst, where = max_rel_diff(fused, plain, abs_=sum_rounding(T))
    assert worst <= 1.0, f"{where}: difference {worst:.3g} x (1e-12 |old| + {sum_rounding(T):.2g})"


def test_no_jit_switch_uses_the_level_by_level_route(monkeypatch):
    from trm_bounds import chain as chain_mod

    monkeypatch.setenv("TRM_BOUNDS_JIT", "0")
    monkeypatch.setattr(chain_mod, "_run_kernel", lambda p: pytest.fail("kernel ran with TRM_BOUNDS_JIT=0"))
    pair = _make_pair(1, 4, 3, 5, 1, False, False)
    assert chain_quantities(pair)["T"] == 5


def test_backend_error():
    with pytest.raises(ValueError, match="backend"):
        chain_quantities(_make_pair(0, 2, 2, 2, 1, False, False), backend="jax")


def test_batch_equals_single():
    rng = np.random.default_rng(5)
    tr = random_automaton_transition(6, 3, rng)
    pairs = [random_chain_pair(tr, m, 0.3, 9, seed=i) for i, m in enumerate(["dense", "swap", "drift"])]
    for one, many in zip([chain_quantities(p) for p in pairs], chain_quantities_batch(pairs)):
        for k in SHARED_KEYS + ("dtv_seq_upper",):
            assert one[k] == pytest.approx(many[k], rel=1e-13, abs=1e-16)


def test_batch_rejects_mixed_shapes():
    rng = np.random.default_rng(0)
    a = random_chain_pair(random_automaton_transition(4, 2, rng), "dense", 0.1, 5)
    b = random_chain_pair(random_automaton_transition(5, 2, rng), "dense", 0.1, 5)
    with pytest.raises(ValueError, match="pairs"):
        chain_quantities_batch([a, b])
    with pytest.raises(ValueError, match="pairs"):
        chain_quantities_batch([])


# --------------------------------------------------------------------------- conversions
@given(
    seed=st.integers(0, 2**32 - 1),
    T=st.integers(1, 4),
    time_dep=st.booleans(),
    zeros=st.booleans(),
)
@example(seed=2, T=4, time_dep=True, zeros=True)
def test_chain_tree_chain_round_trip(seed, T, time_dep, zeros):
    pair = _make_pair(seed, 3, 2, T, 2, time_dep, zeros)
    tree = chain_to_tree(pair)
    back = tree_to_chain(tree)
    a, b = chain_quantities(pair), chain_quantities(back)
    for k in SHARED_KEYS:
        assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-14)
    for k in LIST_KEYS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-14)
    tree2 = chain_to_tree(back)
    assert set(tree2) == set(tree)
    for k in tree:
        np.testing.assert_array_equal(tree2[k], tree[k])


def test_chain_to_tree_layout():
    """Row k of level t holds the context whose base-V digits (y_1 most significant) are y_<t."""
    pair = _make_pair(11, 4, 3, 3, 1, True, False)
    tree = chain_to_tree(pair)
    assert tree["logp_roll_3"].shape == (1, 9, 3)
    assert tree["reward"].shape == (1, 27)
    y1, y2 = 2, 1
    s2 = pair.transition[pair.init_state[0], y1]
    s3 = pair.transition[s2, y2]
    np.testing.assert_array_equal(tree["logp_theta_3"][0, y1 * 3 + y2], pair.logp_theta[2, s3])


def test_tree_to_chain_merges_equivalent_contexts():
    """A homogeneous last-1-token chain over T steps needs at most one state per (level, token)."""
    tr = last_k_transition(2, 1)
    pair = random_chain_pair(tr, "dense", 0.2, 5, seed=3, reward="final")
    back = tree_to_chain(chain_to_tree(pair))
    assert back.S <= 2 * 5 + 2  # levels 1..T with 2 states each (1 at t = 1), plus the leaf values
    assert chain_quantities(back)["error"] == pytest.approx(chain_quantities(pair)["error"], abs=1e-14)


def test_tree_to_chain_rejects_empty():
    with pytest.raises(ValueError, match="tree"):
        tree_to_chain({"reward": np.zeros((1, 1)), "prompt_probs": np.ones(1)})


def test_chain_to_tree_refuses_huge():
    pair = random_chain_pair(last_k_transition(4, 1), "dense", 0.1, 20)
    with pytest.raises(ValueError, match="T = 20"):
        chain_to_tree(pair)


# --------------------------------------------------------------------------- long horizons
def test_long_horizon_identities():
    """T = 16384: the definition J_theta - J_roll - L' and the second-order sum agree."""
    tr = random_automaton_transition(8, 4, np.random.default_rng(1))
    d = chain_quantities(random_chain_pair(tr, "dense", 0.05, 16384, seed=1))
    assert len(d["dbar"]) == 16384
    assert d["error_second_order"] == pytest.approx(d["error"], rel=1e-7, abs=1e-14)
    assert d["error_ratio_identity"] == d["error_second_order"]
    assert_bound_holds(abs(d["error"]), d["bounds"]["unified"], "|Error| <= unified")
    assert d["dtv_seq_lower"] <= d["dtv_seq_upper"] <= 1.0
    up = np.array(d["context_tv_upper"])
    assert_bound_holds(up[:-1], up[1:], "prefix TV bounds grow with t")


def test_horizon_override_and_time_dependent_prefix(tmp_path):
    pair = _make_pair(4, 3, 2, 5, 1, True, False)
    path = tmp_path / "c.npz"
    pair.save(path)
    full = evaluate_chain_file(path)
    short = evaluate_chain_file(path, T=3)
    assert short["T"] == 3 and len(short["dbar"]) == 3
    assert full["dbar"][:3] == pytest.approx(short["dbar"], abs=1e-15)  # same first 3 steps
    with pytest.raises(ValueError, match="exceeds"):
        evaluate_chain_file(path, T=6)


def test_upper_bound_sources_and_relations():
    tr = last_k_transition(3, 2)
    d = chain_quantities(random_chain_pair(tr, "swap", 0.3, 200, seed=2))
    assert_bound_holds(d["dtv_seq_upper"], min(1.0, sum(d["dbar"])), "coupling <= hybrid bound")
    assert_bound_holds(d["dtv_seq_upper"], math.sqrt(d["dkl_seq"] / 2), "Pinsker")
    assert_bound_holds(d["dtv_seq_upper"], d["dtv_seq_max_prompt_upper"], "mean over prompts <= max")
    assert d["context_tv_upper"][0] == 0.0


# --------------------------------------------------------------------------- chain families
def test_families():
    tr = last_k_transition(3, 2)
    assert tr.shape == (9, 3)
    assert tr[5, 2] == (5 * 3 + 2) % 9
    c = counter_transition(4, 3, token=1)
    assert c[0, 1] == 1 and c[3, 1] == 3 and c[2, 0] == 2
    a = random_automaton_transition(5, 2, np.random.default_rng(0))
    assert a.shape == (5, 2) and a.min() >= 0 and a.max() < 5
    for m in ch.MISMATCHES:
        p = random_chain_pair(tr, m, 0.5, 4, seed=1)
        assert p.logp_theta.shape == (9, 3)
    sparse = random_chain_pair(tr, "swap", 0.0, 4, seed=1)
    np.testing.assert_array_equal(sparse.logp_roll, sparse.logp_theta)  # no flips: same policy
    z = chain_quantities(sparse)
    assert z["error"] == 0.0 and z["eps"] == 0.0 and z["dtv_seq_upper"] == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: last_k_transition(0, 1), "V"),
        (lambda: counter_transition(3, 2, token=5), "token"),
        (lambda: random_automaton_transition(0, 2, np.random.default_rng(0)), "S"),
        (lambda: random_chain_pair(last_k_transition(2, 1), "bogus", 0.1, 3), "mismatch"),
        (lambda: random_chain_pair(last_k_transition(2, 1), "dense", -1.0, 3), "strength"),
        (lambda: random_chain_pair(last_k_transition(2, 1), "dense", 0.1, 3, reward="x"), "reward"),
    ],
)
def test_family_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- validation
def _valid_fields():
    S, V = 2, 2
    return dict(
        T=3,
        transition=np.array([[0, 1], [1, 0]]),
        init_state=np.array([0]),
        prompt_probs=np.array([1.0]),
        logp_roll=np.log(np.full((S, V), 0.5)),
        logp_theta=np.log(np.array([[0.4, 0.6], [0.5, 0.5]])),
        reward_final=np.array([0.2, 0.5]),
        reward_step=np.array([[0.5, 0.0], [0.1, 0.2]]),
    )


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("T", 0, "T must be >= 1"),
        ("T", 2.5, "T must be an integer"),
        ("transition", np.array([[0, 2], [1, 0]]), "transition entries"),
        ("transition", np.array([[0.5, 1], [1, 0]]), "transition must be an integer"),
        ("transition", np.array([0, 1]), "transition must have 2"),
        ("init_state", np.array([3]), "init_state"),
        ("prompt_probs", np.array([0.9]), "prompt_probs must sum to 1"),
        ("prompt_probs", np.array([-1.0]), "prompt_probs must be finite"),
        ("prompt_probs", np.array([0.5, 0.5]), "prompt_probs has shape"),
        ("logp_roll", np.log(np.full((2, 2), 0.6)), "logp_roll rows must be normalised"),
        ("logp_roll", np.full((2, 2), -np.inf), "logp_roll rows must be normalised"),
        ("logp_roll", np.array([[np.nan, 0.0], [0.0, -np.inf]]), "logp_roll contains NaN"),
        ("logp_theta", np.array([[np.inf, 0.0], [0.0, -np.inf]]), r"logp_theta contains \+inf"),
        ("logp_theta", np.log(np.full((3, 2, 2), 0.5))[:2], "time-dependent with 2 steps"),
        ("logp_theta", np.log(np.full((2, 3), 1 / 3)), "logp_theta must have shape"),
        ("reward_final", np.array([0.2, 0.6]), r"max\(reward_final\) \+ max\(reward_step\)"),
        ("reward_final", np.array([0.2]), "reward_final must have shape"),
        ("reward_step", np.array([[-0.1, 0.0], [0.0, 0.0]]), "reward_step must be finite and >= 0"),
        ("reward_step", np.zeros((2, 3)), "reward_step must have shape"),
    ],
)
def test_validation_errors(field, value, match):
    f = _valid_fields()
    f[field] = value
    with pytest.raises(ValueError, match=match):
        ChainPair(**f)


def test_logp_shape_mismatch_between_policies():
    f = _valid_fields()
    f["logp_theta"] = np.log(np.full((3, 2, 2), 0.5))
    with pytest.raises(ValueError, match="logp_theta has shape"):
        ChainPair(**f)


def test_load_errors(tmp_path):
    f = _valid_fields()
    ok = tmp_path / "ok.npz"
    ChainPair(**f).save(ok)
    assert ChainPair.load(ok).T == 3
    bad = tmp_path / "missing.npz"
    np.savez(bad, **{k: v for k, v in f.items() if k != "reward_final"})
    with pytest.raises(ValueError, match="lacks reward_final"):
        ChainPair.load(bad)
    vec = tmp_path / "vecT.npz"
    np.savez(vec, **{**f, "T": np.array([3, 4])})
    with pytest.raises(ValueError, match="T must be an integer scalar"):
        ChainPair.load(vec)
    with pytest.raises(ValueError, match="cannot read"):
        ChainPair.load(tmp_path / "nope.npz")
    no_step = tmp_path / "nostep.npz"
    np.savez(no_step, **{k: v for k, v in f.items() if k != "reward_step"})
    assert np.all(ChainPair.load(no_step).reward_step == 0.0)


def test_pair_is_read_only():
    p = ChainPair(**_valid_fields())
    with pytest.raises(ValueError):
        p.logp_roll[0, 0] = 0.0


def test_reachability_is_exact_when_probabilities_underflow():
    """A state reached only by pi_roll through a token of probability e^-1000 (0.0 in float64)
    still counts as reachable: eps, delta and max|g_t| are maxima over contexts of positive
    probability, and pi_theta's zero there makes the KL (and D_KL^seq) infinite."""
    lp2_r, lp2_th = np.log([0.9, 0.1]), np.log([0.1, 0.9])
    pair = ChainPair(
        T=2,
        transition=np.array([[0, 1], [1, 1]]),
        init_state=np.array([0]),
        prompt_probs=np.array([1.0]),
        logp_roll=np.stack([[0.0, -1000.0], lp2_r]),  # normalised to rounding: log(1 + e^-1000) = 0.0
        logp_theta=np.stack([[0.0, -np.inf], lp2_th]),
        reward_final=np.array([0.0, 1.0]),
    )
    d = chain_quantities(pair)
    assert d["eps"] == pytest.approx(0.8, abs=1e-15)
    assert d["delta"] == math.inf and d["dkl_seq"] == math.inf
    assert d["dbar"] == [0.0, 0.0]  # the state's mass, e^-1000, is 0.0 in float64
    assert d["error_ratio_identity"] is not None  # pi_theta << pi_roll holds
    ref = _enumerate(pair)
    assert ref["eps"] == pytest.approx(0.8, abs=1e-15)


# --------------------------------------------------------------------------- the enumerable engine
@given(
    seed=st.integers(0, 2**32 - 1),
    T=st.integers(1, 4),
    P=st.integers(1, 3),
    time_dep=st.booleans(),
    zeros=st.booleans(),
)
@example(seed=1, T=4, P=2, time_dep=True, zeros=True)
@example(seed=5, T=1, P=1, time_dep=False, zeros=False)
def test_matches_exact_engine(seed, T, P, time_dep, zeros):
    """chain -> tree -> trm_bounds.exact.exact_quantities: every shared key to 1e-10, and the
    chain's `_upper` / `_lower` values bracket the tree engine's exact whole-context TVs."""
    from trm_bounds.exact import exact_quantities

    pair = _make_pair(seed, 4, 3, T, P, time_dep, zeros)
    tree = chain_to_tree(pair)
    ex = exact_quantities(
        [tree[f"logp_roll_{t}"] for t in range(1, T + 1)],
        [tree[f"logp_theta_{t}"] for t in range(1, T + 1)],
        tree["reward"],
        tree["prompt_probs"],
    )
    dp = chain_quantities(pair)
    for k in SHARED_KEYS:
        _note(f"{k}: chain={dp[k]!r} tree={ex[k]!r}")
        assert dp[k] == ex[k] or abs(dp[k] - ex[k]) <= TOL
    for k in LIST_KEYS:
        np.testing.assert_allclose(dp[k], ex[k], rtol=0, atol=TOL)
    if ex["error_ratio_identity"] is None:
        assert dp["error_ratio_identity"] is None
    else:
        assert abs(dp["error_ratio_identity"] - ex["error_ratio_identity"]) <= TOL
    assert_bound_holds(dp["dtv_seq_lower"], ex["dtv_seq"], "dtv_seq_lower <= D_TV^seq")
    assert_bound_holds(ex["dtv_seq"], dp["dtv_seq_upper"], "D_TV^seq <= dtv_seq_upper")
    assert_bound_holds(ex["dtv_seq_max_prompt"], dp["dtv_seq_max_prompt_upper"], "max-prompt TV <= upper")
    assert_bound_holds(ex["context_tv"], dp["context_tv_upper"], "context TV <= context_tv_upper")
    assert_bound_holds(dp["context_tv_lower"], ex["context_tv"], "context_tv_lower <= context TV")
    for name, value in ex["bounds"].items():
        if name in _READS_DTV_SEQ:  # these read D_TV^seq: the chain's is an upper bound
            assert_bound_holds(value, dp["bounds"][name], f"{name} (tree) <= {name} (chain)")
        elif math.isfinite(value):
            assert dp["bounds"][name] == pytest.approx(value, rel=1e-9, abs=1e-7)


# --------------------------------------------------------------------------- audit evidence
def test_chain_evidence_small_recomputation(monkeypatch, tmp_path):
    from trm_bounds.audit.evidence import chain as ev

    monkeypatch.setattr(ev, "_search_dirs", lambda: (tmp_path,))  # no study JSON there
    c01, c11, study = ev.c01_evidence(), ev.c11_evidence(), ev._study()
    from trm_bounds.bounds import PUBLISHED_BOUNDS

    assert set(c01) == set(PUBLISHED_BOUNDS)
    for r in c01.values():
        assert 0.0 <= r["worst_ratio"] <= 1.0 and r["instances"] == 24  # every bound held here
    assert set(c11) == set(ev.C11_FAMILIES)
    # classical_kl = T (T-1) delta with delta fixed in T (a homogeneous chain): its fitted slope is
    # exactly the least-squares slope of log T(T-1) over the same grid, on every instance
    grid = np.array([2.0**i for i in range(6, 11)])
    exact = np.polyfit(np.log(grid), np.log(grid * (grid - 1)), 1)[0]
    for name, r in study["sweep"].items():
        got = r["bound_slopes"]["classical_kl"]
        assert got == pytest.approx(exact, rel=1e-9), f"{name}: {got!r} vs {exact!r}"  # each mismatch is real
    assert c11["classical_kl"]["slope"] == round(exact, 3)
    assert "TRUE |Error|" in c11["pm_kl"]["description"]
