"""Tests for trm_bounds/certify.py and `trm-bounds certify`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trm_bounds.bounds import BoundInputs, evaluate_bounds
from trm_bounds.certify import certificate_bound_inputs, certify, load_logprobs, save_logprobs
from trm_bounds.cli import main


def _batch(seed=0, B=40, T=64, scale=0.01):
    rng = np.random.default_rng(seed)
    rlp = -rng.uniform(0.01, 3.0, (B, T))
    lp = rlp + scale * rng.standard_normal((B, T))
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
    keep = _slow_accept_max(kl, m, delta)
    d = max(kl[b, t] for b in range(m.shape[0]) for t in range(m.shape[1]) if m[b, t] and keep[b])
    T = m.shape[1]
    eps = min(1.0, math.sqrt(d / 2))
    b_in = BoundInputs(
        T=T, eps=eps, delta=d, dkl_seq=T * d, dtv_seq=min(1.0, math.sqrt(T * d / 2)), dbar=np.full(T, eps)
    )
    assert c["bound"]["unified"] == evaluate_bounds(b_in)["unified"]
    assert c["bound"]["unified"] == evaluate_bounds(certificate_bound_inputs(c))["unified"]
    assert c["bound"]["all"] == evaluate_bounds(certificate_bound_inputs(c))
    src = c["bound"]["inputs"]["sources"]
    assert src["delta"].startswith("observed") and "ASSUMED" in src["delta"]
    assert src["eps"].startswith("pinsker") and src["dkl_seq"].startswith("worst_case")
    assert src["dbar"].startswith("worst_case") and src["dtv_seq"].startswith("pinsker")
    assert c["observed"]["token_max_kl"]["kind"] == "exact"
    assert c["observed"]["token_max_kl"]["accepted"] == d <= delta


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
    c = certify(lp, rlp, np.zeros_like(m), delta=1e-3)  # all-masked batch: only the assumption remains
    assert c["acceptance"]["overall"] == 1.0 and c["batch"]["n_nonempty"] == 0


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
