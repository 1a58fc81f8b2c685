"""Tests for trm_bounds/paper.py: printed-number verdicts, the regenerated tables, the audit and its CLI."""

from __future__ import annotations

import itertools
import json
import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from trm_bounds import bounds as nb
from trm_bounds import cli, paper, symbolic


# --------------------------------------------------------------------------- printed numbers
@pytest.mark.parametrize(
    "text, relation, value, unit",
    [
        ("1,677", "=", 1677, 1),
        ("35.0", "=", 35.0, 0.1),
        ("1.68e7", "=", 1.68e7, 1e5),
        ("3.49e5", "=", 3.49e5, 1e3),
        ("7.07e-3", "=", 7.07e-3, 1e-5),
        ("<= 8.2", "<=", 8.2, 0.1),
        ("<= 8,192", "<=", 8192, 1),
        ("<1e-7", "<", 1e-7, 1e-7),
        ("200x", "=", 200, 100),
        ("about 30x", "=", 30, 10),
        ("0.0003", "=", 3e-4, 1e-4),
        ("about 1139", "=", 1139, 1),
    ],
)
def test_parse_printed(text, relation, value, unit):
    pr = paper.parse_printed(text)
    assert (pr.relation, pr.value, pr.unit) == (relation, pytest.approx(value), pytest.approx(unit))


def test_parse_printed_rejects_text():
    with pytest.raises(ValueError, match="^text"):
        paper.parse_printed("thirty")


def _half_up(x: float, decimals: int) -> float:
    """Slow twin: decimal rounding half-up of the exact binary value of x."""
    return float(Decimal(x).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


@given(x=st.floats(0, 1e5), decimals=st.integers(0, 4))
@example(x=34.946091886296685, decimals=1)  # the PM cell: 34.9, so "35.0" is not its rounding
@example(x=409.50286, decimals=0)
def test_printed_verdict_against_decimal_rounding(x, decimals):
    printed = f"{_half_up(x, decimals):.{decimals}f}"
    note(f"x={x!r} printed={printed}")
    verdict, _ = paper.printed_verdict(x, paper.parse_printed(printed))
    assert verdict == "match"
    unit = 10.0**-decimals
    trunc = f"{math.floor(x / unit) * unit:.{decimals}f}"
    v2, note2 = paper.printed_verdict(x, paper.parse_printed(trunc))
    assert v2 in ("match", "rounding") and (v2 == "match" or "truncation" in note2)
    far = f"{_half_up(x, decimals) + 3 * unit:.{decimals}f}"
    assert paper.printed_verdict(x, paper.parse_printed(far))[0] == "mismatch"


def test_inequality_and_bound_verdicts():
    le = paper.parse_printed("<= 8.2")
    assert paper.printed_verdict(8.192, le)[0] == "match"
    assert paper.printed_verdict(34.9, le)[0] == "mismatch"
    assert "loose" in paper.printed_verdict(1.0, le)[1]
    lt = paper.parse_printed("<1e-7")
    assert paper.printed_verdict(7.6e-8, lt)[0] == "match"
    assert paper.printed_verdict(2e-7, lt)[0] == "mismatch"


# --------------------------------------------------------------------------- tables
@pytest.fixture(scope="module")
def cells():
    return paper.paper_tables()


def test_cells_follow_the_contract(cells):
    ids = [c.claim_id for c in cells]
    assert len(ids) == len(set(ids))
    for c in cells:
        assert c.verdict in paper.CELL_VERDICTS
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


@given(T=st.integers(1, 3000), delta=st.floats(0, 5))
@example(T=4096, delta=1.0)
def test_no_cap_pm_against_sympy_and_a_loop(T, delta):
    loop = 2.0 * delta * sum(math.sqrt(t - 1) for t in range(1, T + 1))
    assert paper.pm_kl_uncapped(T, delta) == pytest.approx(loop, rel=1e-12, abs=1e-300)
    if T <= 300:
        sym = symbolic.lambdify_bound("pm_kl", capped=False)(T, delta=delta)
        assert paper.pm_kl_uncapped(T, delta) == pytest.approx(sym, rel=1e-12, abs=1e-300)


def test_pm_kl_uncapped_bad_input():
    with pytest.raises(ValueError, match="^delta"):
        paper.pm_kl_uncapped(10, -1.0)
    with pytest.raises(ValueError, match="^T"):
        paper.pm_kl_uncapped(0, 1.0)


def test_writers_render_every_cell(cells, tmp_path):
    paths = paper.write_tables(tmp_path, cells)
    assert sorted(p.name for p in paths) == ["table.csv", "table.json", "table.md"]
    data = json.loads((tmp_path / "table.json").read_text())
    assert len(data) == len(cells)
    assert set(paper.CELL_FIELDS) <= set(data[0])
    assert (tmp_path / "table.csv").read_text().count("\n") == len(cells) + 1
    assert "| Coupling |" in (tmp_path / "table.md").read_text()


# --------------------------------------------------------------------------- tiny exact engine
def _slow_exact(pairs, b):
    """Per-trajectory loop for pair b: J_roll, J_theta, L', and -Delta from the ratio identity."""
    _, T, V = pairs.shape
    J_r = J_t = Lp = minus_delta = 0.0
    for n, y in enumerate(itertools.product(range(V), repeat=T)):
        lr = [
            pairs.logp_roll[k][b, int(np.dot(y[:k], V ** np.arange(k - 1, -1, -1))), y[k]] for k in range(T)
        ]
        lt = [
            pairs.logp_theta[k][b, int(np.dot(y[:k], V ** np.arange(k - 1, -1, -1))), y[k]] for k in range(T)
        ]
        rho = [math.exp(a - c) for a, c in zip(lt, lr)]
        p_r, p_t, R = math.exp(sum(lr)), math.exp(sum(lt)), pairs.reward[b, n]
        J_r += p_r * R
        J_t += p_t * R
        Lp += p_r * R * sum(r - 1 for r in rho)
        minus_delta -= p_r * R * sum((rho[t] - 1) * (1 - math.prod(rho[t + 1 :])) for t in range(T))
    return J_r, J_t, Lp, minus_delta


@pytest.mark.parametrize("T, V", [(1, 3), (2, 3), (3, 2), (4, 2)])
def test_tiny_engine_against_a_per_trajectory_loop(T, V):
    pairs = paper._random_tiny_pairs(np.random.default_rng(T * 10 + V), 4, T, V)
    ex = paper._tiny_exact(pairs)
    for b in range(4):
        J_r, J_t, Lp, minus_delta = _slow_exact(pairs, b)
        assert ex["J_roll"][b] == pytest.approx(J_r, abs=1e-12)
        assert ex["J_theta"][b] == pytest.approx(J_t, abs=1e-12)
        assert ex["surrogate"][b] == pytest.approx(Lp, abs=1e-12)
        assert ex["error"][b] == pytest.approx(minus_delta, abs=1e-12)  # Error = -Delta


def test_tiny_engine_bounds_match_the_registry():
    pairs = paper._random_tiny_pairs(np.random.default_rng(1), 5, 3, 2)
    ex = paper._tiny_exact(pairs)
    batch = paper._bounds_batch(ex)
    for b in range(5):
        rec = nb.BoundInputs(
            T=3,
            eps=ex["eps"][b],
            delta=ex["delta"][b],
            dkl_seq=ex["dkl_seq"][b],
            dtv_seq=ex["dtv_seq"][b],
            dbar=ex["dbar"][b],
        )
        for name, val in nb.evaluate_bounds(rec, nb.PUBLISHED_BOUNDS).items():
            assert batch[name][b] == pytest.approx(val, rel=1e-12, abs=1e-15)


# --------------------------------------------------------------------------- audit
@pytest.fixture(scope="module")
def claims():
    return paper.audit(quick=True)


def test_audit_covers_every_claim(claims):
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids))
    for n in range(1, 25):
        assert any(i.split(".")[0] == f"C{n:02d}" for i in ids), n
    assert "S9.halved_constants" in ids
    assert {f"C01.{k}" for k in nb.PUBLISHED_BOUNDS} <= set(ids)
    for c in claims:
        assert c.verdict in paper.CLAIM_VERDICTS and c.evidence and c.source
        assert "proof" not in c.evidence.lower() or any(
            w in c.evidence.lower()
            for w in ("not a proof", "proof sketch", "symbolic", "proof is", "proof of")
            + ("own proof", "the proof's", "checked proof")
        ), c


def test_audit_findings(claims):
    v = {c.id: c.verdict for c in claims}
    assert v["C04.le_4Teps"] == "holds"
    assert v["C04.cap_position"] == "imprecise"
    assert v["C02.pm_kl"] == "imprecise"
    assert v["C10"] == "caveat"
    assert v["C12"] == "fails" and v["C13"] == "fails"
    assert v["C15.unique"] == "fails" and v["C18"] == "fails"
    assert all(v[f"C01.{k}"] == "holds" for k in nb.PUBLISHED_BOUNDS)
    cells = {c.claim_id: c for c in paper.paper_tables()}
    to_v = {"match": "holds", "rounding": "imprecise", "mismatch": "fails"}
    assert all(v[i] == to_v[c.verdict] for i, c in cells.items())


def test_evidence_provider_can_fail_a_bound(monkeypatch):
    monkeypatch.setattr(paper, "_EVIDENCE", {})
    search = paper._Search(
        10, dict.fromkeys(nb.PUBLISHED_BOUNDS, 0.5), dict.fromkeys(nb.PUBLISHED_BOUNDS, 1.0), "fake"
    )
    paper.register_evidence(
        "C01", lambda: {"pm_kl": {"worst_ratio": 1.5, "instances": 7, "description": "probe"}}
    )

    def broken():
        raise RuntimeError("boom")

    paper.register_evidence("C01", broken)
    out = {c.id: c for c in paper._c01(search)}
    assert out["C01.pm_kl"].verdict == "fails" and "1.5000 over 7" in out["C01.pm_kl"].evidence
    assert out["C01.mix_kl"].verdict == "holds" and "pending" in out["C01.mix_kl"].evidence
    assert "RuntimeError: boom" in out["C01.mix_kl"].evidence
    with pytest.raises(ValueError, match="^claim_id"):
        paper.register_evidence("pm_kl", broken)


def test_provider_modules_load_lazily(monkeypatch):
    monkeypatch.setattr(paper, "_EVIDENCE", {})
    monkeypatch.setattr(paper, "_EVIDENCE_MODULES", ("trm_bounds.no_such_evidence_module",))
    assert paper._load_providers() == []

    def missing_dependency(name):
        raise ModuleNotFoundError("No module named 'not_installed'", name="not_installed")

    monkeypatch.setattr(paper.importlib, "import_module", missing_dependency)
    with pytest.raises(ModuleNotFoundError):
        paper._load_providers()


# --------------------------------------------------------------------------- CLI and figures job
def test_cli_table_and_audit(tmp_path, capsys):
    assert cli.main(["table", "--json", "--out", str(tmp_path / "t")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"table", "row", "column", "computed", "published", "printed_precision", "verdict", "note"} <= set(
        data[0]
    )
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["table.csv", "table.json", "table.md"]
    assert cli.main(["table"]) == 0
    assert capsys.readouterr().out.startswith("# TRM paper tables")


def test_cli_bad_out_exits_2_and_writes_nothing(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for cmd in ("table", "audit"):
        assert cli.main([cmd, "--out", str(f)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"trm-bounds {cmd}: out")
    assert f.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_figures_job_and_audit_json(claims, tmp_path, monkeypatch):
    monkeypatch.setattr(paper, "audit", lambda quick=False: claims)
    records = paper._figures_job(tmp_path, quick=True)
    assert {r["path"] for r in records} == {"table.md", "table.csv", "table.json", "audit.md", "audit.json"}
    for r in records:
        assert (tmp_path / r["path"]).stat().st_size > 0 and r["shows"]
    data = json.loads((tmp_path / "audit.json").read_text())
    assert set(data[0]) == {"id", "claim", "verdict", "evidence", "source"}
    assert "paper_tables" in __import__("trm_bounds.figures", fromlist=["JOBS"]).JOBS
