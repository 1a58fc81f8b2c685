"""Tests for trm_bounds/studies/: the error-vs-horizon study (quick) writes every output it reports,
its JSON is what the chain evidence reads, and the experiments/ scripts are thin wrappers.
(The training study is tested in test_trainer.py.)"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from trm_bounds.audit.evidence import chain as chain_evidence
from trm_bounds.bounds import PUBLISHED_BOUNDS
from trm_bounds.studies import error_vs_horizon, training

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("evh")
    return out, error_vs_horizon.run_study(out, quick=True, progress=False)


def test_quick_study_writes_what_it_reports(study):
    out, records = study
    paths = {r["path"] for r in records}
    stems = ("error_vs_horizon", "error_vs_horizon_map", "error_vs_horizon_ratios")
    assert {f"{s}.{e}" for s in stems for e in ("png", "pdf", "csv")} | {"error_vs_horizon.json"} == paths
    for r in records:
        assert (out / r["path"]).stat().st_size > 0 and r["shows"]


def test_study_json_feeds_the_chain_evidence(study, monkeypatch):
    out, _ = study
    data = json.loads((out / error_vs_horizon.RESULTS_JSON).read_text())
    worst = data["random_pairs"]["worst_ratio"]
    assert set(worst) == set(PUBLISHED_BOUNDS) and max(worst.values()) <= 1.0
    monkeypatch.setattr(chain_evidence, "_search_dirs", lambda: (out,))
    c01 = chain_evidence.c01_evidence()
    assert c01["unified"]["instances"] == data["random_pairs"]["instances"] > 0
    assert c01["unified"]["worst_ratio"] == pytest.approx(worst["unified"], rel=1e-12)
    assert np.isfinite([r["error_slope"] for r in data["sweep"].values()]).all()


def test_experiment_scripts_are_thin_wrappers():
    for script, module in (("error_vs_horizon", error_vs_horizon), ("train_figures", training)):
        ns = runpy.run_path(str(REPO / "experiments" / f"{script}.py"), run_name="not_main")
        assert ns["main"] is module.main and ns["figures_job"] is module.figures_job
