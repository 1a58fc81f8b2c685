"""Deprecated alias of the audit wing `trm_bounds.audit` (kept for one release).

Everything that was here now lives in one module per concept: `trm_bounds.audit.printed`
(parse_printed, printed_verdict, Printed), `trm_bounds.audit.tables` (TableCell,
paper_tables, writers), `trm_bounds.audit.claim` / `claims` (Claim, audit, register_evidence,
writers). `pm_kl_uncapped(T, delta)` is `float(trm_bounds.bounds.pm_kl_nocap(T, delta))`.
Importing this module warns (DeprecationWarning) and re-exports those names.
"""

from __future__ import annotations

import warnings

from .audit.claim import CLAIM_VERDICTS, Claim, register_evidence
from .audit.claims import audit, claims_to_markdown, write_audit
from .audit.printed import CELL_VERDICTS, Printed, parse_printed, printed_verdict
from .audit.tables import (
    CELL_FIELDS,
    T_PAPER,
    TableCell,
    cells_to_csv,
    cells_to_markdown,
    paper_tables,
    write_tables,
)
from .bounds import pm_kl_nocap

warnings.warn(
    "trm_bounds.paper is deprecated: use trm_bounds.audit (printed, tables, claim, claims)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "TableCell",
    "Claim",
    "Printed",
    "parse_printed",
    "printed_verdict",
    "paper_tables",
    "audit",
    "register_evidence",
    "cells_to_markdown",
    "cells_to_csv",
    "claims_to_markdown",
    "write_tables",
    "write_audit",
    "pm_kl_uncapped",
    "CELL_VERDICTS",
    "CLAIM_VERDICTS",
    "CELL_FIELDS",
    "T_PAPER",
]


def pm_kl_uncapped(T: int, delta: float) -> float:
    """Deprecated: `float(trm_bounds.bounds.pm_kl_nocap(T, delta))` (B_PM^KL without caps)."""
    return float(pm_kl_nocap(T, delta))
