"""One audited claim, and the measured evidence attached to claims (docs/theory.md section 10).

`Claim` is the docs/formats.md record of `trm-bounds audit --json`. `EVIDENCE` maps a claim id
("C01", "C11", ...) to the functions that measure it; the built-in ones are imported here by
name from `trm_bounds.audit.evidence` and listed in one literal dict. `register_evidence`
adds one more (a user's own measurement); `measured(claim)` calls them, reporting an error
of a provider as text instead of hiding it.

An error of a provider (it raised, or its measurement file could not be read) never leaves a
claim saying "holds": inside `evidence_run()` (which `trm_bounds.audit.claims.audit` opens)
every provider runs once, its failures are collected, and `mark_unchecked` turns each claim
they feed into verdict "unchecked" with the failure first in its evidence. The audit then
raises `UncheckedEvidence` unless asked to proceed.

A provider returns, for C01: {bound_key: {"worst_ratio": float, "instances": int,
"description": str}} (measured worst |Error| / bound); for C11: {bound_key: {"slope": float,
"description": str}}; for any claim: {"evidence": str, ...}.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .evidence import chain as chain_evidence
from .evidence import exact as exact_evidence
from .evidence import trainer as trainer_evidence

__all__ = [
    "Claim",
    "CLAIM_VERDICTS",
    "EVIDENCE",
    "register_evidence",
    "measured",
    "measured_text",
    "evidence_run",
    "mark_unchecked",
    "UncheckedEvidence",
]

# "unchecked": the evidence could not be computed or loaded (docs/formats.md)
CLAIM_VERDICTS = ("holds", "fails", "caveat", "imprecise", "unchecked")


@dataclass(frozen=True)
class Claim:
    """One audited claim (docs/formats.md `trm-bounds audit --json`)."""

    id: str
    claim: str
    verdict: str
    evidence: str
    source: str

    def __post_init__(self):
        if self.verdict not in CLAIM_VERDICTS:
            raise ValueError(f"verdict must be one of {CLAIM_VERDICTS}, got {self.verdict!r}")


EVIDENCE: dict[str, list[Callable[[], dict]]] = {
    "C01": [exact_evidence.c01_evidence, chain_evidence.c01_evidence],
    "C11": [chain_evidence.c11_evidence],
    "C13": [trainer_evidence.c13_evidence],
    "C18": [trainer_evidence.c18_evidence],
    "C24": [trainer_evidence.c24_evidence],
}


def register_evidence(claim_id: str, fn: Callable[[], dict]) -> None:
    """Add an evidence provider `fn` for claim `claim_id` ("C01", "C11", "C13", ...); see module doc."""
    if not re.fullmatch(r"C\d\d(\.[\w.]+)?", claim_id):
        raise ValueError(f"claim_id must look like 'C01' or 'C09.v3.pm_tv', got {claim_id!r}")
    fns = EVIDENCE.setdefault(claim_id, [])
    if fn not in fns:
        fns.append(fn)


class UncheckedEvidence(RuntimeError):
    """Some evidence could not be computed or loaded; `failures` maps claim id -> messages and
    `claims` holds the audit with those claims marked "unchecked"."""

    def __init__(self, failures: dict[str, list[str]], claims: list[Claim]):
        self.failures, self.claims = failures, claims
        named = "; ".join(f"{cid}: {', '.join(msgs)}" for cid, msgs in failures.items())
        super().__init__(f"evidence could not be computed or loaded: {named}")


_RUNS: list[dict] = []  # open `evidence_run`s: {"results": {claim: [...]}, "failures": {claim: [...]}}


@contextlib.contextmanager
def evidence_run() -> Iterator[dict[str, list[str]]]:
    """Within the block every claim's providers run once (results reused); yields the failures
    {claim id: ["<provider>: <error>", ...]}, filled as providers fail."""
    run: dict = {"results": {}, "failures": {}}
    _RUNS.append(run)
    try:
        yield run["failures"]
    finally:
        _RUNS.remove(run)


def _provider_label(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"


def measured(claim: str) -> list[tuple[str, object]]:
    """[(provider name, result or exception)] for `claim`; a provider error is reported, not hidden."""
    run = _RUNS[-1] if _RUNS else None
    if run is not None and claim in run["results"]:
        return run["results"][claim]
    out = []
    for fn in EVIDENCE.get(claim, []):
        try:
            out.append((_provider_label(fn), fn()))
        except Exception as exc:  # noqa: BLE001 - reported in the evidence text, claim "unchecked"
            out.append((_provider_label(fn), exc))
    if run is not None:
        run["results"][claim] = out
        fails = [f"{label} raised {type(r).__name__}: {r}" for label, r in out if isinstance(r, Exception)]
        if fails:
            run["failures"][claim] = fails
    return out


def mark_unchecked(claims: list[Claim], failures: dict[str, list[str]]) -> list[Claim]:
    """Claims fed by failed evidence (id equal to, or a sub-id of, a failed key) as "unchecked"."""
    out = []
    for c in claims:
        msgs = [m for key, ms in failures.items() if c.id == key or c.id.startswith(key + ".") for m in ms]
        if msgs:
            text = (
                f"UNCHECKED: evidence could not be computed or loaded: {'; '.join(msgs)}. (The rest of "
                f"the evidence alone gave '{c.verdict}'.) {c.evidence}"
            )
            c = Claim(c.id, c.claim, "unchecked", text, c.source)
        out.append(c)
    return out


def measured_text(claim: str) -> str:
    """ "; measured: <provider>: <evidence>; ..." for a claim's providers, or "" when it has none."""
    parts = []
    for label, res in measured(claim):
        if isinstance(res, Exception):
            parts.append(f"{label} raised {type(res).__name__}: {res}")
        elif isinstance(res, dict) and "evidence" in res:
            parts.append(f"{label}: {res['evidence']}")
        else:
            parts.append(f"{label}: {json.dumps(res, default=str)[:400]}")
    return ("; measured: " + "; ".join(parts)) if parts else ""
