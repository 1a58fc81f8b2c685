"""Regenerate every table and worked number of the TRM paper (docs/theory.md section 6) with verdicts.

Markdown on stdout by default, a JSON list of cells with --json (docs/formats.md, "Table and audit JSON");
--out DIR also writes table.md, table.csv and table.json there (existing ones only with --force).
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict
from pathlib import Path

from .._json import dumps

TABLE_FILES = ("table.md", "table.csv", "table.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the cells as a JSON list instead of Markdown")
    p.add_argument(
        "--out", type=Path, default=None, help="also write table.md, table.csv, table.json into DIR"
    )
    p.add_argument("--force", action="store_true", help="with --out: replace existing table files")


def run(args: argparse.Namespace) -> int:
    from .._outdir import staged_output
    from ..audit.tables import cells_to_markdown, paper_tables, write_tables  # sympy: only when run

    with contextlib.ExitStack() as stack:  # --out checked before any work, written when all is done
        stage = (
            None
            if args.out is None
            else stack.enter_context(staged_output(args.out, TABLE_FILES, args.force))
        )
        cells = paper_tables()
        if stage is not None:
            write_tables(stage, cells)
    if args.json:
        print(dumps([{**asdict(c), "id": c.claim_id} for c in cells], indent=2))
    else:
        print(cells_to_markdown(cells), end="")
    return 0
