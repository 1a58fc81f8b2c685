"""One audited claim, and the measured evidence attached to claims (THEORY.md section 10).

`Claim` is the INTERFACES.md record of `trm-bounds audit --json`. `EVIDENCE` maps a claim id
("C01", "C11", ...) to the functions that measure it; the built-in ones are imported here by
name from `trm_bounds.audit.evidence` and listed in one literal dict. `register_evidence`
adds one more (a user's own measurement); `measured(claim)` calls them, reporting an error
of a provider as text instead of hiding it.

A provider returns, for C01: {bound_key: {"worst_ratio": float, "instances": int,
"description": str}} (measured worst |Error| / bound); for C11: {bound_key: {"slope": float,
"description": str}}; for any claim: {"evidence": str, ...}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from .evidence import chain as chain_evidence
from .evidence import exact as exact_evidence
from .evidence import trainer as trainer_evidence

__all__ = ["Claim", "CLAIM_VERDICTS", "EVIDENCE", "register_evidence", "measured", "measured_text"]

CLAIM_VERDICTS = ("holds", "fails", "caveat", "imprecise")


@dataclass(frozen=True)
class Claim:
    """One audited claim (INTERFACES.md `trm-bounds audit --json`)."""

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


def measured(claim: str) -> list[tuple[str, object]]:
    """[(provider name, result or exception)] for `claim`; a provider error is reported, not hidden."""
    out = []
    for fn in EVIDENCE.get(claim, []):
        label = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"
        try:
            out.append((label, fn()))
        except Exception as exc:  # noqa: BLE001 - reported in the evidence text
            out.append((label, exc))
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
