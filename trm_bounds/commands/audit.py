"""Audit every claim of the TRM paper (docs/theory.md section 10): id, verdict, computed evidence, source.

Markdown on stdout by default, a JSON list with --json (docs/formats.md, "Table and audit JSON"); --out DIR
also writes audit.md and audit.json there.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from .._json import dumps
from .._validate import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the claims as a JSON list instead of Markdown")
    p.add_argument("--out", type=Path, default=None, help="also write audit.md and audit.json into DIR")
    p.add_argument("--quick", action="store_true", help="smaller random search for the C01 evidence")


def run(args: argparse.Namespace) -> int:
    from ..audit.claims import audit, claims_to_markdown, write_audit  # sympy: only when run

    if args.out is not None:
        check_output_dir(args.out, "out")  # before any work: a file, a read-only place
    claims = audit(quick=args.quick)
    if args.out is not None:
        write_audit(args.out, claims)
    if args.json:
        print(dumps([asdict(c) for c in claims], indent=2))
    else:
        print(claims_to_markdown(claims), end="")
    return 0
