"""Figure files that are the same bytes on every run (`trm-bounds figures` leaves a clean clone).

Matplotlib writes the creation time into a PDF's info dictionary; `save_figure` drops it (and
the modification time), so a PDF depends only on the figure, the fonts and the matplotlib
version. A PNG carries only a constant "Software" tag (the matplotlib version).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["save_figure", "save_png_pdf"]

_FIXED_METADATA = {".pdf": {"CreationDate": None, "ModDate": None}, ".svg": {"Date": None}}


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """`fig.savefig(path, **kwargs)` without run-dependent metadata (dates); returns the path."""
    path = Path(path)
    meta = _FIXED_METADATA.get(path.suffix.lower())
    if meta is not None:
        kwargs["metadata"] = {**meta, **kwargs.get("metadata", {})}
    fig.savefig(path, **kwargs)
    return path


def save_png_pdf(fig, out_dir: str | Path, stem: str, dpi: int = 130) -> list[str]:
    """Write out_dir/stem.png and out_dir/stem.pdf (`save_figure`), close the figure; the names written."""
    import matplotlib.pyplot as plt

    names = []
    for ext in ("png", "pdf"):
        save_figure(fig, Path(out_dir) / f"{stem}.{ext}", dpi=dpi)
        names.append(f"{stem}.{ext}")
    plt.close(fig)
    return names
