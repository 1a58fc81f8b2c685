"""The mismatch options every command shares: --mismatch NAME, --strength S, --list-mismatch.

One spelling on every command (trm_bounds.mismatch is the vocabulary); the registry is
imported only when a command runs or lists it, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import sys

LIST_HELP = "list the mismatch mechanisms (what each simulates, its strength and default, targets) and exit"


class _ListMismatch(argparse.Action):
    """Print the registry, one mechanism per block, and exit 0 (before required options are checked)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from ..mismatch import MISMATCH_TARGETS, mismatch_table

        for row in mismatch_table():
            old = ", ".join(f"{o} ({t})" for t, o in row["old_spellings"].items()) or "-"
            print(f"{row['name']}: {row['description']} [{row['simulates']}]")
            print(f"    --strength: {row['strength']}; default {row['default']}")
            print(f"    applies to: {', '.join(row['targets'])}; old spellings: {old}")
        print("targets: " + "; ".join(f"{t} = {w}" for t, w in MISMATCH_TARGETS.items()))
        parser.exit(0)


def add_mismatch_arguments(p: argparse.ArgumentParser, *, default: str, target_help: str) -> None:
    """--mismatch, --strength and --list-mismatch, the same on every command."""
    p.add_argument("--mismatch", default=default, help=f"mismatch mechanism ({target_help}; --list-mismatch)")
    p.add_argument(
        "--strength",
        default=None,
        help="its strength S (a number, or bf16/fp16 for precision; default: the mechanism's own; "
        "several mechanisms: one each, joined by '+')",
    )
    p.add_argument("--list-mismatch", action=_ListMismatch, help=LIST_HELP)


def resolve_mismatch_args(args: argparse.Namespace, target: str):
    """((mechanism, S), ...) of --mismatch/--strength on `target`, and one note per old spelling.

    The command prints the notes (`print_notes`) once its inputs are valid, so that a bad
    input still ends in exactly one line.
    """
    from ..mismatch import resolve_mismatch

    chosen, notes = resolve_mismatch(args.mismatch, args.strength, target=target)
    if "=" in args.mismatch:  # NAME=VALUE: the old form of --mismatch NAME --strength VALUE
        names = "+".join(m.name for m, _ in chosen)
        values = "+".join(str(s) for _, s in chosen)
        notes = (
            f"--mismatch {args.mismatch} is the old spelling; use --mismatch {names} --strength {values}",
        )
    return chosen, notes


def print_notes(notes, prog: str) -> None:
    """One line on stderr per note: ``trm-bounds <command>: note: ...``."""
    for note in notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
