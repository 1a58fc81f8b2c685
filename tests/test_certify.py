"""Tests for trm_bounds/certify.py and `trm-bounds certify`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trm_bounds.bounds import BoundInputs, evaluate_bounds
from trm_bounds.certify import (
    certificate_bound_inputs,
    certificate_targets,
    certify,
    load_logprobs,
    sample_certificate,
    save_logprobs,
)
from trm_bounds.cli import main
from trm_bounds.confidence import METHODS, upper_confidence_bound


def _batch(seed=0, B=40, T=64, scale=0.01):
    rng = np.random.default_rng(seed)
    rlp = -rng.uniform(0.01, 3.0, (B, T))
    lp = np.minimum(rlp + scale * rng.standard_normal((B, T)), 0.0)  # log-probs are <= 0
    lengths = rng.integers(0, T + 1, B)
    m = (np.arange(T)[None, :] < lengths[:, None]).astype(np.float32)
    kl = 0.4 * (lp - rlp) ** 2  # a stand-in for the exact token KL at each sampled context
    return lp, rlp, m, kl


def _slow_accept_max(kl, m, delta):
    return [all(kl[b, t] <= delta for t in range(m.shape[1]) if m[b, t]) for b in range(m.shape[0])]


def test_certificate_bound_is_the_bounds_core_value_for_its_inputs():
    lp, rlp, m, kl = _batch()
    delta = 2e-5
    c = certify(lp, rlp, m, exact_kl=kl, delta=delta)
    # rebuilt by hand from the definitions, independently of certify's own BoundInputs
    # delta: max over ALL sampled contexts (accepted or not), never the surviving ones only
    d = max(kl[b, t] for b in range(m.shape[0]) for t in range(m.shape[1]) if m[b, t])
    T = m.shape[1]
    eps = min(1.0, math.sqrt(d / 2))
    rows = [b for b in range(m.shape[0]) if m[b].any()]
    dkl = float(np.mean([sum(kl[b, t] for t in range(T) if m[b, t]) for b in rows]))  # estimate
    b_in = BoundInputs(
        T=T, eps=eps, delta=d, dkl_seq=dkl, dtv_seq=min(1.0, math.sqrt(dkl / 2)), dbar=np.full(T, eps)
    )
    assert c["bound"]["unified"] == evaluate_bounds(b_in)["unified"]
    assert c["bound"]["unified"] == evaluate_bounds(certificate_bound_inputs(c))["unified"]
    assert c["bound"]["all"] == evaluate_bounds(certificate_bound_inputs(c))
    src = c["bound"]["inputs"]["sources"]
    assert src["delta"].startswith("observed") and "ASSUMED" in src["delta"]
    assert src["eps"].startswith("pinsker") and src["dkl_seq"].startswith("estimate")
    assert src["dbar"].startswith("worst_case") and src["dtv_seq"].startswith("pinsker")
    assert c["observed"]["token_max_kl"]["kind"] == "exact"
    assert c["observed"]["token_max_kl"]["all"] == d


def test_acceptance_buckets_and_log_ppl_gap_match_slow_twins():
    lp, rlp, m, kl = _batch(seed=1, scale=0.02)
    c = certify(lp, rlp, m, delta=3e-4, delta_avg=5e-5)
    B, T = m.shape
    lr = lp - rlp
    keep, lengths = [], []
    for b in range(B):
        x = [0.5 * min(20, max(-20, lr[b, t])) ** 2 for t in range(T) if m[b, t]]
        k3 = [math.expm1(lr[b, t]) - lr[b, t] for t in range(T) if m[b, t]]
        keep.append(not x or (max(x) <= 3e-4 and sum(k3) / len(k3) <= 5e-5))
        lengths.append(len(x))
    nonempty = [b for b in range(B) if lengths[b]]
    assert c["acceptance"]["overall"] == pytest.approx(sum(keep[b] for b in nonempty) / len(nonempty))
    for bucket in c["acceptance"]["by_length"]:
        lo, hi = map(int, bucket["lengths"].split("-"))
        rows = [b for b in nonempty if lo <= lengths[b] <= hi]
        assert bucket["n"] == len(rows) and bucket["accepted"] == sum(keep[b] for b in rows)
    assert sum(b["n"] for b in c["acceptance"]["by_length"]) == len(nonempty)
    gap = np.mean([abs(np.mean([lr[b, t] for t in range(T) if m[b, t]])) for b in nonempty])
    assert c["observed"]["log_ppl_gap"]["all"] == pytest.approx(gap, rel=1e-12)
    assert c["mask"]["mode"] == "max+avg"
    assert c["observed"]["token_max_kl"]["kind"] == "estimate"
    assert c["bound"]["inputs"]["delta"] == 3e-4 and c["bound"]["inputs"]["sources"]["delta"].startswith(
        "assumed"
    )
    text = " ".join(c["not_guaranteed"])
    assert "C18" in text and "not controlled by TRM" in text and "k2" in text


def test_no_mask_and_user_assumptions():
    lp, rlp, m, _ = _batch(seed=2)
    c = certify(lp, rlp, m, eps=1e-3, dkl_seq=0.01, dtv_seq=0.05, T=100)
    assert c["mask"]["mode"] == "none" and c["acceptance"]["overall"] == 1.0
    i = c["bound"]["inputs"]
    assert (i["T"], i["eps"], i["dkl_seq"], i["dtv_seq"]) == (100, 1e-3, 0.01, 0.05)
    assert i["sources"]["eps"].startswith("assumed")
    assert c["bound"]["unified"] == evaluate_bounds(certificate_bound_inputs(c))["unified"]


def test_certify_errors():
    lp, rlp, m, kl = _batch(seed=3)
    with pytest.raises(ValueError, match="T = 10 is shorter"):
        certify(lp, rlp, m, T=10)
    with pytest.raises(ValueError, match="eps"):
        certify(lp, rlp, m, eps=2.0)
    with pytest.raises(ValueError, match="delta must be >= 0"):
        certify(lp, rlp, m, delta=-1.0)
    with pytest.raises(ValueError, match="nothing to certify"):
        certify(lp, rlp, np.zeros_like(m))
    with pytest.raises(ValueError, match="empty batch"):  # even with delta: nothing was sampled
        certify(lp, rlp, np.zeros_like(m), delta=1e-3)


def test_cli_certify_round_trip(tmp_path, capsys):
    lp, rlp, m, kl = _batch(seed=4)
    path = save_logprobs(tmp_path / "batch.npz", torch.tensor(lp).bfloat16(), rlp, m, exact_kl=kl)
    data = load_logprobs(path)
    assert data["log_prob"].dtype == np.float32 and set(data) == {
        "log_prob",
        "rollout_log_prob",
        "response_mask",
        "exact_kl",
    }
    assert main(["certify", "--logprobs", str(path), "--json", "--delta", "1e-5"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["bound"]["unified"] == evaluate_bounds(certificate_bound_inputs(c))["unified"]
    direct = certify(
        data["log_prob"],
        data["rollout_log_prob"],
        data["response_mask"],
        exact_kl=data["exact_kl"],
        delta=1e-5,
    )
    assert c["bound"]["unified"] == direct["bound"]["unified"]


def test_cli_certify_bad_files_exit_2_with_one_line(tmp_path, capsys):
    lp, rlp, m, _ = _batch(seed=5)
    np.savez(tmp_path / "nokey.npz", log_prob=lp, response_mask=m)
    assert main(["certify", "--logprobs", str(tmp_path / "nokey.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rollout_log_prob" in err
    bad = lp.copy()
    bad[m > 0] = np.nan
    np.savez(tmp_path / "nan.npz", log_prob=bad, rollout_log_prob=rlp, response_mask=m)
    assert main(["certify", "--logprobs", str(tmp_path / "nan.npz")]) == 2
    assert "log_prob contains NaN" in capsys.readouterr().err
    assert main(["certify", "--logprobs", str(tmp_path / "missing.npz")]) == 2
    # save_logprobs validates before writing: nothing is left behind
    with pytest.raises(ValueError, match="log_prob contains NaN"):
        save_logprobs(tmp_path / "never.npz", bad, rlp, m)
    assert not (tmp_path / "never.npz").exists() and not list(tmp_path.glob("tmp*"))


def test_provenance_wording_is_the_contract_of_the_json():
    # pinned in full: `trm-bounds certify --json` users read these strings (derived values say
    # what TRM does not control; user values say they were assumed)
    lp, rlp, m, kl = _batch(seed=3)
    src = certify(lp, rlp, m, delta=1e-3)["bound"]["inputs"]["sources"]
    assert dict(src) == {
        "delta": "assumed: the TRM-Max threshold delta, taken to bound the token KL at every reachable "
        "context; the mask tested k2 on sampled tokens, not the token KL",
        "eps": "pinsker: min(1, sqrt(delta/2)); valid only if delta holds globally",
        "dkl_seq": "worst_case: T*delta (chain rule); not controlled by TRM",
        "dtv_seq": "pinsker: min(1, sqrt(dkl_seq/2)); not controlled by TRM",
        "dbar": "worst_case: Dbar_t = eps for every t; not controlled by TRM",
    }
    user = certify(lp, rlp, m, delta=1e-3, eps=0.01, dkl_seq=0.5, dtv_seq=0.3)["bound"]["inputs"]
    for name, value in (("eps", 0.01), ("dkl_seq", 0.5), ("dtv_seq", 0.3)):
        assert user[name] == value
        assert user["sources"][name] == "assumed: given by the user; not controlled by TRM"
    assert user["dbar"] == 0.01 and user["sources"]["dbar"].endswith("; not controlled by TRM")


# --------------------------------------------------------------------------- sample certificate
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "bf16_batch.npz"


def test_sample_certificate_estimates_uppers_and_bounds_from_their_definitions():
    lp, rlp, m, _ = _batch(seed=6, B=30, T=16, scale=0.2)
    c = sample_certificate(lp, rlp, m, confidence=0.9)
    rows = [b for b in range(30) if m[b].any()]
    S = np.array(
        [sum(max(0.0, 1 - math.exp(lp[b, t] - rlp[b, t])) for t in range(16) if m[b, t]) for b in rows]
    )
    D = np.array(
        [max(0.0, 1 - math.exp(sum(lp[b, t] - rlp[b, t] for t in range(16) if m[b, t]))) for b in rows]
    )
    assert c["units"] == len(rows) and c["horizon"] == 16
    assert c["sum_dbar"]["estimate"] == pytest.approx(S.mean(), rel=1e-12)
    assert c["dtv_seq"]["estimate"] == pytest.approx(D.mean(), rel=1e-12)
    U = float(upper_confidence_bound(S, 0.9, hi=16.0, method="betting"))
    assert c["sum_dbar"]["upper"] == pytest.approx(U, rel=1e-12)
    assert set(c["sum_dbar"]["by_method"]) == set(METHODS)
    assert c["bounds"] == {"linear_dbar": pytest.approx(4 * U), "linear_dbar_refined": pytest.approx(2 * U)}
    assert c["bound"] == min(c["bounds"].values()) and c["bound_name"] == "linear_dbar_refined"
    text = " ".join(c["assumptions"])
    assert "max R - min R <= 1" in text and "|R| <= 1" in text and "iid" in text
    assert "not a guarantee" in c["second_order"]["kind"].lower()
    lo, hi = c["second_order"]["interval"]
    assert lo <= c["second_order"]["estimate"] <= hi


def test_sample_certificate_groups_are_units_and_horizon_is_the_range():
    lp, rlp, m, _ = _batch(seed=7, B=24, T=16, scale=0.2)
    m[:, 0] = 1.0  # every response non-empty
    g = np.arange(24) // 4
    c = sample_certificate(lp, rlp, m, group_id=g)
    S = sample_certificate(lp, rlp, m)["sum_dbar"]["estimate"]
    assert c["units"] == 6 and c["unit"] == "prompt group"
    assert c["sum_dbar"]["estimate"] == pytest.approx(S, rel=1e-12)  # equal group sizes: same mean
    wide = sample_certificate(lp, rlp, m, horizon=64)
    narrow = sample_certificate(lp, rlp, m)
    assert wide["sum_dbar"]["range"] == [0.0, 64.0]
    assert wide["sum_dbar"]["by_method"]["hoeffding"] > narrow["sum_dbar"]["by_method"]["hoeffding"]
    with pytest.raises(ValueError, match="horizon = 8 is shorter"):
        sample_certificate(lp, rlp, m, horizon=8)
    with pytest.raises(ValueError, match="group_id must have shape"):
        sample_certificate(lp, rlp, m, group_id=g[:3])


def test_certificate_targets():
    lp, rlp, m, _ = _batch(seed=8, B=30, T=16, scale=0.05)
    c = sample_certificate(lp, rlp, m)
    t = certificate_targets(c, 0.1)
    assert t["per_token_mean_needed"] == pytest.approx(0.1 / 32)
    assert t["longest_T_now"] == int(0.1 // (2 * c["per_token_mean"]))
    with pytest.raises(ValueError, match="target"):
        certificate_targets(c, -1.0)


# --------------------------------------------------------------------------- the "Why" list of issue 15
def _write(tmp_path, name, lp, rlp, m, **extra):
    path = tmp_path / name
    np.savez(path, log_prob=lp, rollout_log_prob=rlp, response_mask=m, **extra)
    return str(path)


def test_why_human_summary_says_what_is_certified(capsys):
    assert main(["certify", "--logprobs", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "with probability >= 95% over this batch, |J(theta) - J(roll) - L'(theta)| <=" in out
    assert "improvement" in out and "does NOT exceed" in out  # a verdict, from the file's advantages
    assert "per token must be below" in out and "up to T ~" in out  # what would help
    assert "CONDITIONAL" in out and "not a guarantee" in out.lower()
    assert not out.lstrip().startswith("{")


def test_why_json_keeps_machine_form_with_sample_certificate(capsys):
    assert main(["certify", "--logprobs", str(EXAMPLE), "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    s = c["sample_certificate"]
    assert {"confidence", "units", "method", "sum_dbar", "dtv_seq", "bounds", "bound", "assumptions"} <= set(
        s
    )
    assert {"estimate", "interval", "kind"} <= set(s["second_order"])
    assert c["bound"]["unified"] == evaluate_bounds(certificate_bound_inputs(c))["unified"]


def test_why_exact_kl_gives_an_estimated_dkl_seq_not_T_delta(capsys):
    assert main(["certify", "--logprobs", str(EXAMPLE), "--json"]) == 0
    i = json.loads(capsys.readouterr().out)["bound"]["inputs"]
    data = load_logprobs(EXAMPLE)
    m = data["response_mask"] > 0
    est = float(np.where(m, data["exact_kl"], 0.0).sum(-1)[m.any(-1)].mean())
    assert i["sources"]["dkl_seq"].startswith("estimate") and i["dkl_seq"] == pytest.approx(est, rel=1e-6)
    assert i["dkl_seq"] < i["T"] * i["delta"]


def test_why_rejecting_more_never_makes_the_bound_smaller(capsys):
    data = load_logprobs(EXAMPLE)
    args = (data["log_prob"], data["rollout_log_prob"], data["response_mask"])
    free = certify(*args, exact_kl=data["exact_kl"])
    strict = certify(*args, exact_kl=data["exact_kl"], delta=1e-9)
    assert strict["acceptance"]["overall"] == 0.0
    assert strict["bound"]["unified"] == free["bound"]["unified"]  # delta over all sampled contexts
    assert not any("Every accepted sequence" in g for g in strict["guaranteed"])
    assert any("acceptance is 0" in w for w in strict["warnings"])
    some = certify(*args, exact_kl=data["exact_kl"], delta=float(np.quantile(data["exact_kl"], 0.5)))
    assert some["bound"]["unified"] == free["bound"]["unified"]
    assert main(["certify", "--logprobs", str(EXAMPLE), "--delta", "1e-5"]) == 0
    out = capsys.readouterr().out
    assert "(< 10%)" in out or "acceptance is 0" in out


def test_why_empty_batch_exits_2(tmp_path, capsys):
    lp, rlp, m, _ = _batch(seed=9)
    path = _write(tmp_path, "empty.npz", lp, rlp, np.zeros_like(m))
    for extra in ([], ["--delta", "1e-3"]):
        assert main(["certify", "--logprobs", path, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "empty batch" in err


def test_why_clamped_log_ratio_reports_the_true_max(tmp_path):
    lp, rlp, m, _ = _batch(seed=10)
    b, t = np.argwhere(m > 0)[0]
    lp[b, t] = -np.inf  # pi_theta gives the sampled token probability 0: rho = 0, k2 = inf
    c = certify(lp, rlp, m)
    w = " ".join(c["warnings"])
    assert "clamped" in w and "max k2 after the clamp 200" in w and "true max k2 inf" in w
    s = sample_certificate(lp, rlp, m)
    assert s["dtv_seq"]["estimate"] >= 1.0 / s["units"] - 1e-12  # that sequence has D = 1


def test_why_positive_log_probs_exit_2(tmp_path, capsys):
    lp, rlp, m, _ = _batch(seed=11)
    b, t = np.argwhere(m > 0)[0]
    bad = lp.copy()
    bad[b, t] = 0.5
    assert main(["certify", "--logprobs", _write(tmp_path, "pos.npz", bad, rlp, m)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "log_prob has log-probabilities > 0" in err
    bad_r = rlp.copy()
    bad_r[b, t] = 0.25
    assert main(["certify", "--logprobs", _write(tmp_path, "pos_r.npz", lp, bad_r, m)]) == 2
    assert "rollout_log_prob has log-probabilities > 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="> 0"):
        sample_certificate(bad, rlp, m)
