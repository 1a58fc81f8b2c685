"""Tests for trm_bounds/policies.py: layout, normalisation, gradients, EOS absorption,
low-precision evaluation, router noise (reward families: tests/test_rewards.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from trm_bounds.policies import (
    MoEConfig,
    MoEPolicy,
    TabularPolicy,
    TransformerConfig,
    TransformerPolicy,
    context_tokens,
)


def _policies(P=2, V=3, T=3, eos=None):
    return [
        TabularPolicy(P, V, T, eos=eos, seed=1),
        TransformerPolicy(TransformerConfig(P=P, V=V, T=T, eos=eos, seed=1)),
        MoEPolicy(MoEConfig(P=P, V=V, T=T, eos=eos, seed=1, top_k=2)),
    ]


@pytest.mark.parametrize("idx", range(3))
def test_tree_shapes_normalisation_and_gradients(idx):
    pol = _policies()[idx]
    levels = pol.log_prob_tree()
    assert [tuple(x.shape) for x in levels] == [(2, 1, 3), (2, 3, 3), (2, 9, 3)]
    for x in levels:
        assert x.dtype == torch.float64
        assert torch.allclose(torch.exp(x).sum(-1), torch.ones((), dtype=torch.float64), atol=1e-12)
    sum(x[..., 0].sum() for x in levels).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pol.parameters())


def test_transformer_rows_are_the_contexts_of_their_digits():
    """Slow twin: evaluate each context alone (a sequence padded with other tokens) and compare."""
    pol = TransformerPolicy(TransformerConfig(P=2, V=2, T=4, seed=3))
    levels = pol.log_prob_tree()
    logits = pol._logits(torch.float64)  # (P, V**(T-1), T, V)
    toks = context_tokens(2, 3)
    for t in range(1, 5):
        for k, prefix in enumerate(itertools.product(range(2), repeat=t - 1)):
            # any full sequence starting with this prefix gives the same next-token law (causal mask)
            n = [i for i in range(toks.shape[0]) if tuple(toks[i, : t - 1].tolist()) == prefix]
            for i in n:
                lp = torch.log_softmax(logits[:, i, t - 1], -1)
                assert torch.allclose(lp, levels[t - 1][:, k], atol=1e-12)


def test_context_tokens_are_base_V_digits():
    toks = context_tokens(3, 3)
    for k in range(27):
        assert toks[k].tolist() == [k // 9, (k // 3) % 3, k % 3]


@pytest.mark.parametrize("idx", range(3))
def test_eos_is_absorbing(idx):
    pol = _policies(P=1, V=3, T=4, eos=2)[idx]
    levels = pol.log_prob_tree()
    for t in range(2, 5):
        for k, prefix in enumerate(itertools.product(range(3), repeat=t - 1)):
            row = torch.exp(levels[t - 1][0, k])
            if 2 in prefix:
                assert row.tolist() == [0.0, 0.0, 1.0]
            else:
                assert row.min() > 0


@pytest.mark.parametrize("idx", range(3))
def test_low_precision_changes_logits_but_keeps_distributions(idx):
    pol = _policies()[idx]
    hi = pol.log_prob_tree()
    lo = pol.log_prob_tree(compute_dtype=torch.bfloat16)
    assert all(x.dtype == torch.float64 for x in lo)
    assert all(
        torch.allclose(torch.exp(x).sum(-1), torch.ones((), dtype=torch.float64), atol=1e-12) for x in lo
    )
    gap = max(float((a - b).abs().max()) for a, b in zip(hi, lo))
    assert 0 < gap < 0.5


def test_router_noise_flips_routing_and_margin_shapes():
    pol = MoEPolicy(MoEConfig(P=1, V=2, T=5, top_k=1, router_scale=0.3, seed=0))
    margins = pol.router_margin()
    assert [tuple(m.shape) for m in margins] == [(1, 2**k) for k in range(5)]
    for m, r in zip(margins, pol.router_logits()):  # top_k = 1: best minus second-best router logit
        top2 = torch.topk(r.detach(), 2, dim=-1).values
        assert torch.equal(m, top2[..., 0] - top2[..., 1]) and bool((m > 0).all())
    clean = pol.log_prob_tree()
    same = pol.log_prob_tree(router_noise_std=0.0)
    assert all(torch.equal(a, b) for a, b in zip(clean, same))
    gen = torch.Generator().manual_seed(0)
    noisy = pol.log_prob_tree(router_noise_std=1.0, generator=gen)
    assert any(not torch.allclose(a, b) for a, b in zip(clean, noisy))
    full = MoEPolicy(MoEConfig(P=1, V=2, T=2, top_k=4, n_experts=4))
    assert all(torch.isinf(m).all() for m in full.router_margin())


def _moe_by_definition(pol: MoEPolicy, noise: list | None = None) -> list[torch.Tensor]:
    """The MoE's definition context by context: every expert evaluated, the top-k gathered,
    pi(.|c) = softmax(sum_j gate_j expert_{e_j}(h)); EOS rows absorbed as the policies do."""
    from trm_bounds.policies import after_eos

    c = pol.config
    out = []
    with torch.no_grad():
        for k, h in enumerate(pol._encodings(torch.float64)):
            rows = []
            for p in range(c.P):
                lvl = []
                for i in range(h.shape[1]):
                    x = h[p, i]
                    r = pol.router @ x + (0.0 if noise is None else noise[k][p, i])
                    top, idx = torch.topk(r, c.top_k)
                    gate = torch.softmax(top, 0)
                    experts = [pol.w2[e].T @ torch.tanh(pol.w1[e].T @ x + pol.b1[e]) + pol.b2[e] for e in idx]
                    z = sum(g * ze for g, ze in zip(gate, experts))
                    lp = torch.log_softmax(z, 0)
                    if c.eos is not None and k > 0 and bool(after_eos(k, c.V, c.eos)[i]):
                        lp = torch.full_like(lp, float("-inf"))
                        lp[c.eos] = 0.0
                    lvl.append(lp)
                rows.append(torch.stack(lvl))
            out.append(torch.stack(rows))
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        dict(P=2, V=3, T=3, top_k=2, seed=1),
        dict(P=1, V=4, T=4, top_k=1, n_experts=4, router_scale=0.5, eos=0, seed=2),
        dict(P=3, V=2, T=1, top_k=3, n_experts=3, seed=3),  # T = 1, every expert used
        dict(P=2, V=2, T=3, top_k=2, init_std=8.0, seed=4),  # near-deterministic experts
    ],
)
def test_moe_tree_is_its_definition_with_and_without_router_noise(cfg):
    """The batched forward (chosen experts only, level-major rows) equals the per-context
    definition to rounding; router noise is drawn level by level, (P, V**(t-1), E) each. The
    output biases start at 0: they are drawn here, so that each expert's own b2 must be used."""
    pol = MoEPolicy(MoEConfig(**cfg))
    with torch.no_grad():
        pol.b2.copy_(
            torch.randn(pol.b2.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
        )
    for got, want in zip(pol.log_prob_tree(), _moe_by_definition(pol)):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    c = pol.config
    gen = torch.Generator().manual_seed(5)
    noise = [
        torch.randn((c.P, c.V**k, c.n_experts), generator=gen, dtype=torch.float64) * 0.7 for k in range(c.T)
    ]
    noisy = pol.log_prob_tree(router_noise_std=0.7, generator=torch.Generator().manual_seed(5))
    for got, want in zip(noisy, _moe_by_definition(pol, noise)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)


def test_moe_gradients_reach_every_parameter_that_is_used():
    pol = MoEPolicy(MoEConfig(P=2, V=3, T=3, top_k=2, seed=1))
    levels = pol.log_prob_tree()
    sum((lv.exp() * torch.arange(3.0, dtype=torch.float64)).sum() for lv in levels).backward()
    for name, p in pol.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().max()) > 0, name
    # the gradient of the batched forward is the definition's (finite differences, one weight)
    w = pol.w2
    with torch.no_grad():
        base = sum((lv.exp() * torch.arange(3.0, dtype=torch.float64)).sum() for lv in pol.log_prob_tree())
        w[0, 0, 1] += 1e-6
        bumped = sum((lv.exp() * torch.arange(3.0, dtype=torch.float64)).sum() for lv in pol.log_prob_tree())
        w[0, 0, 1] -= 1e-6
    assert float(w.grad[0, 0, 1]) == pytest.approx(float(bumped - base) / 1e-6, rel=1e-4, abs=1e-9)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TabularPolicy(1, 1, 3), "V"),
        (lambda: TabularPolicy(1, 2, 0), "T"),
        (lambda: TabularPolicy(1, 2, 3, eos=5), "eos"),
        (lambda: TransformerConfig(P=1, V=2, T=3, d_model=5, n_heads=2), "divisible"),
        (lambda: MoEConfig(P=1, V=2, T=3, top_k=5, n_experts=4), "top_k"),
        (lambda: TabularPolicy(1, 2, 40), "exceeds"),
    ],
)
def test_bad_configs_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_eos_rows_are_made_once_and_left_untouched():
    """absorb_eos reuses one (after-EOS mask, absorbed row) per level shape (a training step asks
    for the same ones every forward) and never writes into them."""
    from trm_bounds.policies import _eos_rows, absorb_eos, after_eos

    _eos_rows.cache_clear()
    logp = torch.log_softmax(torch.randn((2, 9, 3), dtype=torch.float64), -1)
    first = absorb_eos(logp, 2, 1)
    done, absorbed = _eos_rows(2, 3, 1, logp.device, logp.dtype)
    again = absorb_eos(logp.clone(), 2, 1)
    assert _eos_rows.cache_info().misses == 1 and _eos_rows.cache_info().hits >= 2
    assert torch.equal(first, again)
    assert torch.equal(done[0, :, 0], after_eos(2, 3, 1))
    assert torch.equal(absorbed, torch.tensor([-math.inf, 0.0, -math.inf], dtype=torch.float64))
    rows = after_eos(2, 3, 1)
    assert torch.equal(first[:, rows], absorbed.expand(2, int(rows.sum()), 3))
    assert torch.equal(first[:, ~rows], logp[:, ~rows])
