"""Tests for trm_bounds/mismatch.py: spec parsing, and pi_roll of each mechanism against a direct twin."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import example, given, note
from hypothesis import strategies as st

from trm_bounds.divergences import token_kl
from trm_bounds.mismatch import MISMATCH_MECHANISMS, Mismatch, RolloutEngine, parse_mismatch
from trm_bounds.policies import MoEConfig, MoEPolicy, TabularPolicy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _moe(seed=0, **kw):
    cfg = dict(P=2, V=3, T=3, eos=0, seed=seed, n_experts=6, top_k=2, router_scale=2.0) | kw
    return MoEPolicy(MoEConfig(**cfg))


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("none", Mismatch()),
        ("precision", Mismatch(precision="bf16")),
        ("precision=fp16", Mismatch(precision="fp16")),
        ("moe", Mismatch(router_noise_std=MISMATCH_MECHANISMS["moe"].default)),
        ("moe=0.05", Mismatch(router_noise_std=0.05)),
        ("stale=3", Mismatch(staleness=3)),
        ("moe=0.1+precision=fp16+stale=2", Mismatch("fp16", 0.1, 2)),
        (" stale + moe=0 ", Mismatch(staleness=1)),  # moe=0 is off
    ],
)
def test_parse_mismatch_examples(spec, expected):
    assert parse_mismatch(spec) == expected


@given(
    precision=st.sampled_from([None, "bf16", "fp16"]),
    std=st.floats(0.0, 10.0, allow_nan=False) | st.just(0.0),
    k=st.integers(0, 50),
)
@example(precision=None, std=0.0, k=0)
@example(precision="bf16", std=1e-300, k=1)
def test_spec_round_trips(precision, std, k):
    m = Mismatch(precision, float(f"{std:g}"), k)  # spec writes %g: round first
    note(f"spec={m.spec!r}")
    assert parse_mismatch(m.spec) == m
    assert set(m.active) == {
        n for n, on in (("precision", precision), ("moe", m.router_noise_std), ("stale", k)) if on
    }


@pytest.mark.parametrize(
    "spec, match",
    [
        ("bogus", "unknown mechanism 'bogus'.*known: none, precision, moe, stale"),
        ("moe+moe=0.2", "given twice"),
        ("moe=abc", "not a number"),
        ("moe=-1", "router_noise_std must be finite and >= 0"),
        ("moe=inf", "router_noise_std must be finite"),
        ("stale=1.5", "staleness must be an integer"),
        ("stale=-1", "staleness must be an integer >= 0"),
        ("precision=fp8", "precision must be one of bf16, fp16"),
        ("", "non-empty"),
    ],
)
def test_parse_mismatch_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_mismatch(spec)


def test_mismatch_field_errors():
    with pytest.raises(ValueError, match="staleness"):
        Mismatch(staleness=True)
    with pytest.raises(ValueError, match="router_noise_std must be a number"):
        Mismatch(router_noise_std="x")


# --------------------------------------------------------------------------- rollout engine vs direct twins
def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == torch.float64 and not x.requires_grad
        assert torch.equal(x, y.detach())


def test_no_mismatch_is_the_policy_itself():
    pol = _moe()
    eng = RolloutEngine("none")
    eng.observe(pol)
    _same(eng.log_prob_tree(pol), pol.log_prob_tree())


@pytest.mark.parametrize("name, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_precision_is_the_low_precision_forward(name, dtype):
    pol = TabularPolicy(2, 3, 3, eos=0, seed=1)
    eng = RolloutEngine(f"precision={name}")
    roll = eng.log_prob_tree(pol)
    _same(roll, pol.log_prob_tree(compute_dtype=dtype))
    kl = max(float(token_kl(r, t.detach()).max()) for r, t in zip(roll, pol.log_prob_tree()))
    assert 0 < kl < 1e-2  # a real but small backend discrepancy
    for r in roll:
        assert torch.allclose(
            torch.exp(r).sum(-1), torch.ones((), dtype=torch.float64), atol=1e-12
        )  # still distributions


def test_bf16_is_a_stronger_knob_than_fp16():
    pol = TabularPolicy(3, 4, 3, eos=None, seed=2, init_std=2.0)
    theta = [x.detach() for x in pol.log_prob_tree()]
    kl = {}
    for name in ("bf16", "fp16"):
        roll = RolloutEngine(f"precision={name}").log_prob_tree(pol)
        kl[name] = sum(float(token_kl(r, t).sum()) for r, t in zip(roll, theta))
    assert kl["bf16"] > kl["fp16"] > 0, kl


def test_moe_noise_equals_the_router_noise_forward_with_the_same_generator():
    pol = _moe(seed=3)
    eng = RolloutEngine("moe=0.2+precision=fp16", generator=torch.Generator().manual_seed(7))
    roll = eng.log_prob_tree(pol)
    twin = pol.log_prob_tree(
        compute_dtype=torch.float16, router_noise_std=0.2, generator=torch.Generator().manual_seed(7)
    )
    _same(roll, twin)


def test_moe_flips_are_rare_and_concentrated_with_top1_routing():
    """With top-1 routing, router noise changes a context only by flipping its expert: few contexts
    change, and each that does changes by a whole expert (no small jitter)."""
    pol = _moe(seed=5, T=4, top_k=1)
    theta = [x.detach() for x in pol.log_prob_tree()]
    roll = RolloutEngine("moe=0.1", generator=torch.Generator().manual_seed(0)).log_prob_tree(pol)
    kl = torch.cat([token_kl(r, t).reshape(-1) for r, t in zip(roll, theta)])
    changed = kl > 0
    msg = f"changed {int(changed.sum())} of {kl.numel()}, KL of changed {kl[changed].tolist()}"
    assert 0 < int(changed.sum()) < 0.3 * kl.numel(), msg
    assert float(kl[changed].min()) > 1e-4, msg


def test_moe_needs_a_router():
    with pytest.raises(ValueError, match="needs a policy with a router"):
        RolloutEngine("moe").log_prob_tree(TabularPolicy(1, 2, 2))


@given(k=st.integers(0, 4), n_steps=st.integers(0, 6))
@example(k=2, n_steps=0)
@example(k=1, n_steps=5)
def test_staleness_uses_the_parameters_k_steps_old(k, n_steps):
    """Twin: keep a full copy of the policy after every step and read the one k steps back."""
    pol = TabularPolicy(2, 3, 2, eos=None, seed=5)
    eng = RolloutEngine(f"stale={k}")
    eng.observe(pol)
    snapshots = [copy.deepcopy(pol)]
    gen = torch.Generator().manual_seed(k * 10 + n_steps)
    for _ in range(n_steps):
        with torch.no_grad():
            for p in pol.parameters():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        eng.observe(pol)
        snapshots.append(copy.deepcopy(pol))
    expected = snapshots[max(0, len(snapshots) - 1 - k)]
    note(f"lag={eng.lag}")
    assert eng.lag == min(k, n_steps)
    _same(eng.log_prob_tree(pol), expected.log_prob_tree())
    assert eng.log_prob_tree(pol)[0].shape == (2, 1, 3)


def test_staleness_needs_observe_first():
    with pytest.raises(ValueError, match="observe"):
        RolloutEngine("stale=1").log_prob_tree(TabularPolicy(1, 2, 2))
