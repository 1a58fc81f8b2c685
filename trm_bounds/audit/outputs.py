"""Where the audit reads the measurements that the studies wrote (study and training JSON).

The folder is always explicit, never the current directory:

- `trm-bounds audit --measurements DIR` / `audit(measurements=DIR)`: that folder;
- default: the `paper_figures/` folder of the source checkout the package runs from
  (`default_measurements()`); none in an installed wheel;
- `trm-bounds figures`: the folder the run is filling (`reading_measurements`), so the audit,
  which runs last, reads the measurements made in the same run (and, for `--only`, those
  already published in the output folder).

A measurement file missing there is recomputed small by its evidence function (the evidence
text says so). A file there that cannot be read makes the evidence function raise, and the
audit then reports the claim as "unchecked" (`trm_bounds.audit.claim`). Every evidence text
names the file it read as `describe(path)`: the path relative to the folder, and the folder's
label (the folder as given, or "this folder" for `trm-bounds figures`, so that the tracked
audit holds no absolute path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "default_measurements",
    "reading_measurements",
    "output_dirs",
    "measurements_label",
    "find_output",
    "describe",
]

_REPO_FIGURES = Path(__file__).resolve().parents[2] / "paper_figures"  # a source checkout's, if any
_READING: list[tuple[tuple[Path, ...], str]] = []  # innermost `reading_measurements` last


def default_measurements() -> Path | None:
    """The source checkout's paper_figures/ (beside the package), or None in an installed wheel."""
    return _REPO_FIGURES if _REPO_FIGURES.is_dir() else None


@contextlib.contextmanager
def reading_measurements(dirs: Sequence[str | Path], label: str | None = None) -> Iterator[None]:
    """Within the block, evidence reads measurements from `dirs` (first found wins), shown as `label`
    (default: the first folder as given). An empty `dirs` means: recompute everything small."""
    dirs = tuple(Path(d) for d in dirs)
    _READING.append((dirs, label if label is not None else (str(dirs[0]) if dirs else "none")))
    try:
        yield
    finally:
        _READING.pop()


def output_dirs() -> tuple[Path, ...]:
    """The folders evidence reads measurements from now (see the module doc)."""
    if _READING:
        return _READING[-1][0]
    d = default_measurements()
    return () if d is None else (d,)


def measurements_label() -> str:
    """How the audit names the measurement folder in its output."""
    if _READING:
        return _READING[-1][1]
    d = default_measurements()
    return "none (every measurement recomputed small)" if d is None else str(d)


def find_output(relative: str | Path, dirs: tuple[Path, ...] | None = None) -> Path | None:
    """The first existing `dir / relative` over `dirs` (default `output_dirs()`), else None."""
    for d in output_dirs() if dirs is None else dirs:
        path = Path(d) / relative
        if path.is_file():
            return path
    return None


def describe(path: Path) -> str:
    """'<path relative to its measurement folder> in <label>' for a file found by `find_output`."""
    path = Path(path)
    for d in output_dirs():
        with contextlib.suppress(ValueError):
            return f"{path.relative_to(d).as_posix()} in {measurements_label()}"
    return str(path)
