"""Regenerate every table and worked number of the TRM paper (docs/theory.md section 6) with verdicts.

Markdown on stdout by default, a JSON list of cells with --json (docs/formats.md, "Table and audit JSON");
--out DIR also writes table.md, table.csv and table.json there.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from .._json import dumps
from .._validate import check_output_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the cells as a JSON list instead of Markdown")
    p.add_argument(
        "--out", type=Path, default=None, help="also write table.md, table.csv, table.json into DIR"
    )


def run(args: argparse.Namespace) -> int:
    from ..audit.tables import cells_to_markdown, paper_tables, write_tables  # sympy: only when run

    if args.out is not None:
        check_output_dir(args.out, "out")  # before any work: a file, a read-only place
    cells = paper_tables()
    if args.out is not None:
        write_tables(args.out, cells)
    if args.json:
        print(dumps([{**asdict(c), "id": c.claim_id} for c in cells], indent=2))
    else:
        print(cells_to_markdown(cells), end="")
    return 0
