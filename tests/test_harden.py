"""Issue 11 (input part): every silent wrong answer, traceback and blow-up found, pinned.

Each test names the input that once gave a wrong number, a raw traceback or a blow-up, and
asserts the clean error (ValueError/TypeError naming the argument; CLI exit 2 with one line)
or the correct value.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import torch
from _fuzz import pair_arrays, write_examples

from trm_bounds import bounds as B
from trm_bounds._outdir import check_target
from trm_bounds._resources import available_bytes, check_memory, format_bytes
from trm_bounds._validate import check_horizon, check_output_file, read_npy, read_npz
from trm_bounds.cli import main


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_exit_2(capsys, *argv, match: str):
    code, out, err = cli(capsys, *argv)
    assert code == 2, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- bounds API
def test_coupling_cap_position_sentinel_instead_of_int64_overflow():
    big = np.iinfo(np.int64).max
    assert B.coupling_cap_position(0.0) == big  # was -9223372036854775808
    assert B.coupling_cap_position(1e-300) == big
    assert B.coupling_cap_position(0.3) == 5  # ceil(1/0.3) + 1
    assert B.coupling_cap_position(0.25) == 5  # 1/eps an integer: ceil(4) + 1
    assert B.coupling_cap_position(2.0**-52) == 2**52 + 1  # still below the sentinel's 2**53
    np.testing.assert_array_equal(B.coupling_cap_position([0.0, 0.5]), [big, 3])


def test_adaptive_closed_forms_are_never_nan():
    assert B.adaptive_worst_case_sum(10, 0.0) == 0.0  # every term min(1, 0) = 0 (was NaN)
    assert B.adaptive_worst_case_sum(10, math.inf) == 10.0  # every capped term is 1
    assert B.adaptive_crossover(0.0, 0.0) == math.inf  # both routes 0: the TV route is never larger
    assert B.adaptive_crossover(0.0, 0.1) == math.inf
    assert B.adaptive_crossover(0.1, 0.02) == pytest.approx(1.0)


def test_ln_trm_score_inf_ratio_at_zero_weight_adds_nothing():
    w = B.ln_trm_weights(3, 0.1, 0.1)
    assert w[-1] == 0.0
    got = B.ln_trm_score([1.0, 1.0, math.inf], 0.1, 0.1)  # was NaN (inf * 0)
    assert got == 0.0
    assert B.ln_trm_score([math.inf, 1.0, 1.0], 0.1, 0.1) == math.inf  # a weighted position: inf
    with pytest.raises(ValueError, match="rho"):
        B.ln_trm_score([math.nan, 1.0], 0.1, 0.1)


@pytest.mark.parametrize("T", [2**63, 1e20, 2**53 + 1, math.inf, math.nan, 0, 2.5, None, "10"])
def test_bad_horizons_are_refused_by_name(T):
    with pytest.raises(ValueError, match="^T"):
        B.pm_kl(T, 1e-4)


def test_largest_horizon_is_exact():
    assert check_horizon(2**53) == 2**53
    assert np.isfinite(B.pm_kl(2**53, 1e-30))


def test_bounds_read_tensors_that_require_grad():
    T = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(1e-4, dtype=torch.float64, requires_grad=True)
    assert B.pm_kl(T, d) == B.pm_kl(10, 1e-4)
    b = B.BoundInputs.from_partial(T, d)
    assert b.T == 10 and b.delta == 1e-4


def test_size_one_arrays_are_single_values_and_larger_ones_are_refused():
    b = B.BoundInputs.from_partial(np.array([10]), np.array([1e-3]), eps=np.array([[0.01]]))
    assert (b.T, b.delta, b.eps) == (10, 1e-3, 0.01)
    with pytest.raises(ValueError, match="T must be a single number"):
        B.BoundInputs.from_partial(np.array([10, 11]), 1e-3)
    with pytest.raises(ValueError, match="delta must be a single number"):
        B.BoundInputs.from_partial(10, [1e-3, 2e-3])


def test_evaluate_bounds_takes_one_name_as_a_string():
    b = B.BoundInputs.from_partial(16, 1e-3)
    assert B.evaluate_bounds(b, names="pm_kl") == {"pm_kl": B.evaluate_bounds(b)["pm_kl"]}
    with pytest.raises(ValueError, match="unknown bound 'nope'"):
        B.evaluate_bounds(b, names=["nope"])
    with pytest.raises(TypeError, match="names"):
        B.evaluate_bounds(b, names=[1])
    with pytest.raises(TypeError, match="inputs must be a BoundInputs"):
        B.evaluate_bounds({"T": 16})


# --------------------------------------------------------------------------- long horizons: O(1) memory
@pytest.mark.parametrize("T", [1, 2, 7, 300, 4097])
@pytest.mark.parametrize("eps, delta", [(0.0, 0.0), (1e-3, 1e-4), (0.2, 0.01), (1.0, math.inf), (1e-9, 5.0)])
def test_uniform_dbar_closed_forms_equal_the_per_t_sums(T, eps, delta):
    d = 0.37 * eps
    u, full = B.uniform_dbar(T, d), np.full(T, d)
    assert u.strides == (0,) and u.shape == (T,)
    for f, args in ((B.adaptive_kl, (delta,)), (B.adaptive_tv, (eps,)), (B.adaptive_star, (eps, delta))):
        want, got = f(full, *args), f(u, *args)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-300), f.__name__
    assert B.linear_dbar(u) == pytest.approx(B.linear_dbar(full), rel=1e-12, abs=1e-300)


def test_long_horizon_bounds_materialise_nothing():
    t0 = time.perf_counter()
    b = B.BoundInputs.from_partial(10**12, 1e-14)
    out = B.evaluate_bounds(b)
    assert time.perf_counter() - t0 < 5.0
    assert b.dbar.strides == (0,) and b.dbar_uniform == b.eps
    assert all(math.isfinite(v) for v in out.values())
    j = b.to_json()
    assert j["dbar"] == b.eps  # one number, not 10**12
    assert isinstance(b.to_json(full=True)["dbar"], list) if b.T < 10 else True


def test_to_json_full_lists_dbar_and_refuses_what_does_not_fit(monkeypatch):
    b = B.BoundInputs.from_partial(4, 0.02)
    assert b.to_json(full=True)["dbar"] == [b.eps] * 4
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", "1000")
    big = B.BoundInputs.from_partial(10**6, 1e-8)
    with pytest.raises(ValueError, match="T: listing dbar"):
        big.to_json(full=True)


def test_per_t_weights_are_refused_up_front_when_they_do_not_fit(monkeypatch):
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", str(10**6))
    with pytest.raises(ValueError, match="per-t weights of length T = 1000000000000"):
        B.ln_trm_weights(10**12, 0.1, 0.1)


def test_cli_bounds_long_horizon_is_fast_and_small(capsys):
    t0 = time.perf_counter()
    code, out, _ = cli(capsys, "bounds", "--T", "1e9", "--delta", "1e-4", "--json")
    assert code == 0 and time.perf_counter() - t0 < 5.0 and len(out) < 10_000


@pytest.mark.parametrize(
    "T, match",
    [
        ("inf", "T must be finite"),
        ("nan", "T contains NaN"),
        ("1e20", "T must be <= 2**53"),
        ("9007199254740993", "T must be <= 2**53"),
        ("2.5", "T must be an integer"),
        ("0", "T must be >= 1"),
    ],
)
def test_cli_bounds_bad_T_is_one_line(capsys, T, match):
    assert_one_line_exit_2(capsys, "bounds", "--T", T, "--delta", "1e-4", match=match)


# --------------------------------------------------------------------------- divergences
@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_torch_pinsker_refuses_like_numpy(bad):
    with pytest.raises(ValueError, match="kl"):
        B_pinsker(torch.tensor(bad))
    with pytest.raises(ValueError, match="kl"):
        B_pinsker(bad)


def B_pinsker(x):
    from trm_bounds.divergences import pinsker_tv

    return pinsker_tv(x)


def test_torch_pinsker_stays_differentiable():
    kl = torch.tensor(0.02, dtype=torch.float64, requires_grad=True)
    B_pinsker(kl).backward()
    assert kl.grad == pytest.approx(0.25 / math.sqrt(0.01))  # d/dkl sqrt(kl / 2) = 1 / (4 sqrt(kl / 2))


# --------------------------------------------------------------------------- files
def _loaders():
    from trm_bounds.certify import load_logprobs
    from trm_bounds.chain import ChainPair
    from trm_bounds.pair import PolicyPair

    return {"pair": PolicyPair.load, "chain": ChainPair.load, "logprobs": load_logprobs}


@pytest.mark.parametrize("loader", ["pair", "chain", "logprobs"])
@pytest.mark.parametrize("kind", ["truncated", "npy", "empty", "text", "pickled", "dir", "missing"])
def test_every_loader_turns_a_broken_file_into_one_error_naming_it(tmp_path, loader, kind):
    p = tmp_path / "f.npz"
    good = tmp_path / "good.npz"
    np.savez(good, a=np.ones(100), b=np.zeros(100))
    if kind == "truncated":
        p.write_bytes(good.read_bytes()[:150])
    elif kind == "npy":
        with open(p, "wb") as fh:
            np.save(fh, np.ones(3))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("hello\n")
    elif kind == "pickled":
        np.savez(p, o=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif kind == "dir":
        p.mkdir()
    with pytest.raises(ValueError, match=f"^{loader}: cannot read") as info:
        _loaders()[loader](p)
    if kind == "npy":
        assert "it is a .npy array, not an .npz archive" in str(info.value)


def test_npz_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "big.npz"
    np.savez(p, a=np.zeros(10_000))
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", "1000")
    with pytest.raises(ValueError, match="reading big.npz needs about"):
        read_npz(p, "pair")


def test_read_npy_refuses_npz_and_truncated(tmp_path):
    z = tmp_path / "d.npy"
    with open(z, "wb") as fh:
        np.savez(fh, d=np.ones(3))
    with pytest.raises(ValueError, match="dbar: cannot read .*an .npz archive"):
        read_npy(z, "dbar")
    t = tmp_path / "t.npy"
    np.save(t, np.ones(100))
    t.write_bytes(t.read_bytes()[:-50])
    with pytest.raises(ValueError, match="dbar: cannot read"):
        read_npy(t, "dbar")


def test_pair_file_with_a_level_gap_is_refused_not_shortened(tmp_path):
    from trm_bounds.pair import PolicyPair

    a = pair_arrays()
    gap = {k: v for k, v in a.items() if not k.endswith("_3")}
    gap["logp_roll_4"], gap["logp_theta_4"] = a["logp_roll_3"], a["logp_theta_3"]
    np.savez(tmp_path / "gap.npz", **gap)
    with pytest.raises(ValueError, match="logp_roll_3: missing level"):
        PolicyPair.load(tmp_path / "gap.npz")  # was read as T = 2
    np.savez(tmp_path / "zero.npz", **a, logp_roll_0=a["logp_roll_1"])
    with pytest.raises(ValueError, match="logp_roll_0: level numbers"):
        PolicyPair.load(tmp_path / "zero.npz")
    np.savez(tmp_path / "cplx.npz", **{**a, "reward": a["reward"].astype(complex)})
    with pytest.raises(ValueError, match="reward: must be a real numeric array"):
        PolicyPair.load(tmp_path / "cplx.npz")


# --------------------------------------------------------------------------- masks and certify
def test_masks_refuse_log_probs_above_zero():
    from trm_bounds.masks import trm_mask

    lp, rlp, m = np.array([[-0.5, 0.3]]), np.array([[-0.4, -0.2]]), np.ones((1, 2))
    with pytest.raises(ValueError, match=r"log_prob has log-probabilities > 0 .* first \(0, 1\)"):
        trm_mask(lp, rlp, m, max_threshold=0.1)
    with pytest.raises(ValueError, match="rollout_log_prob has log-probabilities > 0"):
        trm_mask(rlp, -lp, m, max_threshold=0.1)
    ok = trm_mask(np.array([[-0.5, 0.3]]), rlp, np.array([[1, 0]]), max_threshold=0.1)  # padding: ignored
    assert ok[1].tolist() == [True]


def test_split_log_ratio_is_exact_and_non_positive():
    from trm_bounds.masks.inputs import split_log_ratio

    lr = torch.tensor([-3.0, -0.0, 0.0, 1e-300, 2.5, -math.inf], dtype=torch.float64)
    lp, rlp = split_log_ratio(lr)
    assert (lp <= 0).all() and (rlp <= 0).all()
    assert torch.equal(lp - rlp, lr)


def test_trm_mask_with_no_time_steps_keeps_every_empty_row():
    from trm_bounds.masks import trm_mask

    z = np.zeros((3, 0))
    mask, keep, _ = trm_mask(z, z, z, mode="max+avg", max_threshold=0.1, avg_threshold=0.1)
    assert mask.shape == (3, 0) and keep.tolist() == [True] * 3


@pytest.mark.parametrize("bad", [math.inf, math.nan, 0.0, -1.0, "x"])
def test_loss_scale_factor_must_be_finite_and_positive(bad):
    from trm_bounds.masks import masked_policy_loss

    with pytest.raises(ValueError, match="loss_scale_factor"):
        masked_policy_loss(
            np.ones((2, 2)), np.ones((2, 2)), loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=bad
        )


@pytest.mark.parametrize("kind", ["masked_is", "weighted", "ppo_clip"])
def test_nan_log_prob_at_padding_gives_a_finite_gradient(kind):
    from trm_bounds.trainer import method_loss

    lp = torch.tensor([[-1.0, math.nan, -math.inf]], dtype=torch.float64, requires_grad=True)
    rlp = torch.tensor([[-1.1, -math.inf, -math.inf]], dtype=torch.float64)
    m = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    loss = method_loss(kind, lp, rlp, torch.ones(1, dtype=torch.float64), m, m, torch.ones_like(m))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all()
    assert lp.grad[0, 1:].tolist() == [0.0, 0.0] and lp.grad[0, 0] != 0


def test_certify_refuses_an_empty_batch_and_a_bad_method():
    from trm_bounds.certify import certify, sample_certificate

    lp, rlp = np.array([[-0.5, -0.2]]), np.array([[-0.4, -0.3]])
    with pytest.raises(ValueError, match="empty batch"):
        certify(lp, rlp, np.zeros((1, 2)), delta=0.1)
    with pytest.raises(ValueError, match="empty batch"):
        sample_certificate(lp, rlp, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="method must be one of"):
        sample_certificate(lp, rlp, np.ones((1, 2)), method="x")


# --------------------------------------------------------------------------- CLI: exact
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("harden")
    write_examples(d)
    return d


@pytest.mark.parametrize(
    "extra, match",
    [
        (("--mask", "max", "--mask-delta", "0.1"), "mask: --mask does not apply to --chain"),
        (("--mask-delta", "0.1"), "mask_delta: --mask-delta does not apply to --chain"),
        (("--baseline", "0.5"), "baseline: --baseline does not apply to --chain"),
        (("--future-tv",), "future_tv: --future-tv does not apply to --chain"),
        (("--V", "3"), "V: --V does not apply to --chain"),
        (("--T", "1000000000"), "T = 1000000000 exceeds the chain engine's"),
    ],
)
def test_exact_chain_refuses_what_it_would_ignore(capsys, files, extra, match):
    assert_one_line_exit_2(capsys, "exact", "--chain", files / "chain.npz", *extra, match=match)


def test_exact_pair_refuses_ignored_options_and_half_masks(capsys, files):
    p = files / "pair.npz"
    assert_one_line_exit_2(capsys, "exact", "--pair", p, "--T", "3", match="T: --T does not apply to --pair")
    assert_one_line_exit_2(capsys, "exact", "--pair", p, "--mask-delta", "0.1", match="without --mask")
    assert_one_line_exit_2(
        capsys, "exact", "--pair", p, "--mask", "max", match="--mask max needs --mask-delta"
    )
    code, out, _ = cli(capsys, "exact", "--pair", p, "--mask", "max", "--mask-delta", "0.1")
    assert code == 0 and '"acceptance"' in out


@pytest.mark.parametrize("device", ["bogus", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_exact_device_is_checked_first(capsys, files, device):
    assert_one_line_exit_2(capsys, "exact", "--pair", files / "pair.npz", "--device", device, match="device")
    assert_one_line_exit_2(
        capsys, "exact", "--chain", files / "chain.npz", "--device", device, match="device"
    )


def test_exact_tree_too_large_is_refused_in_milliseconds(capsys):
    t0 = time.perf_counter()
    line = assert_one_line_exit_2(
        capsys, "exact", "--policy", "tabular", "--V", "2", "--T", "26", match="T: P * V**T"
    )
    assert time.perf_counter() - t0 < 5.0 and "GiB" in line


def test_exact_tree_memory_estimate_is_checked(capsys, monkeypatch):
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", str(10**5))  # 2**10 leaves x 160 B > 80% of it
    assert_one_line_exit_2(capsys, "exact", "--policy", "tabular", "--T", "10", match="needs about")


def test_output_paths_are_checked_before_any_work(capsys, files, tmp_path):
    under_file = files / "a_file" / "x"
    for target, match in (
        (f"{under_file}.npz", "save_pair: cannot write"),
        (tmp_path / "no" / "x.npz", "not exist"),
    ):
        argv = ("exact", "--policy", "tabular", "--T", "3", "--save-pair", target)
        assert_one_line_exit_2(capsys, *argv, match=match)
    for cmd in (("train", "--steps", "1", "--no-progress"), ("table",), ("audit",), ("plot-scaling",)):
        t0 = time.perf_counter()
        assert_one_line_exit_2(capsys, cmd[0], "--out", under_file, *cmd[1:], match="out:")
        assert_one_line_exit_2(capsys, cmd[0], "--out", files / "a_file", *cmd[1:], match="out:")
        assert time.perf_counter() - t0 < 5.0, cmd
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="out:"):
            check_target(ro / "run", "out")
        with pytest.raises(ValueError, match="save_pair: cannot write"):
            check_output_file(ro / "x.npz", "save_pair")
    finally:
        ro.chmod(0o755)


def test_internal_errors_are_one_line_exit_1(capsys, monkeypatch):
    import trm_bounds.commands.bounds as cmd

    def boom(args):
        raise KeyError("oops")

    monkeypatch.setattr(cmd, "run", boom)
    code, _, err = cli(capsys, "bounds", "--T", "4", "--delta", "0.1")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "internal error (KeyError" in err and "TRM_BOUNDS_DEBUG=1" in err
    monkeypatch.setenv("TRM_BOUNDS_DEBUG", "1")
    code, _, err = cli(capsys, "bounds", "--T", "4", "--delta", "0.1")
    assert code == 1 and "Traceback" in err


# --------------------------------------------------------------------------- resources
def test_available_bytes_and_the_override(monkeypatch):
    monkeypatch.delenv("TRM_BOUNDS_MAX_BYTES", raising=False)
    n = available_bytes()
    assert n is None or n > 0
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", "2e9")
    assert available_bytes() == 2 * 10**9
    with pytest.raises(
        ValueError, match=r"x: the thing needs about 1.86 GiB of memory, more than 80% of the 1.86 GiB"
    ):
        check_memory("x", 2e9, "the thing")
    check_memory("x", 1e9, "the thing")  # fits
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="TRM_BOUNDS_MAX_BYTES"):
        available_bytes()
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**30) == "3 GiB"


def test_small_estimates_skip_the_meminfo_read_unless_overridden(monkeypatch):
    """Below SMALL no free-memory read happens (hot loops); with the override the check still applies."""
    import trm_bounds._resources as res

    calls = []
    monkeypatch.delenv("TRM_BOUNDS_MAX_BYTES", raising=False)
    monkeypatch.setattr(res, "available_bytes", lambda: calls.append(1) or 0)
    res.check_memory("x", res.SMALL - 1, "a small array")
    assert calls == []
    with pytest.raises(ValueError, match="^x: a large array needs about"):
        res.check_memory("x", res.SMALL, "a large array")
    assert calls == [1]
    monkeypatch.undo()
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", "1000")
    with pytest.raises(ValueError, match="^y: "):
        check_memory("y", 2000, "a tiny array")


def test_available_bytes_reuses_a_reading_for_half_a_second(monkeypatch):
    """The system is read when the last reading is older than _SYSTEM_TTL (0.5 s), reused until then;
    the smallest known figure wins, None when nothing is known; the override 0 is a valid figure."""
    import trm_bounds._resources as res

    monkeypatch.delenv("TRM_BOUNDS_MAX_BYTES", raising=False)
    monkeypatch.setattr(res, "_SYSTEM", [-1e9, None])
    reads, clock = [], [100.0]
    figures = {"mem": 7000, "cg": 5000, "rl": None}
    monkeypatch.setattr(res, "_meminfo_available", lambda: reads.append(1) or figures["mem"])
    monkeypatch.setattr(res, "_cgroup_free", lambda: figures["cg"])
    monkeypatch.setattr(res, "_rlimit_free", lambda: figures["rl"])
    monkeypatch.setattr(res.time, "monotonic", lambda: clock[0])
    assert res.available_bytes() == 5000 and len(reads) == 1
    figures["cg"] = 3000
    clock[0] = 100.5  # exactly the TTL later: still the old reading
    assert res.available_bytes() == 5000 and len(reads) == 1
    clock[0] = 100.75
    assert res.available_bytes() == 3000 and len(reads) == 2
    figures.update(mem=None, cg=None)
    clock[0] = 102.0
    assert res.available_bytes() is None and len(reads) == 3
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", "0")
    assert res.available_bytes() == 0
    monkeypatch.setenv("TRM_BOUNDS_MAX_BYTES", "-5")
    with pytest.raises(ValueError, match=r"^TRM_BOUNDS_MAX_BYTES must be >= 0, got '-5'$"):
        res.available_bytes()
