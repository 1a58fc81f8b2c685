"""Tests for trm_bounds/trainer.py and `trm-bounds train`: the loss pieces against loop twins, the exact
per-step log against an independent evaluation, zero violations, and certified mode's guarantee."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _checks import assert_bound_holds
from hypothesis import assume, example, given, note
from hypothesis import strategies as st

from trm_bounds import masks
from trm_bounds.cli import main as cli_main
from trm_bounds.exact import evaluate_pair_file
from trm_bounds.trainer import (
    TRAIN_METHODS,
    TrainConfig,
    _response_mask,
    group_advantages,
    method_loss,
    ppo_clip_loss,
    summarize,
    train,
)

INTERFACE_KEYS = (
    "step", "method", "J_roll", "J_old", "J_new", "surrogate", "error", "delta", "eps", "dkl_seq", "dtv_seq",
    "bound_unified", "certified", "acceptance", "log_ppl_gap", "skipped",
)  # fmt: skip
QUICK = dict(P=2, V=3, T=4, n_groups=4, group_size=4, steps=6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- pieces vs loop twins
@given(
    R=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=24),
    G=st.integers(2, 6),
    kind=st.sampled_from(["grpo", "drgrpo", "baseline"]),
)
@example(R=[0.0, 0.0, 1.0, 1.0], G=2, kind="grpo")  # zero-variance groups: A = 0 there
@example(R=[1.0, 0.0], G=2, kind="drgrpo")
def test_group_advantages_against_a_loop(R, G, kind):
    n = len(R) // G * G
    assume(n > 0)  # at least one full group
    R = torch.tensor(R[:n], dtype=torch.float64)
    A = group_advantages(R, G, kind, baseline=0.3)
    for i in range(n):
        g = R[(i // G) * G : (i // G + 1) * G].tolist()
        mean = sum(g) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in g) / (G - 1))
        want = {"grpo": (R[i] - mean) / (std + 1e-6), "drgrpo": R[i] - mean, "baseline": R[i] - 0.3}[kind]
        note(f"i={i} got={float(A[i])!r} want={float(want)!r}")
        assert abs(float(A[i]) - float(want)) <= 1e-12 * (1 + abs(float(want)))


@given(
    lr=st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=12),
    A=st.floats(-3.0, 3.0),
)
@example(lr=[math.log(2.0)], A=-1.0)  # rho = 2 > 1.28, A < 0: unclipped (the paper's point)
@example(lr=[math.log(2.0)], A=1.0)  # rho = 2, A > 0: clipped at 1.28
@example(lr=[math.log(0.5)], A=-1.0)  # rho = 0.5 < 0.8, A < 0: clipped at 0.8
def test_ppo_clip_loss_against_the_case_table(lr, A):
    lp = torch.tensor([lr], dtype=torch.float64)
    got = ppo_clip_loss(lp, torch.zeros_like(lp), torch.tensor([A], dtype=torch.float64))[0]
    for t, x in enumerate(lr):
        rho = math.exp(x)
        if A >= 0:
            want = -min(rho, 1.28) * A
        else:
            want = -max(rho, 0.8) * A  # min(rho A, clip A) with A < 0 picks the larger ratio
        note(f"rho={rho!r} A={A!r} got={float(got[t])!r} want={want!r}")
        assert float(got[t]) == pytest.approx(want, rel=1e-12, abs=1e-300)


@given(rows=st.lists(st.lists(st.integers(0, 3), min_size=5, max_size=5), min_size=1, max_size=8))
@example(rows=[[0, 0, 0, 0, 0], [1, 2, 3, 1, 2], [1, 1, 1, 1, 0]])
def test_response_mask_is_up_to_the_first_eos(rows):
    tokens = torch.tensor(rows)
    mask, L = _response_mask(tokens, eos=0)
    for i, row in enumerate(rows):
        ell = row.index(0) + 1 if 0 in row else len(row)
        assert int(L[i]) == ell
        assert mask[i].tolist() == [1.0] * ell + [0.0] * (len(row) - ell)
    mask_none, L_none = _response_mask(tokens, eos=None)
    assert bool((mask_none == 1).all()) and bool((L_none == 5).all())


def _loss_loop(kind, lp, lr, A, rmask, keep, w, norm):
    """Plain-Python twin of method_loss: sum over kept tokens, divided by B ("total") or kept rows."""
    B, T = len(lp), len(lp[0])
    total, kept_rows = 0.0, 0
    for i in range(B):
        row = 0.0
        for t in range(T):
            if rmask[i][t] and keep[i][t]:
                rho = math.exp(lp[i][t] - lr[i][t])
                if kind == "masked_is":
                    row += -A[i] * rho
                elif kind == "weighted":
                    row += -A[i] * w[i][t]
                else:
                    row += -min(rho * A[i], min(max(rho, 0.8), 1.28) * A[i])
        kept_rows += any(rmask[i][t] and keep[i][t] for t in range(T))
        total += row
    return total / (B if norm == "total" else max(kept_rows, 1))


@given(
    data=st.data(),
    B=st.integers(1, 5),
    T=st.integers(1, 4),
    kind=st.sampled_from(["masked_is", "weighted", "ppo_clip"]),
    norm=st.sampled_from(["total", "kept"]),
)
def test_method_loss_value_and_gradient_against_a_loop(data, B, T, kind, norm):
    f = st.floats(-2.0, 0.0)
    lp = torch.tensor(data.draw(st.lists(st.lists(f, min_size=T, max_size=T), min_size=B, max_size=B)))
    lr = torch.tensor(data.draw(st.lists(st.lists(f, min_size=T, max_size=T), min_size=B, max_size=B)))
    A = torch.tensor(data.draw(st.lists(st.floats(-2, 2), min_size=B, max_size=B)), dtype=torch.float64)
    bits = st.lists(st.lists(st.integers(0, 1), min_size=T, max_size=T), min_size=B, max_size=B)
    rmask, keep = data.draw(bits), data.draw(bits)
    w = torch.rand((B, T), generator=torch.Generator().manual_seed(B * 7 + T), dtype=torch.float64)
    lp = lp.to(torch.float64).requires_grad_(True)
    f64 = lambda x: torch.tensor(x, dtype=torch.float64)
    got = method_loss(kind, lp, lr.double(), A, f64(rmask), f64(keep), w, norm)
    want = _loss_loop(kind, lp.tolist(), lr.tolist(), A.tolist(), rmask, keep, w.tolist(), norm)
    note(f"got={float(got.detach())!r} want={want!r}")
    assert float(got.detach()) == pytest.approx(want, rel=1e-12, abs=1e-12)
    got.backward()
    if kind == "masked_is":  # d/d log pi of -A rho = -A rho: the paper's gradient M A rho grad log pi
        den = (
            B
            if norm == "total"
            else max(sum(any(r and k for r, k in zip(rr, kk)) for rr, kk in zip(rmask, keep)), 1)
        )
        on = torch.tensor(rmask, dtype=torch.bool) & torch.tensor(keep, dtype=torch.bool)
        expect = torch.where(on, -A[:, None] * torch.exp(lp.detach() - lr.double()), 0.0) / den
        assert torch.allclose(lp.grad, expect, rtol=1e-12, atol=1e-15)


def test_method_loss_rejects_unknown_kind():
    x = torch.zeros((1, 1), dtype=torch.float64)
    with pytest.raises(ValueError, match="kind must be one of"):
        method_loss("clip", x, x, torch.zeros(1), x + 1, x + 1)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(method="nope"), "method must be one of trm-max, trm-avg"),
        (dict(mismatch="nope"), "unknown mechanism"),
        (dict(mismatch="moe", policy="transformer"), "needs policy 'moe'"),
        (dict(policy="lstm"), "policy must be one of"),
        (dict(reward="gold"), "reward must be one of"),
        (dict(advantage="vtrace"), "advantage must be one of"),
        (dict(loss_norm="mean"), "loss_norm must be one of"),
        (dict(steps=0), "steps must be >= 1"),
        (dict(group_size=1), "group_size must be >= 2"),
        (dict(T=12), "too large"),
        (dict(eos=7), "eos must be None or a token id"),
        (dict(lr=0.0), "lr and router_scale must be > 0"),
        (dict(max_threshold=-0.1), "max_threshold must be finite and >= 0"),
        (dict(is_low=2.0, is_high=1.0), "is_low and is_high"),
        (dict(top_k=9), "top_k"),
        (dict(steps=2.5), "steps must be an integer"),
    ],
)
def test_config_errors_name_the_argument(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


# --------------------------------------------------------------------------- the loop
def _check_log(steps, cfg):
    assert len(steps) == cfg.steps
    for i, s in enumerate(steps):
        for k in INTERFACE_KEYS:
            assert k in s, k
        assert s["step"] == i + 1 and s["method"] == cfg.method
        assert s["error"] == pytest.approx(s["J_new"] - s["J_roll"] - s["surrogate"], abs=1e-12)
        assert_bound_holds(abs(s["error"]), s["bound_unified"], f"step {s['step']}: |Error| <= B*")
        assert s["certified"] == (s["surrogate"] > s["bound_unified"])
        assert not s["violation"]
        assert 0.0 <= s["acceptance"] <= 1.0
        assert sum(s["acceptance_by_length"]["n"]) == cfg.batch_size
        # |mean log pi_old - mean log pi_roll| per sequence: 0 exactly when pi_roll is pi_old
        # (staleness alone at lag 0), positive once the rollout engine lags behind an update
        assert math.isfinite(s["log_ppl_gap"])
        if cfg.mismatch.startswith("stale=") and "+" not in cfg.mismatch:
            assert (s["log_ppl_gap"] > 0) == (s["lag"] > 0), (s["step"], s["lag"], s["log_ppl_gap"])


@pytest.mark.parametrize("method", list(TRAIN_METHODS))
def test_every_method_trains_through_trm_bounds_masks(method, monkeypatch):
    calls = []
    real = masks.sequence_mask
    monkeypatch.setattr(
        masks, "sequence_mask", lambda name, *a, **k: calls.append(name) or real(name, *a, **k)
    )
    cfg = TrainConfig(method=method, mismatch="moe=0.1", **(QUICK | dict(steps=2)))
    res = train(cfg)
    _check_log(res.steps, cfg)
    assert calls == [TRAIN_METHODS[method].mask] * cfg.steps


def test_quick_training_has_zero_violations_and_an_exact_log(tmp_path):
    """The CI version of the 'done when': a quick run per mismatch mechanism, every step checked, and the
    logged exact numbers reproduced by evaluating the saved pair files independently."""
    for mm in ("moe=0.1", "precision=bf16", "lag=2", "moe=0.05+precision=fp16+lag=1"):
        cfg = TrainConfig(method="trm-max", mismatch=mm, **QUICK)
        res = train(cfg, out_dir=tmp_path / mm, save_pair_every=3)
        _check_log(res.steps, cfg)
        assert res.summary["violations"] == 0
        lines = [json.loads(x) for x in (tmp_path / mm / "steps.jsonl").read_text().splitlines()]
        assert lines == json.loads(json.dumps(res.steps))
        assert json.loads((tmp_path / mm / "config.json").read_text())["mismatch"] == parse_spec(mm)
        for step in (3, 6):
            ex = evaluate_pair_file(tmp_path / mm / "pairs" / f"step_{step}.npz")
            s = res.steps[step - 1]
            for key, ref in (
                ("J_roll", "J_roll"),
                ("J_new", "J_theta"),
                ("surrogate", "surrogate"),
                ("delta", "delta"),
            ):
                assert s[key] == pytest.approx(ex[ref], abs=1e-12), key
            assert s["bound_unified"] == pytest.approx(ex["bounds"]["unified"], rel=1e-9, abs=1e-12)
        lags = [s["lag"] for s in res.steps]
        k = int(mm.split("lag=")[1][0]) if "lag=" in mm else 0
        assert lags == [min(i, k) for i in range(cfg.steps)]


def parse_spec(mm):
    from trm_bounds.mismatch import parse_mismatch

    return parse_mismatch(mm).spec


def test_J_old_follows_J_new_without_staleness():
    res = train(TrainConfig(method="ppo-clip", mismatch="precision=fp16", **QUICK))
    for a, b in zip(res.steps, res.steps[1:]):
        assert b["J_old"] == pytest.approx(a["J_new"], abs=1e-14)


@pytest.mark.parametrize("mismatch", ["precision=bf16", "moe=0.1", "lag=1"])
def test_certified_mode_never_lets_J_fall_below_J_roll(mismatch):
    cfg = TrainConfig(method="trm-max", mismatch=mismatch, certified=True, max_backtracks=6, **QUICK)
    res = train(cfg)
    _check_log(res.steps, cfg)
    for s in res.steps:
        assert s["step_scale"] == (0.0 if s["skipped"] else 0.5 ** s["backtracks"])
        if not s["skipped"]:
            assert s["certified"] and s["J_new"] > s["J_roll"]
        else:
            assert s["backtracks"] == cfg.max_backtracks and s["J_new"] == pytest.approx(
                s["J_old"], abs=1e-15
            )
    assert res.summary["applied_below_roll"] == 0 and res.summary["violations"] == 0
    if mismatch != "moe=0.1":  # there B* of the mismatch alone exceeds any one-step gain: every step skips
        assert any(not s["skipped"] for s in res.steps)


def test_certified_mode_learns_with_a_small_mismatch():
    """fp16 rollouts: the certificate is attainable, so certified mode updates (shrunk) and J rises."""
    res = train(TrainConfig(method="trm-max", mismatch="precision=fp16", certified=True, **QUICK))
    assert res.summary["skipped"] < len(res.steps)
    assert res.steps[-1]["J_new"] > res.steps[0]["J_old"]


def test_loss_norm_kept_differs_from_total_only_when_something_is_masked():
    base = dict(method="trm-max", mismatch="moe=0.3", max_threshold=1e-6, **(QUICK | dict(steps=2)))
    tot = train(TrainConfig(loss_norm="total", **base)).steps
    kept = train(TrainConfig(loss_norm="kept", **base)).steps
    s0, k0 = tot[0], kept[0]
    assert s0["acceptance"] == k0["acceptance"]  # same batch, same mask
    if 0 < s0["acceptance"] < 1:
        assert s0["loss"] == pytest.approx(k0["loss"] * s0["acceptance"], rel=1e-9)  # N_kept = acc * B


def test_summarize_counts_a_violation():
    log = [
        dict(certified=True, J_new=0.4, J_roll=0.5, J_old=0.5, acceptance=1.0, log_ppl_gap=0.0),
        dict(certified=True, J_new=0.6, J_roll=0.5, J_old=0.5, acceptance=0.5, log_ppl_gap=0.1),
        dict(
            certified=False, J_new=0.4, J_roll=0.5, J_old=0.5, acceptance=0.0, log_ppl_gap=0.2, skipped=True
        ),
    ]
    s = summarize(log)
    assert (s["certified_steps"], s["violations"], s["skipped"], s["applied_below_roll"]) == (2, 1, 1, 1)
    with pytest.raises(ValueError, match="non-empty"):
        summarize([])


def test_train_argument_errors_write_nothing(tmp_path):
    cfg = TrainConfig(**QUICK)
    with pytest.raises(ValueError, match="save_pair_every must be an integer >= 0"):
        train(cfg, out_dir=tmp_path / "a", save_pair_every=-1)
    with pytest.raises(ValueError, match="save_pair_every needs out_dir"):
        train(cfg, save_pair_every=2)
    assert not (tmp_path / "a").exists()


# --------------------------------------------------------------------------- CLI
def test_cli_train_writes_the_training_log(tmp_path, capsys):
    out = tmp_path / "x"
    argv = ["train", "--method", "trm-max", "--mismatch", "moe", "--steps", "4", "--seed", "1",
            "--out", str(out), "--save-pair-every", "2", "--P", "2", "--V", "3", "--T", "4",
            "--n-groups", "2", "--group-size", "4", "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["summary"]["violations"] == 0
    lines = (out / "steps.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(k in json.loads(lines[0]) for k in INTERFACE_KEYS)
    assert sorted(p.name for p in (out / "pairs").iterdir()) == ["step_2.npz", "step_4.npz"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "trm-max" and cfg["seed"] == 1
    # the same --out again: refused (nothing touched); --force replaces the whole run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    small = ["--P", "2", "--V", "3", "--T", "4", "--n-groups", "2", "--group-size", "4", "--no-progress"]
    again = ["train", "--steps", "2", "--seed", "2", "--out", str(out), *small]
    assert cli_main(again) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trm-bounds train: out:") and "--force" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert cli_main([*again, "--force"]) == 0
    capsys.readouterr()
    assert json.loads((out / "config.json").read_text())["seed"] == 2
    assert not (out / "pairs").exists()  # the old run's pairs/*.npz do not stay beside the new run
    assert sorted(p.name for p in out.parent.iterdir()) == ["x"]  # no staging folder left


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--method", "bogus"], "method must be one of trm-max"),
        (["--mismatch", "moe", "--policy", "tabular"], "needs policy 'moe'"),
        (["--steps", "0"], "steps must be >= 1"),
    ],
)
def test_cli_train_errors_exit_2_with_one_line(tmp_path, capsys, extra, match):
    out = tmp_path / "y"
    assert cli_main(["train", "--out", str(out), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("trm-bounds train:")
    assert np.any([match in err]), err
    assert not out.exists()


# --------------------------------------------------------------------------- audit evidence, the experiment
def test_evidence_from_a_tiny_run_when_no_figures_exist(tmp_path, monkeypatch):
    from trm_bounds.audit.evidence import trainer as te

    monkeypatch.setattr(te, "_search_dirs", lambda: (tmp_path,))
    c13, c18, c24 = te.c13_evidence(), te.c18_evidence(), te.c24_evidence()
    assert c13["violations"] == 0
    # "<certified> of <steps> optimizer steps": the count is one of the run's steps, and says so
    certified, steps = map(int, re.search(r"(\d+) of (\d+) optimizer steps", c13["evidence"]).groups())
    assert certified == c13["certified_steps"] and 0 <= certified <= steps and steps > 0
    assert "tiny training run" in c13["evidence"] and "violations" in c13["evidence"]
    assert "delta = 0.05" in c18["evidence"] and "delta = 0.1" in c24["evidence"]


def test_evidence_reads_the_experiment_json(tmp_path, monkeypatch):
    from trm_bounds.audit.evidence import trainer as te

    tot = {"runs": 2, "steps": 10, "certified_steps": 3, "violations": 0, "certified_mode": {"steps": 5},
           "trm_max_by_threshold": {"0.05": {"steps": 4, "acc_ge_0.7": 2, "acc_ge_0.7_but_delta_above": 1,
                                             "bound_below_1": 4, "certified": 1}}}  # fmt: skip
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "train_figures.json").write_text(json.dumps({"quick": False, "totals": tot}))
    monkeypatch.setattr(te, "_search_dirs", lambda: (tmp_path,))
    assert "3 of 10 optimizer steps" in te.c13_evidence()["evidence"]
    assert "on 1 of those" in te.c18_evidence()["evidence"]
    assert "train_figures.json" in te.c13_evidence()["evidence"]


def test_quick_experiment_has_zero_violations_and_certified_mode_holds(tmp_path):
    """The CI variant of experiments/train_figures.py: every output written, zero violations, and in
    certified mode no applied update leaves exact J below J(roll)."""
    from trm_bounds.studies import training as mod

    records = mod.figures_job(tmp_path, quick=True)
    for rec in records:
        assert (tmp_path / rec["path"]).is_file() and rec["shows"]
    data = json.loads((tmp_path / "training" / "train_figures.json").read_text())
    tot = data["totals"]
    assert tot["violations"] == 0 and tot["certified_mode"]["applied_below_roll"] == 0
    assert tot["runs"] == len(data["runs"]) >= 2 * len(mod.RUNS)
    with (tmp_path / "training" / "curves.csv").open() as fh:
        rows = list(__import__("csv").DictReader(fh))
    for r in rows:
        if r["regime"] in mod.CERTIFIED_REGIMES and r["run"] == "certified" and r["skipped"] == "0":
            assert float(r["J_new"]) > float(r["J_roll"])


def test_final_table_statistics_over_seeds():
    """final_table: mean, sample std (ddof 1), min and max of the final J over a run's seeds, the
    mean of the per-run means of acceptance and log-ppl gap, in REGIMES x RUNS order; a run with
    one seed has std 0; runs of the certified regimes are not rows."""
    from trm_bounds.studies import training as mod

    def run(reg, label, J, acc, gap):
        return {
            "regime": reg,
            "label": label,
            "summary": {"J_last": J, "acceptance_mean": acc, "log_ppl_gap_mean": gap},
        }

    res = [
        run("strong", "PPO-clip", 0.2, 1.0, 3.0),
        run("rare", "PPO-clip", 0.1, 0.5, 1.0),
        run("rare", "PPO-clip", 0.4, 0.7, 2.0),
        run("rare", "PPO-clip", 0.7, 0.9, 3.0),
        run("rare", "token-IS", 0.3, 1.0, 0.5),
        run("tabular, bf16 rollouts", "plain", 0.9, 1.0, 0.0),
    ]
    rows = mod.final_table(res)
    assert [(r["regime"], r["run"]) for r in rows] == [
        ("rare", "token-IS"),
        ("rare", "PPO-clip"),
        ("strong", "PPO-clip"),
    ]
    ppo = rows[1]
    assert ppo["seeds"] == 3
    assert ppo["J_last_mean"] == pytest.approx(0.4) and ppo["J_last_std"] == pytest.approx(0.3)  # ddof 1
    assert (ppo["J_last_min"], ppo["J_last_max"]) == (0.1, 0.7)
    assert ppo["acceptance_mean"] == pytest.approx(0.7) and ppo["log_ppl_gap_mean"] == pytest.approx(2.0)
    assert rows[0]["J_last_std"] == 0.0 and rows[2]["J_last_std"] == 0.0
    md = mod.final_table_markdown(rows).splitlines()
    assert md[3] == "| rare | PPO-clip | 0.400 +- 0.300 | 0.100 - 0.700 | 0.70 | 2.00 |"


def test_paper_figures_readme_quotes_the_committed_training_table():
    """paper_figures/README.md shows training/final_table.md verbatim and the totals of
    train_figures.json as committed: regenerating the figures without updating the write-up fails."""
    root = Path(__file__).resolve().parent.parent / "paper_figures"
    readme = (root / "README.md").read_text()
    table = (root / "training" / "final_table.md").read_text().strip()
    assert table in readme
    tot = json.loads((root / "training" / "train_figures.json").read_text())["totals"]
    text = " ".join(readme.split())
    cm = tot["certified_mode"]
    for phrase in (
        f"{tot['steps']:,} optimizer steps), {tot['certified_steps']} steps",
        f"**{tot['violations']} violated**",
        f"({cm['applied_below_roll']} of {cm['steps']} steps)",
    ):
        assert phrase in text, phrase


def test_training_runs_give_the_same_json_in_process_and_in_worker_processes(monkeypatch):
    """The figure runs are seeded tasks: a spawned 2-process pool returns exactly the in-process results."""
    from trm_bounds.studies import training

    monkeypatch.setattr(training, "_steps", lambda quick: 2)
    tasks = training.training_tasks(quick=True)
    few = [tasks[0], tasks[len(tasks) // 2], tasks[-1]]  # a Fig. 1 run, a Fig. 3 run, a certified run
    monkeypatch.setattr(training, "training_tasks", lambda quick: few)
    one = training.run_training(quick=True, progress=False, workers=1)
    two = training.run_training(quick=True, progress=False, workers=2)
    assert [r["label"] for r in one] == [t["label"] for t in few]
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert all(len(r["steps"]) == 2 for r in one)


def test_longest_runs_go_to_the_workers_first_and_results_keep_task_order(monkeypatch):
    """The pool gets the runs slowest first (certified MoE, then by regime), a permutation of the
    tasks; the background run's results come back in training_tasks order, as in-process."""
    from trm_bounds import taskpool
    from trm_bounds.studies import training

    tasks = training.training_tasks(quick=False)
    ran = training._longest_first(tasks)
    assert sorted(t["key"] for t in ran) == sorted(t["key"] for t in tasks)
    moe_cert = ("certified", "MoE, fp16 rollouts")
    cost = [training._CERTIFIED_MOE_SECONDS if (t["label"], t["regime"]) == moe_cert
            else training._RUN_SECONDS[t["regime"]] for t in ran]  # fmt: skip
    assert cost == sorted(cost, reverse=True) and ran[0]["label"] == "certified"
    assert training._in_task_order([t["key"] for t in ran], ran, tasks) == [t["key"] for t in tasks]

    monkeypatch.setattr(training, "_steps", lambda quick: 1)
    few = [tasks[0], tasks[-4], tasks[-1]]  # rare token-IS, MoE fp16 plain, MoE fp16 certified
    monkeypatch.setattr(training, "training_tasks", lambda quick: [dict(t, steps=1) for t in few])
    assert [t["key"] for t in training._longest_first(training.training_tasks(True))] != [
        t["key"] for t in few
    ]
    here = training.run_training(quick=True, progress=False, workers=1)
    name = training.start_background(quick=True)
    assert taskpool.has_background(name)
    there = training.run_training(quick=True, progress=False)
    assert not taskpool.has_background(name)
    assert [(r["regime"], r["label"], r["seed"]) for r in there] == [
        (t["regime"], t["label"], t["seed"]) for t in few
    ]
    assert json.dumps(there, sort_keys=True) == json.dumps(here, sort_keys=True)


def test_skips_without_backtracking_rebuild_theta_old_and_match_a_fresh_forward(monkeypatch):
    """max_backtracks = 0: a rejected step is skipped at once (parameters restored in place). The
    next step must not reuse the graph built before the restore; each step's differentiable
    pi_theta_old, reused or rebuilt, equals a fresh forward pass at the current parameters."""
    from trm_bounds import trainer as tr

    checked = []
    original = tr.token_logprobs

    def spy(levels, prompt, tokens):
        policy = spy.policy
        with torch.no_grad():
            fresh = policy.log_prob_tree()
        assert all(torch.equal(a.detach(), b) for a, b in zip(levels, fresh))
        checked.append(True)
        return original(levels, prompt, tokens)

    real_build = tr.build_policy

    def build(cfg):
        spy.policy = real_build(cfg)
        return spy.policy

    monkeypatch.setattr(tr, "token_logprobs", spy)
    monkeypatch.setattr(tr, "build_policy", build)
    cfg = TrainConfig(method="trm-max", mismatch="moe=0.1", certified=True, max_backtracks=0, **QUICK)
    res = train(cfg)  # a reused graph from before an in-place restore would fail in backward
    assert len(checked) == cfg.steps and any(s["skipped"] for s in res.steps)


def test_delta_mismatch_is_the_max_token_kl_over_every_context():
    from trm_bounds.divergences import token_kl
    from trm_bounds.trainer import _max_token_kl

    gen = torch.Generator().manual_seed(3)
    shapes = [(2, 3**k, 3) for k in range(3)]
    roll = [torch.log_softmax(torch.randn(s, generator=gen, dtype=torch.float64), -1) for s in shapes]
    theta = [torch.log_softmax(torch.randn(s, generator=gen, dtype=torch.float64), -1) for s in shapes]
    want = max(float(token_kl(r, t).max()) for r, t in zip(roll, theta))
    assert _max_token_kl(roll, theta) == want > 0
    theta[2] = roll[2].clone()  # the max now sits in level 1 or 2 (not the last)
    want = max(float(token_kl(r, t).max()) for r, t in zip(roll[:2], theta[:2]))
    assert _max_token_kl(roll, theta) == want > 0
    theta[1] = roll[1].clone()
    theta[0] = roll[0].clone()
    assert _max_token_kl(roll, theta) == 0.0


def test_group_sampling_is_one_batch_draw():
    """The trainer's batch: n_groups uniform prompts, each repeated G times (groups contiguous),
    then draw_tokens over the whole batch on the same generator (one draw per level)."""
    from trm_bounds.pair import draw_tokens
    from trm_bounds.policies import TabularPolicy
    from trm_bounds.trainer import _sample_groups

    cfg = TrainConfig(method="trm-max", **QUICK)
    with torch.no_grad():
        roll = TabularPolicy(cfg.P, cfg.V, cfg.T, seed=2).log_prob_tree()
    got = _sample_groups(roll, cfg, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    prompts = torch.randint(0, cfg.P, (cfg.n_groups,), generator=gen)
    want = draw_tokens(roll, prompts.repeat_interleave(cfg.group_size), gen)
    for k in ("prompt", "tokens", "index", "logp"):
        assert torch.equal(got[k], want[k]), k
    assert torch.equal(
        got["prompt"].reshape(cfg.n_groups, cfg.group_size), prompts[:, None].expand(-1, cfg.group_size)
    )


def test_group_sampling_law():
    """Chi-square: the responses of each prompt follow pi_roll's leaf law P(y | x) (p > 1e-4)."""
    from scipy.stats import chisquare

    from trm_bounds.policies import TabularPolicy, exact_J_tensor
    from trm_bounds.trainer import _sample_groups

    cfg = TrainConfig(method="trm-max", P=2, V=3, T=2, eos=None, n_groups=500, group_size=16)
    with torch.no_grad():
        roll = TabularPolicy(cfg.P, cfg.V, cfg.T, seed=4, init_std=1.5).log_prob_tree()
    got = _sample_groups(roll, cfg, torch.Generator().manual_seed(11))
    leaves = cfg.V**cfg.T
    for x in range(cfg.P):
        sel = got["prompt"] == x
        counts = torch.bincount(got["index"][sel], minlength=leaves).double()
        law = torch.stack(
            [
                exact_J_tensor(
                    roll,
                    torch.eye(cfg.P * leaves, dtype=torch.float64)[x * leaves + i].reshape(cfg.P, leaves),
                    torch.eye(cfg.P, dtype=torch.float64)[x],
                )
                for i in range(leaves)
            ]
        )
        assert abs(float(law.sum()) - 1) < 1e-12
        assert chisquare(counts.numpy(), float(sel.sum()) * law.numpy()).pvalue > 1e-4, x
