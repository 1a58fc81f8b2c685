"""The audit of the TRM paper's claims (docs/theory.md section 10): run it, render it, write it.

`audit()` returns every claim C01..C24 (split into sub-ids) and S9 as a `Claim` with a verdict
(holds | fails | caveat | imprecise | unchecked) and its evidence, computed now by the two claim groups
(`claims_bounds`: the bounds themselves; `claims_practice`: surrogates, masks, estimators)
from the regenerated tables (`tables`), the audit's search (`search`) and the measurements of
`trm_bounds.audit.evidence`. `figures_job` is the `trm-bounds figures` job "paper_tables":
tables and audit, run last so that the audit reads the measurements of the same run.

Evidence that cannot be computed or loaded makes `audit()` raise `UncheckedEvidence` (naming
it) unless `allow_unchecked`; then those claims say "unchecked". The measurements are read
from an explicit folder (`trm_bounds.audit.outputs`), named in the evidence text.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .claim import CLAIM_VERDICTS, EVIDENCE, Claim, UncheckedEvidence, evidence_run, mark_unchecked, measured
from .claims_bounds import bound_claims, c09_claims, c22_claims
from .claims_practice import practice_claims
from .outputs import measurements_label, reading_measurements
from .search import tiny_search
from .tables import T_PAPER, md_escape, paper_tables, write_tables, write_texts

__all__ = ["audit", "claims_to_markdown", "write_audit", "prepare", "figures_job"]


def audit(
    quick: bool = False, *, measurements: str | Path | None = None, allow_unchecked: bool = False
) -> list[Claim]:
    """Every claim of docs/theory.md section 10 with a verdict and evidence computed now.

    quick=True uses a smaller random search for C01 / section 9 (150 instead of 400 pairs per batch).
    measurements: the folder holding the studies' JSON (`trm_bounds.audit.outputs`; default: the
    folder in use, else the source checkout's paper_figures/); it must exist.
    allow_unchecked: when some evidence cannot be computed or loaded, return its claims with
    verdict "unchecked" instead of raising `UncheckedEvidence`.
    """
    if measurements is not None:
        measurements = Path(measurements)
        if not measurements.is_dir():
            raise ValueError(f"measurements: {measurements} is not a directory")
        with reading_measurements([measurements]):
            return audit(quick, allow_unchecked=allow_unchecked)
    cells = paper_tables()
    search = tiny_search(n_batches=6, batch=150 if quick else 400)
    with evidence_run() as failures:
        claims = [*bound_claims(search), *c09_claims(cells), *practice_claims(), *c22_claims(cells)]
        for key in EVIDENCE:  # a registered provider that no claim text shows still must not fail
            measured(key)
    claims = mark_unchecked(claims, failures)
    claims = sorted(claims, key=lambda c: c.id.split(".")[0])  # stable: C01 .. C24, S9
    if failures and not allow_unchecked:
        raise UncheckedEvidence(dict(failures), claims)
    return claims


def verdict_summary(claims: list[Claim]) -> str:
    """ "Verdicts: 73 holds, 7 fails, ... ." ("unchecked" shown only when some claim is)."""
    counts = {v: sum(c.verdict == v for c in claims) for v in CLAIM_VERDICTS}
    shown = ", ".join(f"{n} {v}" for v, n in counts.items() if n or v != "unchecked")
    return (
        f"Verdicts: {shown}. Evidence is computed when the command runs; a numeric check is never "
        "called a proof."
    )


def claims_to_markdown(claims: list[Claim], measurements: str | None = None) -> str:
    """The audit as one Markdown table with a verdict summary (and the measurement folder)."""
    out = [
        "# Audit of the TRM paper's claims (docs/theory.md section 10)",
        "",
        verdict_summary(claims),
        "",
        *([f"Measurements read from: {measurements}.", ""] if measurements else []),
        "| id | verdict | claim | evidence | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in claims:
        out.append(f"| {c.id} | {c.verdict} | {md_escape(c.claim)} | {md_escape(c.evidence)} | {c.source} |")
    return "\n".join(out) + "\n"


def write_audit(
    out_dir: Path, claims: list[Claim] | None = None, measurements: str | None = None
) -> list[Path]:
    """Write audit.md and audit.json into out_dir (both rendered before either is written);
    `measurements` names the measurement folder in audit.md (default: the one in use)."""
    claims = audit() if claims is None else claims
    measurements = measurements_label() if measurements is None else measurements
    texts = {
        "audit.md": claims_to_markdown(claims, measurements),
        "audit.json": json.dumps([asdict(c) for c in claims], indent=2) + "\n",
    }
    return write_texts(Path(out_dir), texts)


def prepare(quick: bool) -> None:
    """Compute, once per process, the audit's evidence that reads no study output: the sympy
    derivations, the halved-constants search and the exact adversarial search (all cached), so
    that `figures_job` afterwards only reads the measurements. `trm-bounds figures` calls this
    while it waits for background jobs; the audit's content does not depend on whether it ran."""
    from ..symbolic import derivations
    from .evidence.exact import c01_evidence
    from .evidence.refined import halved_constants_evidence

    derivations()
    halved_constants_evidence()
    c01_evidence()


def figures_job(out_dir: Path, quick: bool) -> list[dict]:
    """`trm-bounds figures` job: table.{md,csv,json} and audit.{md,json} into out_dir."""
    cells = paper_tables()
    claims = audit(quick=quick)
    write_tables(out_dir, cells)
    write_audit(out_dir, claims)
    shows = {
        "table.md": "every table and worked number of the TRM paper (v1-v3), recomputed, with verdicts",
        "table.csv": "the regenerated table cells (CSV)",
        "table.json": "the regenerated table cells (JSON, docs/formats.md format)",
        "audit.md": "every claim of docs/theory.md section 10 with verdict and computed evidence",
        "audit.json": "the audit (JSON, docs/formats.md format)",
    }
    return [{"path": p, "shows": s, "inputs": {"T": T_PAPER, "quick": quick}} for p, s in shows.items()]
