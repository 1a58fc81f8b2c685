"""Tests of trm_bounds.report: the bounds-vs-horizon scaling numbers and figure."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from trm_bounds.bounds import PUBLISHED_BOUNDS, evaluate_bounds
from trm_bounds.report import SCALING_SETTINGS, scaling_table, write_scaling


def test_settings_reproduce_the_papers_columns_at_4096():
    small, large = (s.inputs(4096) for s in SCALING_SETTINGS)
    assert (small.delta, small.eps, small.dkl_seq, small.dtv_seq) == (1e-4, 5e-3, 0.01, 0.05)
    b = evaluate_bounds(small)
    assert round(float(b["classical_tv"])) == 839 and round(float(b["unified"]), 1) == 4.1
    assert large.eps == pytest.approx(np.sqrt(0.5), rel=1e-15) and large.dkl_seq == 1.0


@pytest.mark.parametrize("T", [1, 2, 37, 4096])
def test_inputs_are_consistent_with_the_token_level(T):
    for s in SCALING_SETTINGS:
        b = s.inputs(T)
        assert b.dkl_seq <= T * b.delta * (1 + 1e-15)  # chain rule
        assert b.dtv_seq <= min(1.0, np.sqrt(b.dkl_seq / 2)) * (1 + 1e-15)  # Pinsker
        assert b.dbar.shape == (T,) and np.all(b.dbar == b.eps)


def test_scaling_table_rows_are_the_registry_values():
    T_grid = np.array([1, 10, 1000])
    rows = scaling_table(T_grid)
    assert len(rows) == len(T_grid) * len(SCALING_SETTINGS)
    for r in rows:
        setting = next(s for s in SCALING_SETTINGS if s.name == r["setting"])
        want = evaluate_bounds(setting.inputs(int(r["T"])))
        for name in PUBLISHED_BOUNDS:
            assert r[name] == pytest.approx(float(want[name]), rel=1e-15), (name, r["T"])


def test_write_scaling_writes_every_file_it_lists(tmp_path):
    recs = write_scaling(tmp_path, T_max=1000, points=5)
    paths = {r["path"] for r in recs}
    assert {"scaling.png", "scaling.pdf", "scaling.csv", "scaling.json"} <= paths
    for p in paths:
        assert (tmp_path / p).stat().st_size > 0
    with open(tmp_path / "scaling.csv") as fh:
        rows = list(csv.DictReader(fh))
    # 5 log-spaced T in [1, 1000] plus the paper's T = 4096, for each setting
    assert sorted({int(r["T"]) for r in rows}) == [1, 6, 32, 178, 1000, 4096]
    assert len(rows) == 6 * len(SCALING_SETTINGS)
    data = json.loads((tmp_path / "scaling.json").read_text())
    assert [int(r["T"]) for r in data] == [int(r["T"]) for r in rows]
    assert [float(r["unified"]) for r in data] == [float(r["unified"]) for r in rows]
