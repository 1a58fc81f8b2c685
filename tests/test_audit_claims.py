"""Tests for trm_bounds/audit/claim.py, claims.py, claims_bounds.py, claims_practice.py: every claim,
the known findings, evidence wiring, the CLI commands table / audit and the figures job."""

from __future__ import annotations

import json

import pytest

import trm_bounds
from trm_bounds import bounds as nb
from trm_bounds import cli
from trm_bounds.audit import claim, claims_bounds
from trm_bounds.audit import claims as claims_mod
from trm_bounds.audit.claim import CLAIM_VERDICTS
from trm_bounds.audit.claims import audit
from trm_bounds.audit.search import Search
from trm_bounds.audit.tables import paper_tables


# --------------------------------------------------------------------------- audit
@pytest.fixture(scope="module")
def claims():
    return audit(quick=True)


def test_audit_covers_every_claim(claims):
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids))
    for n in range(1, 25):
        assert any(i.split(".")[0] == f"C{n:02d}" for i in ids), n
    assert "S9.halved_constants" in ids
    assert {f"C01.{k}" for k in nb.PUBLISHED_BOUNDS} <= set(ids)
    for c in claims:
        assert c.verdict in CLAIM_VERDICTS and c.evidence and c.source
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
    cells = {c.claim_id: c for c in paper_tables()}
    to_v = {"match": "holds", "rounding": "imprecise", "mismatch": "fails"}
    assert all(v[i] == to_v[c.verdict] for i, c in cells.items())


def test_evidence_provider_can_fail_a_bound(monkeypatch):
    monkeypatch.setattr(claim, "EVIDENCE", {})
    search = Search(
        10, dict.fromkeys(nb.PUBLISHED_BOUNDS, 0.5), dict.fromkeys(nb.PUBLISHED_BOUNDS, 1.0), "fake"
    )
    claim.register_evidence(
        "C01", lambda: {"pm_kl": {"worst_ratio": 1.5, "instances": 7, "description": "probe"}}
    )

    def broken():
        raise RuntimeError("boom")

    claim.register_evidence("C01", broken)
    out = {c.id: c for c in claims_bounds._c01(search)}
    assert out["C01.pm_kl"].verdict == "fails" and "1.5000 over 7" in out["C01.pm_kl"].evidence
    assert out["C01.mix_kl"].verdict == "holds" and "pending" in out["C01.mix_kl"].evidence
    assert "RuntimeError: boom" in out["C01.mix_kl"].evidence
    with pytest.raises(ValueError, match="^claim_id"):
        claim.register_evidence("pm_kl", broken)


def test_builtin_evidence_is_imported_explicitly():
    """The claims' evidence is a literal dict of imported functions (no names, no registration)."""
    from trm_bounds.audit.evidence import chain, exact, trainer

    assert claim.EVIDENCE["C01"] == [exact.c01_evidence, chain.c01_evidence]
    assert claim.EVIDENCE["C11"] == [chain.c11_evidence]
    assert [claim.EVIDENCE[c][0] for c in ("C13", "C18", "C24")] == [
        trainer.c13_evidence,
        trainer.c18_evidence,
        trainer.c24_evidence,
    ]


def test_measured_text_reports_a_provider_error(monkeypatch):
    monkeypatch.setattr(claim, "EVIDENCE", {"C13": [lambda: {"evidence": "ten steps"}]})
    assert claim.measured_text("C13").endswith(": ten steps") and claim.measured_text("C99") == ""

    def broken():
        raise KeyError("totals")

    claim.register_evidence("C13", broken)
    assert "raised KeyError" in claim.measured_text("C13")


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
    monkeypatch.setattr(claims_mod, "audit", lambda quick=False, **kw: claims)
    records = claims_mod.figures_job(tmp_path, quick=True)
    assert {r["path"] for r in records} == {"table.md", "table.csv", "table.json", "audit.md", "audit.json"}
    for r in records:
        assert (tmp_path / r["path"]).stat().st_size > 0 and r["shows"]
    data = json.loads((tmp_path / "audit.json").read_text())
    assert set(data[0]) == {"id", "claim", "verdict", "evidence", "source"}


def test_package_is_callable_like_the_old_function(claims):
    """`trm_bounds.audit` is the package now; calling it still runs the audit (public name kept)."""
    from trm_bounds import audit as pkg

    assert pkg is trm_bounds.audit and callable(pkg)
    assert [c.id for c in claims] == [c.id for c in claims_mod.audit(quick=True)]
    assert trm_bounds.Claim is claim.Claim and trm_bounds.paper_tables is paper_tables
    assert trm_bounds.register_evidence is claim.register_evidence


# --------------------------------------------------------------------------- unchecked evidence
def test_failed_evidence_is_unchecked_never_holds(claims, monkeypatch):
    def boom():
        raise OSError("measurement file gone")

    monkeypatch.setitem(claim.EVIDENCE, "C13", [boom])
    with pytest.raises(
        claim.UncheckedEvidence, match=r"C13: .*boom raised OSError: measurement file gone"
    ) as info:
        audit(quick=True)
    got = {c.id: c for c in info.value.claims}
    assert got["C13"].verdict == "unchecked" and got["C13"].evidence.startswith("UNCHECKED")
    assert "measurement file gone" in got["C13"].evidence
    before = {c.id: c for c in claims}
    assert [i for i in got if got[i] != before[i]] == ["C13"]  # nothing else changed
    assert set(info.value.failures) == {"C13"}
    assert "unchecked" in CLAIM_VERDICTS and "1 unchecked" in claims_mod.verdict_summary(info.value.claims)


def test_unreadable_measurement_file_exits_1_naming_it(tmp_path, capsys):
    (tmp_path / "error_vs_horizon.json").write_text("{truncated")
    argv = ["audit", "--quick", "--measurements", str(tmp_path), "--json"]
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and "C01: " in err and "C11: " in err and "--allow-unchecked" in err
    assert f"error_vs_horizon.json in {tmp_path} cannot be read" in err
    assert cli.main([*argv, "--allow-unchecked"]) == 0
    data = {c["id"]: c for c in json.loads(capsys.readouterr().out)}
    for cid, c in data.items():
        if cid.startswith(("C01.", "C11.")):
            assert c["verdict"] == "unchecked" and "cannot be read" in c["evidence"], cid
        else:
            assert c["verdict"] != "unchecked", cid


def test_measurements_must_be_a_folder(tmp_path, capsys):
    assert cli.main(["audit", "--measurements", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("trm-bounds audit: measurements:")


# --------------------------------------------------------------------------- terminal listing, --claim
@pytest.fixture
def fast_audit(claims, monkeypatch):
    monkeypatch.setattr(claims_mod, "audit", lambda quick=False, **kw: claims)
    return claims


def test_default_listing_is_one_line_per_claim(fast_audit, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert cli.main(["audit"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# Audit") and lines[2].startswith("Verdicts: ")
    rows = [ln for ln in lines if ln.split(" ")[0] in {c.id for c in fast_audit}]
    assert [r.split()[0] for r in rows] == [c.id for c in fast_audit]
    assert all(len(r) <= 120 for r in rows) and sum(r.endswith("\u2026") for r in rows) > len(rows) // 2
    assert "--claim ID" in lines[-1]


def test_claim_shows_one_claim_in_full_and_a_prefix_its_sub_claims(fast_audit, capsys):
    c13 = next(c for c in fast_audit if c.id == "C13")
    assert cli.main(["audit", "--claim", "C13"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"C13: {c13.verdict}") and " ".join(out.split()).endswith(
        " ".join(c13.evidence.split())
    )
    assert cli.main(["audit", "--claim", "C09"]) == 0
    shown = [ln.split(":")[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("C09")]
    assert shown == [c.id for c in fast_audit if c.id.startswith("C09.")] and len(shown) > 1
    assert cli.main(["audit", "--claim", "C09", "--json"]) == 0
    assert {c["id"] for c in json.loads(capsys.readouterr().out)} == set(shown)
    for bad in ("C99", "nonsense"):
        assert cli.main(["audit", "--claim", bad]) == 2
        assert capsys.readouterr().err.startswith("trm-bounds audit: claim:")


def test_table_and_audit_out_refuse_to_overwrite_without_force(fast_audit, tmp_path, capsys):
    out = tmp_path / "o"
    assert cli.main(["audit", "--out", str(out), "--json"]) == 0
    (out / "audit.md").write_text("mine")
    capsys.readouterr()
    assert cli.main(["audit", "--out", str(out), "--json"]) == 2
    assert "--force" in capsys.readouterr().err and (out / "audit.md").read_text() == "mine"
    assert cli.main(["audit", "--out", str(out), "--json", "--force"]) == 0
    assert (out / "audit.md").read_text().startswith("# Audit")
    assert cli.main(["table", "--out", str(out), "--json"]) == 0  # other names: no clash
    capsys.readouterr()
    assert cli.main(["table", "--out", str(out), "--json"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging folder left


def test_prepare_computes_the_measurement_free_evidence_once():
    """claims.prepare (run by `trm-bounds figures` while it waits for background jobs) fills the
    caches of the sympy derivations, the halved-constants search and the exact adversarial search,
    so that the audit afterwards only reads the studies' outputs."""
    from trm_bounds import symbolic
    from trm_bounds.audit.evidence import exact, refined

    cached = (symbolic.derivations, refined.halved_constants_evidence, exact._measure)
    before = [f() for f in cached]  # computed on demand (cached from here on)
    for f in cached:
        f.cache_clear()
    claims_mod.prepare(quick=False)
    assert [f.cache_info().currsize for f in cached] == [1, 1, 1]
    assert [f.cache_info().misses for f in cached] == [1, 1, 1]
    assert [f() for f in cached] == before  # the same evidence as computed on demand
