"""Tests for trm_bounds/audit/tables.py: the regenerated tables, their verdicts and writers."""

from __future__ import annotations

import json
import math

import pytest

from trm_bounds import bounds as nb
from trm_bounds import cli
from trm_bounds.audit import tables
from trm_bounds.audit.printed import CELL_VERDICTS


# --------------------------------------------------------------------------- tables
@pytest.fixture(scope="module")
def cells():
    return tables.paper_tables()


def test_cells_follow_the_contract(cells):
    ids = [c.claim_id for c in cells]
    assert len(ids) == len(set(ids))
    for c in cells:
        assert c.verdict in CELL_VERDICTS
        assert c.version in ("v1", "v2", "v3") and c.version in c.table or c.table.startswith(c.version)
        assert math.isfinite(c.computed)
        if c.verdict != "match":
            assert c.note, c


def test_the_known_non_matching_cells(cells):
    """Pins every cell whose verdict is not `match` (the closing-note list), with its reason."""
    off = {c.claim_id: c.verdict for c in cells if c.verdict != "match"}
    pm = {
        "C09.v1.pm.value",
        "C09.v2.pm.small",
        "C09.v3.pm_kl.kl_only",
        "C09.v3.pm_kl.kl_tv",
        "C09.v3.pm_tv.kl_only",
        "C09.v3.adaptive_star.kl_only",
    }  # exact 34.946: the paper printed the closed form
    assert off == {
        **dict.fromkeys(pm, "rounding"),
        "C09.v2.adaptive.small": "mismatch",  # worst-case Adaptive is 34.9, not <= 8.2
        "C09.v2.adaptive.large": "mismatch",
        "C09.v3.improvement.ratio": "rounding",  # 409.5 printed as 409
        "C09.v2.worst_case_adaptive.value": "rounding",  # 1139.67 printed as 1139
        "C09.v2.p_0.001.T_1024": "rounding",
        "C09.v2.p_0.0001.T_4096": "rounding",
        "C09.v2.p_0.0001.T_8192": "rounding",
    }


def test_kl_tv_column_is_what_trm_bounds_bounds_prints(cells, capsys):
    assert (
        cli.main(
            [
                "bounds",
                "--T",
                "4096",
                "--delta",
                "1e-4",
                "--eps",
                "5e-3",
                "--dkl-seq",
                "0.01",
                "--dtv-seq",
                "0.05",
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)["bounds"]
    col = {c.row_key: c.computed for c in cells if c.version == "v3" and c.column_key == "kl_tv"}
    for key in ("coupling", "pm_kl", "pm_tv", "mix_kl", "mix_tv", "adaptive_star", "unified"):
        assert col[key] == pytest.approx(printed[key], rel=1e-14)
    assert col["classical"] == pytest.approx(min(printed["classical_tv"], printed["classical_kl"]), rel=1e-14)


def test_no_cap_cell_is_bounds_pm_kl_nocap(cells):
    """The "no cap" cell uses the one implementation, `bounds.pm_kl_nocap` (= 2 delta sum sqrt(t-1))."""
    cell = next(c for c in cells if c.claim_id == "C09.v2.pm.large_no_cap")
    loop = 2.0 * math.fsum(math.sqrt(t - 1) for t in range(1, 4097))
    assert cell.computed == pytest.approx(loop, rel=1e-14)
    assert cell.computed == float(nb.pm_kl_nocap(4096, 1.0))


def test_writers_render_every_cell(cells, tmp_path):
    paths = tables.write_tables(tmp_path, cells)
    assert sorted(p.name for p in paths) == ["table.csv", "table.json", "table.md"]
    data = json.loads((tmp_path / "table.json").read_text())
    assert len(data) == len(cells)
    assert set(tables.CELL_FIELDS) <= set(data[0])
    assert (tmp_path / "table.csv").read_text().count("\n") == len(cells) + 1
    assert "| Coupling |" in (tmp_path / "table.md").read_text()
