"""The `trm-bounds` command line: one entry point, one subcommand per module.

`COMMANDS` below lists every subcommand once: its name, the module in `trm_bounds.commands`
that runs it, and the one line shown by `trm-bounds --help`. Each module defines::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int:   # prints JSON / writes files; returns exit code

Only the module of the command being run is imported (`trm-bounds bounds`, a numpy formula,
never loads torch, sympy or matplotlib); `trm-bounds --help` imports none. Command modules
import their heavy libraries inside `run` unless `add_arguments` needs them (e.g. the
choices of `exact --policy`). Commands parse, call one library function and print; logic
stays in the library.

Errors: a `ValueError` or `TypeError` (bad input) or an argparse error prints one line
``trm-bounds <command>: <message>`` on stderr and exits 2; nothing is written. An `OSError`
on a path the user named (unreadable input, an output that cannot be written) is bad input too
(exit 2). Anything else is a bug in trm_bounds: one line saying so, exit 1, and the traceback
only with TRM_BOUNDS_DEBUG=1 in the environment.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

# name -> (module in trm_bounds.commands, one line for `trm-bounds --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "audit": (
        "audit",
        "audit the paper's claims: verdict (holds/fails/caveat/imprecise) and evidence computed now",
    ),
    "bounds": (
        "bounds",
        "every bound for T, delta, eps, ...: source, tightest, can it certify (table; --json, --explain)",
    ),
    "certify": (
        "certify",
        "certificate of a batch of log-probs: a sample bound on |Error|, acceptance, conditional B*",
    ),
    "exact": ("exact", "exact J, surrogate, error, divergences and bounds of a policy pair (JSON)"),
    "figures": (
        "figures",
        "regenerate every figure and table (PNG+PDF, Markdown+CSV+JSON) and manifest.json",
    ),
    "plot-run": (
        "plot_run",
        "plot training runs (train --out RUN): exact J, acceptance, surrogate vs bound, certified steps",
    ),
    "plot-scaling": (
        "plot_scaling",
        "log-log figure of every bound vs horizon T (small and large divergence) + CSV",
    ),
    "table": (
        "table",
        "regenerate the paper's tables and worked numbers with match/rounding/mismatch verdicts",
    ),
    "train": (
        "train",
        "policy-gradient training with mismatch, masks and exact per-step certificates (steps.jsonl)",
    ),
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps each command's docstring layout and shows every option's default in `--help`
    (unless the help text already says it, or there is none: None / False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "default" not in text
            and default is not None
            and default is not False  # `0 in (None, False)` is True: compare by identity
            and default != argparse.SUPPRESS
            and action.nargs != 0
        ):
            text += " (default: %(default)s)"
        return text


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(2)


def command_module(name: str):
    """The module that runs command `name` (imported now, and only it)."""
    return importlib.import_module(f"{__package__}.commands.{COMMANDS[name][0]}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `trm-bounds` parser; only `command`'s options are added (its module is imported).

    Every subcommand is listed with its help line; the others accept no options here, which
    is harmless because argparse hands the rest of argv to the chosen subcommand only.
    """
    parser = _OneLineParser(
        prog="trm-bounds",
        description="Trust Region Masking error bounds: compute, measure exactly, apply, audit.",
    )
    parser.add_argument("--version", action="version", version=f"trm-bounds {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    for name, (_, help_line) in COMMANDS.items():
        p = sub.add_parser(name, help=help_line, formatter_class=_HelpFormatter)
        p.prog = f"trm-bounds {name}"
        if name == command:
            mod = command_module(name)
            p.description = mod.__doc__
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv: its first token that is not an option (top-level options
    `-h`, `--help`, `--version` take no value), if it is a known command."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def attach_negative_numbers(argv: Sequence[str]) -> list[str]:
    """``--delta -1e-3`` -> ``--delta=-1e-3`` (and ``-inf``, ``-2``, ...), up to a ``--`` token.

    argparse reads a token that starts with '-' as an option unless it looks like a plain
    negative decimal, so scientific notation and -inf would fail with "expected one argument"
    instead of reaching the real validation message. Only a number right after a long option
    without '=' is attached; everything else is passed on unchanged.
    """
    out: list[str] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            return out + tokens[i:]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if (
            tok.startswith("--")
            and "=" not in tok
            and nxt is not None
            and nxt.startswith("-")
            and _is_number(nxt)
        ):
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = attach_negative_numbers(sys.argv[1:] if argv is None else [str(a) for a in argv])
    parser = build_parser(_command_in(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (one line, status 2), --help and --version (0)
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # `trm-bounds ... | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback (output folders are staged: see _outdir)
        sys.stderr.write(f"trm-bounds {args.command}: interrupted\n")
        return 130
    except (ValueError, TypeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.filename is None:
            return _internal_error(args.command, exc)
        if os.environ.get("TRM_BOUNDS_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"trm-bounds {args.command}: {_one_line(exc)}\n")
        return 2
    except Exception as exc:  # a bug: one line, exit 1 (the traceback with TRM_BOUNDS_DEBUG=1)
        return _internal_error(args.command, exc)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _internal_error(command: str, exc: BaseException) -> int:
    if os.environ.get("TRM_BOUNDS_DEBUG"):
        traceback.print_exc()
        hint = ""
    else:
        hint = "; rerun with TRM_BOUNDS_DEBUG=1 for the traceback"
    sys.stderr.write(
        f"trm-bounds {command}: internal error ({type(exc).__name__}: {_one_line(exc)}); "
        f"this is a bug in trm_bounds, please report it{hint}\n"
    )
    return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
