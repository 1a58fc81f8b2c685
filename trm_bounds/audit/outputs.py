"""Where the audit looks for measurements the studies wrote (study and training JSON on disk).

Search order: the directory `trm-bounds figures` is filling right now (environment variable
TRM_BOUNDS_FIGURES_DIR, set by `trm_bounds.figures.make_figures` for the length of its run, so
the audit that runs last reads the measurements made in the same run), then ./paper_figures,
then the paper_figures/ beside the package (a source checkout; absent in an installed wheel).
"""

from __future__ import annotations

import os
from pathlib import Path

FIGURES_DIR_ENV = "TRM_BOUNDS_FIGURES_DIR"
_REPO_FIGURES = Path(__file__).resolve().parents[2] / "paper_figures"  # a source checkout's, if any


def output_dirs() -> tuple[Path, ...]:
    """Directories searched for experiment outputs, most recent first, without repeats."""
    dirs = []
    if os.environ.get(FIGURES_DIR_ENV):
        dirs.append(Path(os.environ[FIGURES_DIR_ENV]))
    dirs += [Path.cwd() / "paper_figures", _REPO_FIGURES]
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return tuple(out)


def find_output(relative: str | Path, dirs: tuple[Path, ...] | None = None) -> Path | None:
    """The first existing `dir / relative` over `dirs` (default `output_dirs()`), else None."""
    for d in output_dirs() if dirs is None else dirs:
        path = Path(d) / relative
        if path.is_file():
            return path
    return None
