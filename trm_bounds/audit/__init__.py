"""The audit wing: the paper's printed numbers, tables and claims checked against the library.

Modules, each one concept (data flows down this list):

- `printed`: a number as the paper prints it, and the verdict of a computed value against it;
- `tables`: every table cell and worked number regenerated (`paper_tables`), with writers;
- `search`: the audit's own random search for a counterexample to |Error| <= bound;
- `evidence/`: measurements by source (exact engine, chain study, trainer, halved constants);
- `outputs`: where measurements written by `trm-bounds figures` are found on disk;
- `claim`: the `Claim` record and the evidence attached to each claim (`EVIDENCE`);
- `claims_bounds`, `claims_practice`: the claims, in two groups;
- `claims`: `audit()`, its Markdown/JSON writers and the figures job.

The package is also callable: ``trm_bounds.audit(quick=False)`` runs `claims.audit`, so the
public function `trm_bounds.audit` keeps working now that `trm_bounds.audit` is this package.
Names below load on first use (PEP 562): `trm-bounds table` does not import the claims.
"""

from __future__ import annotations

import importlib
import sys
import types

_LAZY = {
    **dict.fromkeys(("Printed", "parse_printed", "printed_verdict", "CELL_VERDICTS"), "printed"),
    **dict.fromkeys(
        (
            "TableCell",
            "T_PAPER",
            "CELL_FIELDS",
            "paper_tables",
            "cells_to_markdown",
            "cells_to_csv",
            "write_tables",
        ),
        "tables",
    ),
    **dict.fromkeys(
        ("Claim", "CLAIM_VERDICTS", "EVIDENCE", "register_evidence", "UncheckedEvidence"), "claim"
    ),
    **dict.fromkeys(("audit", "claims_to_markdown", "write_audit", "figures_job"), "claims"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _AuditPackage(types.ModuleType):
    """This package's type: a module that can be called like the function `audit`."""

    def __call__(self, quick: bool = False, **kwargs):
        from .claims import audit

        return audit(quick=quick, **kwargs)


sys.modules[__name__].__class__ = _AuditPackage
