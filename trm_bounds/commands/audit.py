"""Audit every claim of the TRM paper (docs/theory.md section 10): id, verdict, computed evidence, source.

By default one line per claim (evidence cut to the terminal line; the full text is in
--claim ID, --markdown, --json and the files of --out). --claim C13 shows one claim in full;
an id prefix (--claim C09) shows every sub-claim. --json prints the JSON list (docs/formats.md,
"Table and audit JSON"); --out DIR also writes audit.md and audit.json there (existing ones only with --force).

Measurements (the studies' JSON: error_vs_horizon.json, training/train_figures.json) are read
from --measurements DIR, default the paper_figures/ folder of the source checkout the package
runs from (none in an installed wheel: then they are recomputed small); the folder is named
in the output and never taken from the current directory. Evidence that cannot be computed or
loaded makes the command exit 1 naming it, unless --allow-unchecked (its claims then say
"unchecked").
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

from .._json import dumps

AUDIT_FILES = ("audit.md", "audit.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the claims as a JSON list")
    p.add_argument("--markdown", action="store_true", help="print the full audit as one Markdown table")
    p.add_argument(
        "--claim",
        default=None,
        metavar="ID",
        help="show this claim in full (an id, or a prefix such as C09 for all its sub-claims)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="also write audit.md and audit.json into DIR (full text)"
    )
    p.add_argument("--force", action="store_true", help="with --out: replace existing audit.md / audit.json")
    p.add_argument(
        "--measurements",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with the studies' JSON written by `trm-bounds figures` (default: the source "
        "checkout's paper_figures/, if the package runs from one; else recomputed small)",
    )
    p.add_argument(
        "--allow-unchecked",
        action="store_true",
        help="when some evidence cannot be computed or loaded, print the audit with verdict "
        "'unchecked' for its claims instead of exiting 1",
    )
    p.add_argument("--quick", action="store_true", help="smaller random search for the C01 evidence")


def select_claims(claims: list, query: str) -> list:
    """The claims whose id is `query` or starts with `query` + "." (ValueError naming --claim if none)."""
    q = query.strip()
    chosen = [c for c in claims if c.id == q or c.id.startswith(q + ".")]
    if not chosen:
        tops = sorted(dict.fromkeys(c.id.split(".")[0] for c in claims))
        raise ValueError(f"claim: no claim {query!r}; ids: {', '.join(tops)} (sub-ids like C01.pm_kl)")
    return chosen


def one_line(c, width: int) -> str:
    """`<id> <verdict> <claim> | <evidence>` on one line, cut to `width` characters with an ellipsis."""
    text = f"{c.id:<22} {c.verdict:<10} " + " ".join(f"{c.claim} | {c.evidence}".split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def full_text(c) -> str:
    """One claim in full: id, verdict, source, the claim and its evidence, wrapped."""
    wrap = textwrap.TextWrapper(width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(
        [f"{c.id}: {c.verdict} (source: {c.source})", wrap.fill(c.claim), "evidence:", wrap.fill(c.evidence)]
    )


class _Unchecked(Exception):
    """Some evidence could not be checked (already reported on stderr): exit 1, write nothing."""


def _audit(args: argparse.Namespace, label: str) -> list:
    from ..audit.claim import UncheckedEvidence
    from ..audit.claims import audit

    try:
        return audit(quick=args.quick, allow_unchecked=args.allow_unchecked)
    except UncheckedEvidence as exc:
        for cid, msgs in exc.failures.items():
            sys.stderr.write(f"trm-bounds audit: {cid}: {'; '.join(msgs)}\n")
        sys.stderr.write(
            "trm-bounds audit: the evidence above could not be computed or loaded (measurements read "
            f"from: {label}); --allow-unchecked prints the audit with verdict 'unchecked' for it\n"
        )
        raise _Unchecked from None


def run(args: argparse.Namespace) -> int:
    from .._outdir import staged_output
    from ..audit import outputs
    from ..audit.claims import claims_to_markdown, verdict_summary, write_audit

    if args.claim is not None and not re.fullmatch(r"[CS]\d+(\.[\w.]+)?", args.claim.strip()):
        raise ValueError(f"claim: {args.claim!r} is not a claim id (like C13, C09 or C01.pm_kl)")
    if args.measurements is not None and not args.measurements.is_dir():
        raise ValueError(f"measurements: {args.measurements} is not a directory")
    try:
        with contextlib.ExitStack() as stack:
            # --out is checked before any work and written only when the audit succeeded
            stage = (
                None
                if args.out is None
                else stack.enter_context(staged_output(args.out, AUDIT_FILES, args.force))
            )
            if args.measurements is not None:
                stack.enter_context(outputs.reading_measurements([args.measurements]))
            label = outputs.measurements_label()
            claims = _audit(args, label)
            shown = select_claims(claims, args.claim) if args.claim else claims
            if stage is not None:
                write_audit(stage, claims, label)
    except _Unchecked:
        return 1
    if args.json:
        print(dumps([asdict(c) for c in shown], indent=2))
    elif args.claim:
        print("\n\n".join(full_text(c) for c in shown))
    elif args.markdown:
        print(claims_to_markdown(claims, label), end="")
    else:
        width = max(80, shutil.get_terminal_size((160, 24)).columns)
        print("# Audit of the TRM paper's claims (docs/theory.md section 10)\n")
        print(verdict_summary(claims))
        print(f"Measurements read from: {label}.\n")
        for c in claims:
            print(one_line(c, width))
        print(
            "\nOne line per claim, evidence cut short: `trm-bounds audit --claim ID` shows a claim in full "
            "(an id prefix such as C09: its sub-claims); --markdown, --json and --out DIR hold every text."
        )
    return 0
