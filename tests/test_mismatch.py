"""Tests for trm_bounds/mismatch.py: the one registry (every mechanism on every target, or the clear
error), old spellings with their note, spec parsing, pi_roll of each engine mechanism against a direct
twin, the CLI spelling on `exact` and `train`, the one policy builder, and numbers pinned at the
commit before the rename."""

from __future__ import annotations

import copy
import warnings

import numpy as np
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


# --------------------------------------------------------------------------- parsing (engine)
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("none", Mismatch()),
        ("precision", Mismatch(precision="bf16")),
        ("precision=fp16", Mismatch(precision="fp16")),
        ("moe", Mismatch(router_noise_std=MISMATCH_MECHANISMS["moe"].default)),
        ("moe=0.05", Mismatch(router_noise_std=0.05)),
        ("lag=3", Mismatch(staleness=3)),
        ("moe=0.1+precision=fp16+lag=2", Mismatch("fp16", 0.1, 2)),
        (" lag + moe=0 ", Mismatch(staleness=1)),  # moe=0 is off
    ],
)
def test_parse_mismatch_examples(spec, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spellings warn about nothing
        assert parse_mismatch(spec) == expected


def test_parse_mismatch_takes_strength_separately():
    assert parse_mismatch("moe+precision+lag", "0.1+fp16+2") == Mismatch("fp16", 0.1, 2)
    assert parse_mismatch("moe", 0.2) == Mismatch(router_noise_std=0.2)
    assert parse_mismatch("lag", None) == Mismatch(staleness=1)


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
        n for n, on in (("precision", precision), ("moe", m.router_noise_std), ("lag", k)) if on
    }


@pytest.mark.parametrize(
    "spec, match",
    [
        (
            "bogus",
            "unknown mechanism 'bogus'.*known for the trainer's rollout engine.*: precision, moe, lag, none",
        ),
        ("moe+moe=0.2", "given twice"),
        ("moe=abc", "'moe': strength 'abc' is not a number"),
        ("moe=-1", "'moe': strength must be finite and >= 0"),
        ("moe=inf", "'moe': strength must be finite"),
        ("lag=1.5", "'lag': strength is a number of steps, an integer >= 0"),
        ("lag=-1", "'lag': strength must be finite and >= 0"),
        ("precision=fp8", "'precision': strength must be one of bf16, fp16"),
        ("dense", "'dense' does not apply to the trainer's rollout engine.*applies to tree, chain"),
        ("", "non-empty"),
    ],
)
def test_parse_mismatch_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_mismatch(spec)


def test_parse_mismatch_strength_count_errors():
    with pytest.raises(ValueError, match="one per mechanism"):
        parse_mismatch("moe+lag", "0.1")
    with pytest.raises(ValueError, match="strength given twice"):
        parse_mismatch("moe=0.1", "0.2")
    with pytest.raises(ValueError, match="takes no strength"):
        parse_mismatch("none", "1")


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
    eng = RolloutEngine(f"lag={k}")
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
        RolloutEngine("lag=1").log_prob_tree(TabularPolicy(1, 2, 2))


# --------------------------------------------------------------------------- the one registry
from trm_bounds import chain as ch  # noqa: E402
from trm_bounds import pair as pr  # noqa: E402
from trm_bounds.mismatch import MISMATCH_TARGETS, mismatch_table, resolve_mismatch  # noqa: E402
from trm_bounds.pair import make_pair  # noqa: E402

THEORY_SOURCES = {"backend numerics", "MoE routing flips", "staleness"}  # THEORY.md section 8


def test_registry_one_spelling_per_mechanism():
    names = set(MISMATCH_MECHANISMS)
    olds = [(t, o) for m in MISMATCH_MECHANISMS.values() for t, o in m.old.items()]
    assert len(olds) == len(set(olds))  # an old spelling means one mechanism per target
    assert not names & {o for _, o in olds}  # no new name is an old spelling anywhere
    for name, m in MISMATCH_MECHANISMS.items():
        assert m.name == name and m.simulates in THEORY_SOURCES and m.targets, name
        assert set(m.old) <= set(m.targets), name  # an old spelling only where it applied
        assert m.check(name, m.default) == m.default, name  # the default is a valid strength
    assert [r["name"] for r in mismatch_table()] == list(MISMATCH_MECHANISMS)


def _tree_policy(name, seed=3):
    if name == "moe":
        return MoEPolicy(MoEConfig(P=2, V=3, T=3, eos=0, seed=seed, router_scale=0.3))
    return TabularPolicy(2, 3, 3, eos=0, seed=seed)


def _tree(name, strength=None, seed=3):
    from trm_bounds.rewards import make_reward

    reward = make_reward("random", 2, 3, 3, seed=seed, eos=0)
    return make_pair(_tree_policy(name, seed), name, strength, reward=reward, seed=seed)


def _chain(name, strength=None, seed=3):
    return ch.random_chain_pair(ch.last_k_transition(3, 2), name, strength, 6, seed=seed)


def _engine(name, strength=None):
    return parse_mismatch(name, strength)


APPLY = {"tree": _tree, "chain": _chain, "engine": _engine}
CASES = [(n, t) for n in MISMATCH_MECHANISMS for t in MISMATCH_TARGETS]


@pytest.mark.parametrize("name, target", CASES)
def test_every_mechanism_on_every_target_applies_or_says_so(name, target):
    mech = MISMATCH_MECHANISMS[name]
    if not mech.applies_to(target):
        with pytest.raises(
            ValueError, match=f"mismatch '{name}' does not apply to .*{MISMATCH_TARGETS[target][:12]}"
        ):
            APPLY[target](name)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new spelling gives no note
        out = APPLY[target](name)
    if target == "tree":
        assert out.validate() == (2, 3, 3)
        gap = max(float(token_kl(r, t).max()) for r, t in zip(out.logp_roll, out.logp_theta))
        assert gap > 0, f"{name}: default strength changes nothing"
    elif target == "chain":
        assert out.logp_theta.shape == (9, 3)
        assert not np.array_equal(out.logp_roll, out.logp_theta), name
    else:
        assert out.active == (name,)


@pytest.mark.parametrize("name", [n for n, m in MISMATCH_MECHANISMS.items() if m.chain is not None])
def test_chain_mechanisms_at_strength_zero_change_nothing(name):
    p = _chain(name, 0.0)
    np.testing.assert_allclose(np.exp(p.logp_theta), np.exp(p.logp_roll), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["dense", "reverse", "swap", "step"])
def test_tree_mechanisms_at_strength_zero_change_nothing(name):
    p = _tree(name, 0.0)
    for r, t in zip(p.logp_roll, p.logp_theta):  # dense renormalises: equal up to rounding
        torch.testing.assert_close(torch.exp(r), torch.exp(t), rtol=0, atol=1e-15)


def test_tree_swap_against_a_loop_twin():
    """Every context either keeps pi_theta or swaps exactly its two most likely tokens."""
    p = _tree("swap", 0.5, seed=8)
    n_swapped = 0
    for t, (r, th) in enumerate(zip(p.logp_roll, p.logp_theta)):
        for x in range(r.shape[0]):
            for c in range(r.shape[1]):
                a, b = r[x, c].tolist(), th[x, c].tolist()
                if a == b:
                    continue
                i, j = sorted(range(3), key=lambda v: -b[v])[:2]
                b[i], b[j] = b[j], b[i]
                assert a == b, (t, x, c)
                n_swapped += 1
    assert n_swapped > 0


def test_chain_reverse_against_a_loop_twin():
    p = _chain("reverse", 0.5, seed=8)
    lr, lt = p.logp_roll, p.logp_theta
    flipped = [s for s in range(lr.shape[0]) if not np.array_equal(lr[s], lt[s])]
    assert flipped
    for s in flipped:
        np.testing.assert_allclose(lt[s], lr[s][::-1], rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: _tree("reverse", 1.5), "'reverse': strength is a fraction of contexts and must be <= 1"),
        (lambda: _tree("dense", -0.1), "'dense': strength must be finite and >= 0"),
        (lambda: _tree("precision", "fp8"), "'precision': strength must be one of bf16, fp16"),
        (lambda: _tree("dense+swap"), "one mechanism at a time"),
        (lambda: _tree("none"), "'none' applies only to the trainer's rollout engine"),
        (
            lambda: _chain("bogus"),
            "unknown mechanism 'bogus'; known for a finite-state chain.*dense, reverse, swap, drift",
        ),
        (
            lambda: make_pair(TabularPolicy(1, 2, 2), "moe", 0.1, reward=np.zeros((1, 4))),
            "needs an MoE policy",
        ),
        (lambda: resolve_mismatch("dense", target="gpu"), "target must be one of tree, chain, engine"),
    ],
)
def test_mismatch_errors_name_the_mechanism(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- old spellings
def _same_pair(a, b):
    for x, y in zip(a.logp_roll + a.logp_theta, b.logp_roll + b.logp_theta):
        assert torch.equal(x, y)


@pytest.mark.parametrize("old, new", [("sparse", "reverse"), ("staleness", "step")])
def test_old_tree_spellings_warn_and_give_the_same_pair(old, new):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is the old spelling of '{new}'"):
        a = _tree(old, 0.4)
    _same_pair(a, _tree(new, 0.4))


@pytest.mark.parametrize("old, new", [("sparse", "swap"), ("stale", "drift")])
def test_old_chain_spellings_warn_and_give_the_same_pair(old, new):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is the old spelling of '{new}'"):
        a = _chain(old, 0.4)
    b = _chain(new, 0.4)
    np.testing.assert_array_equal(a.logp_theta, b.logp_theta)


def test_old_engine_spelling_and_old_precision_strength_warn():
    with pytest.warns(DeprecationWarning, match="'stale' is the old spelling of 'lag'"):
        assert parse_mismatch("moe=0.1+stale=2") == parse_mismatch("moe=0.1+lag=2")
    for s, dtype in ((0.0, "bf16"), (0.7, "fp16")):  # make_pair's old numeric precision knob
        with pytest.warns(
            DeprecationWarning, match=f"numeric strength {s!r} is the old spelling of '{dtype}'"
        ):
            a = _tree("precision", s)
        _same_pair(a, _tree("precision", dtype))


def test_views_iterate_new_names_and_look_up_old_ones_with_a_warning():
    assert list(pr.MISMATCHES) == ["dense", "reverse", "swap", "precision", "moe", "step"]
    assert list(ch.MISMATCHES) == ["dense", "reverse", "swap", "drift"]
    assert "sparse" in pr.MISMATCHES and "stale" in ch.MISMATCHES and "lag" not in ch.MISMATCHES
    with pytest.warns(DeprecationWarning, match="'stale' is the old spelling of 'drift'"):
        assert ch.MISMATCHES["stale"] is ch.MISMATCHES["drift"]
    with pytest.warns(DeprecationWarning, match="'sparse' is the old spelling of 'reverse'"):
        assert pr.MISMATCHES["sparse"] == pr.MISMATCHES["reverse"]
    with pytest.raises(KeyError):
        pr.MISMATCHES["lag"]
    assert MISMATCH_MECHANISMS["moe"].knob == "router_noise_std" and MISMATCH_MECHANISMS["dense"].knob is None


# --------------------------------------------------------------------------- numbers before the rename
def _weighted(x) -> float:
    """sum_i w_i x_i over the finite entries, w_i = 1 + i/n (order-sensitive, unlike a plain sum)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    w = 1.0 + np.arange(x.size) / x.size
    return float(np.sum(np.where(np.isfinite(x), x, 0.0) * w))


def _transformer_pair(name, strength):
    from trm_bounds.policies import TransformerConfig, TransformerPolicy
    from trm_bounds.rewards import make_reward

    pol = TransformerPolicy(TransformerConfig(P=2, V=3, T=3, eos=0, seed=4))
    return make_pair(pol, name, strength, reward=make_reward("random", 2, 3, 3, seed=4, eos=0), seed=4)


# Computed at commit 8254563 (before the one vocabulary) with the old spellings in the comments.
PINNED_TREE = [
    ("dense", 0.3, "roll", [-13.988514545157226, -39.845146805486934, -79.65945965186485]),
    ("reverse", 0.2, "roll", [-14.265329843431577, -40.38392734528782, -78.71754761125801]),  # sparse
    ("step", 0.5, "theta", [-16.77400255908374, -39.42226161157643, -79.19781371552831]),  # staleness
    ("precision", "fp16", "roll", [-14.26814045135678, -40.37975909257135, -78.65928624071023]),  # S = 0.7
]


@pytest.mark.parametrize("name, strength, side, expected", PINNED_TREE)
def test_tree_numbers_equal_those_before_the_rename(name, strength, side, expected):
    p = _transformer_pair(name, strength)
    got = [_weighted(x) for x in getattr(p, f"logp_{side}")]
    assert got == pytest.approx(expected, rel=1e-12, abs=0)


def test_moe_tree_and_chain_numbers_equal_those_before_the_rename():
    from trm_bounds.rewards import make_reward

    pol = MoEPolicy(MoEConfig(P=1, V=3, T=4, eos=None, seed=2, router_scale=0.3))
    p = make_pair(pol, "moe", 0.3, reward=make_reward("random", 1, 3, 4, seed=2), seed=2)
    assert _weighted(p.logp_roll[3]) == pytest.approx(-235.25287349053193, rel=1e-12, abs=0)
    tr = ch.last_k_transition(3, 2)
    for name, level, expected in (("swap", 0.3, -60.90314959176112), ("drift", 0.1, -60.17587192175028)):
        c = ch.random_chain_pair(tr, name, level, 7, seed=11)  # old: sparse, stale
        assert _weighted(c.logp_theta) == pytest.approx(expected, rel=1e-13, abs=0), name
        rng = np.random.default_rng(5)
        logits = rng.standard_normal((4, 3))
        fn = {"swap": -0.15727002372902366, "drift": 0.0346004754468372}[name]
        assert _weighted(ch.MISMATCHES[name](logits, level, rng)) == pytest.approx(fn, rel=1e-13, abs=1e-15)


def test_training_with_lag_rolls_out_the_policy_lag_steps_old_and_is_pinned():
    """lag=2: step s rolls out the parameters of step max(1, s - 2) (J_roll = that step's J_old,
    to rounding), and the run is pinned. The pin was first taken under the old spelling
    "stale=2"; it was taken again (2026-12-01) when the trainer came to draw its whole batch
    with one draw per level, which changed the random stream."""
    from trm_bounds.trainer import TrainConfig, train

    cfg = TrainConfig(
        method="trm-max",
        mismatch="lag=2",
        P=2,
        V=3,
        T=3,
        steps=5,
        n_groups=2,
        group_size=4,
        seed=1,
        advantage_groups="all",  # the pinned run predates baselines over kept samples
    )
    steps = train(cfg).steps
    for s in steps:
        src = steps[max(0, s["step"] - 1 - 2)]
        assert s["lag"] == min(2, s["step"] - 1)
        assert s["J_roll"] == pytest.approx(src["J_old"], rel=1e-13, abs=0), s["step"]
    got = [steps[2][k] for k in ("J_roll", "J_new", "surrogate", "delta")]
    expected = [0.325853029077975, 0.42803556700641004, 0.13810740378044148, 1.5485253659988703]
    assert got == pytest.approx(expected, rel=1e-10, abs=0)


# --------------------------------------------------------------------------- one policy builder
def test_exact_and_train_build_the_same_moe_for_the_same_seed():
    import argparse

    from trm_bounds.commands.exact import build_pair
    from trm_bounds.trainer import TrainConfig, build_policy

    args = argparse.Namespace(
        policy="moe", P=2, V=3, T=3, eos=0, mismatch="dense", strength="0.1", reward="match", seed=5
    )
    theta = build_pair(args).logp_theta  # dense perturbs pi_roll only: theta is the built policy
    cfg = TrainConfig(policy="moe", mismatch="none", P=2, V=3, T=3, eos=0, seed=5)
    twin = build_policy(cfg).log_prob_tree()
    assert len(theta) == len(twin) == 3
    for a, b in zip(theta, twin):
        assert torch.equal(a, b.detach())
    assert build_policy(cfg).config.router_scale == TrainConfig().router_scale


# --------------------------------------------------------------------------- CLI: one spelling
def _exact(capsys, *argv):
    from trm_bounds.cli import main

    code = main(["exact", "--policy", "tabular", "--V", "2", "--T", "4", "--seed", "2", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exact_old_spelling_prints_one_note_and_the_same_numbers(capsys):
    import json

    code, old, err = _exact(capsys, "--mismatch", "sparse", "--strength", "0.3")
    assert code == 0 and err.strip() == (
        "trm-bounds exact: note: mismatch 'sparse' is the old spelling of 'reverse'; use 'reverse'"
    )
    code, new, err = _exact(capsys, "--mismatch", "reverse", "--strength", "0.3")
    assert code == 0 and err == ""
    old, new = json.loads(old), json.loads(new)
    assert old == new and new["generated"]["mismatch"] == "reverse" and new["error"] != 0


def test_cli_exact_strength_defaults_to_the_mechanism_default(capsys):
    import json

    code, out, _ = _exact(capsys, "--mismatch", "precision")
    assert code == 0 and json.loads(out)["generated"]["strength"] == "bf16"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--mismatch", "lag"], "'lag' does not apply to a policy pair on the tree"),
        (["--mismatch", "reverse", "--strength", "2"], "fraction of contexts and must be <= 1"),
    ],
)
def test_cli_exact_mismatch_errors_exit_2_one_line(capsys, argv, needle):
    code, out, err = _exact(capsys, *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("command", ["exact", "train"])
def test_cli_lists_the_mechanisms(capsys, command):
    from trm_bounds.cli import main

    assert main([command, "--list-mismatch"]) == 0
    out = capsys.readouterr().out
    for m in MISMATCH_MECHANISMS.values():
        assert f"{m.name}: {m.description}" in out and f"default {m.default}" in out
    assert "old spellings: sparse (tree)" in out and "stale (engine)" in out


def test_cli_help_points_to_an_existing_listing(capsys):
    from trm_bounds.cli import main

    for command in ("exact", "train"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "--list-mismatch" in text and "--help-mismatch" not in text


def test_cli_train_new_and_old_spellings_agree(tmp_path, capsys):
    import json

    from trm_bounds.cli import main

    base = ["train", "--steps", "2", "--P", "2", "--V", "3", "--T", "3", "--n-groups", "2",
            "--group-size", "4", "--no-progress"]  # fmt: skip
    runs = {
        "old": ["--mismatch", "moe=0.1+stale=1"],
        "new": ["--mismatch", "moe+lag", "--strength", "0.1+1"],
    }
    logs, errs = {}, {}
    for key, extra in runs.items():
        assert main([*base, "--out", str(tmp_path / key), *extra]) == 0
        errs[key] = capsys.readouterr().err
        logs[key] = (tmp_path / key / "steps.jsonl").read_text()
        assert json.loads((tmp_path / key / "config.json").read_text())["mismatch"] == "moe=0.1+lag=1"
    assert logs["old"] == logs["new"]
    assert errs["new"] == ""
    assert errs["old"].strip() == (
        "trm-bounds train: note: --mismatch moe=0.1+stale=1 is the old spelling; "
        "use --mismatch moe+lag --strength 0.1+1"
    )
    assert main([*base, "--out", str(tmp_path / "bad"), "--mismatch", "dense"]) == 2
    assert "'dense' does not apply to the trainer's rollout engine" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
