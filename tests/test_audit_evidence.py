"""Tests for trm_bounds/audit/evidence/__init__.py (the rounding allowance), evidence/refined.py
(ratios) and trm_bounds/audit/outputs.py (where measurements are found). The exact, chain and
trainer evidence are tested beside their engines (test_exact, test_chain, test_trainer)."""

from __future__ import annotations

import math

import pytest

from trm_bounds.audit import outputs
from trm_bounds.audit.evidence import ROUNDING_ABS, ROUNDING_REL, excess_ratio
from trm_bounds.audit.evidence.refined import refined_ratios
from trm_bounds.refined import REFINED_OF


@pytest.mark.parametrize(
    "err, bound, want",
    [
        (0.5, 1.0, 0.5 - ROUNDING_REL),  # relative allowance subtracted
        (1.0 + 0.5e-12, 1.0, 0.0 + 0.5e-12 - ROUNDING_REL + 1.0),  # inside the allowance: ratio <= 1
        (1e-3, 1e-6, (1e-3 - ROUNDING_REL * 1e-6) / 1e-6),  # a tiny bound is not hidden by an abs slack
        (0.0, 0.0, 0.0),
        (1e-301, 0.0, 0.0),  # below ROUNDING_ABS: no excess
        (1e-10, 0.0, math.inf),
    ],
)
def test_excess_ratio(err, bound, want):
    got = excess_ratio(err, bound)
    assert got == pytest.approx(want, rel=1e-12) or got == want
    if bound > 0 and err > bound * (1 + ROUNDING_REL) + ROUNDING_ABS:
        assert got > 1.0


def test_refined_ratios_use_the_refined_bounds():
    bounds = {rkey: 2.0 for rkey in REFINED_OF.values()}
    bounds[REFINED_OF["pm_kl"]] = 0.5
    ratios = refined_ratios({"error": -1.0, "bounds": bounds})
    assert set(ratios) == set(REFINED_OF)
    assert ratios["pm_kl"] > 1.0 and ratios["unified"] == pytest.approx(0.5, rel=1e-11)


def test_measurement_folder_is_explicit_not_the_current_directory(tmp_path, monkeypatch):
    run_dir, cwd, other = tmp_path / "run", tmp_path / "cwd", tmp_path / "other"
    for d in (run_dir / "training", cwd / "paper_figures" / "training", other / "training"):
        d.mkdir(parents=True)
    (cwd / "paper_figures" / "training" / "x.json").write_text("{}")
    (other / "training" / "x.json").write_text("{}")
    monkeypatch.chdir(cwd)
    default = outputs.default_measurements()
    assert outputs.output_dirs() == (() if default is None else (default,))  # never ./paper_figures
    assert outputs.find_output("training/x.json") != cwd / "paper_figures" / "training" / "x.json"
    with outputs.reading_measurements([run_dir, other], label="this folder"):
        assert outputs.output_dirs() == (run_dir, other) and outputs.measurements_label() == "this folder"
        found = outputs.find_output("training/x.json")
        assert found == other / "training" / "x.json"  # first folder that has it
        assert outputs.describe(found) == "training/x.json in this folder"  # no absolute path
        (run_dir / "training" / "x.json").write_text("{}")
        assert outputs.find_output("training/x.json") == run_dir / "training" / "x.json"
        assert outputs.find_output("training/none.json") is None
        with outputs.reading_measurements([other]):
            assert outputs.measurements_label() == str(other)
    assert outputs.output_dirs() == (() if default is None else (default,))
