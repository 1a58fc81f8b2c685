"""The `trm-bounds` command line: one entry point, one subcommand per module.

Each module in `trm_bounds.commands` defines::

    HELP = "one line shown in `trm-bounds --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # prints JSON / writes files; returns exit code

and is found by name (module `plot_scaling` -> command `plot-scaling`). Commands parse,
call one library function and print; logic stays in the library.

Errors: a `ValueError` (bad input) or an argparse error prints one line
``trm-bounds <command>: <message>`` on stderr and exits 2; nothing is written.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands as _commands_pkg


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: {message}\n")
        raise SystemExit(2)


def _command_modules() -> dict[str, object]:
    mods = {}
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods[info.name.replace("_", "-")] = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="trm-bounds",
        description="Trust Region Masking error bounds: compute, measure exactly, apply, audit.",
    )
    parser.add_argument("--version", action="version", version=f"trm-bounds {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    for name, mod in _command_modules().items():
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "__doc__", None))
        p.prog = f"trm-bounds {name}"
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (one line, status 2), --help and --version (0)
        return int(exc.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ValueError as exc:
        msg = " ".join(str(exc).split())  # one line
        sys.stderr.write(f"trm-bounds {args.command}: {msg}\n")
        return 2
    except BrokenPipeError:  # `trm-bounds ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
