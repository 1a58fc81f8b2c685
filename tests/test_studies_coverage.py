"""Tests for trm_bounds/studies/coverage.py (quick mode, written to a temporary folder)."""

from __future__ import annotations

import math

import pytest

from trm_bounds.exact import exact_quantities
from trm_bounds.studies import coverage


def test_leaf_statistics_reproduce_the_exact_expectations():
    label, pair = coverage._pairs(quick=True)[3]  # tabular dense 0.3
    st = coverage.leaf_statistics(pair)
    ex = exact_quantities(pair.logp_roll, pair.logp_theta, pair.reward, pair.prompt_probs)
    assert st["prob"].sum() == pytest.approx(1.0, rel=1e-12)
    assert float(st["prob"] @ st["S"]) == pytest.approx(sum(ex["dbar"]), rel=1e-10)  # E_roll[S] = sum Dbar
    assert float(st["prob"] @ st["D"]) == pytest.approx(ex["dtv_seq"], rel=1e-10)  # E_roll[D] = D_TV^seq
    assert float(st["prob"] @ st["Z"]) == pytest.approx(ex["bounds"]["second_order"], rel=1e-10)


def test_coverage_at_least_nominal_within_mc_error(monkeypatch):
    monkeypatch.setattr(coverage, "SIZES", (16, 256))
    rows = coverage.coverage_table(quick=True, reps=300, seed=1)
    se = math.sqrt(0.95 * 0.05 / 300)
    for r in rows:
        assert r["coverage_sum_dbar"] >= 0.95 - 3 * se, r
        assert r["coverage_dtv_seq"] >= 0.95 - 3 * se, r
        assert abs(r["bias_sum_dbar"]) <= 4 * r["bias_se_sum_dbar"] + 1e-15, r  # unbiased
        assert r["bound_holds_when_covered"], r
    assert any(r["paper_regime"] for r in rows)


def test_figures_job_writes_every_recorded_file(tmp_path):
    recs = coverage.figures_job(tmp_path, quick=True)
    assert {r["path"] for r in recs} >= {
        "certify/certify_coverage.png",
        "certify/certify_horizon.pdf",
        "certify/certify_coverage.csv",
    }
    for r in recs:
        assert (tmp_path / r["path"]).stat().st_size > 0 and r["shows"] and r["inputs"]["quick"] is True
    hor = (tmp_path / "certify" / "certify_horizon.csv").read_text().splitlines()
    assert len(hor) == 1 + 3 and hor[0].startswith("T,exact_sum_dbar")
