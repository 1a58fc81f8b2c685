"""Figure files that are the same bytes on every run (`trm-bounds figures` leaves a clean clone).

Matplotlib writes the creation time into a PDF's info dictionary; `save_figure` drops it (and
the modification time), so a PDF depends only on the figure, the fonts and the matplotlib
version. A PNG carries only a constant "Software" tag (the matplotlib version).

Log-axis tick labels: matplotlib's default log formatter writes every label as mathtext
("$\\mathdefault{10^{-3}}$"), and parsing one costs ~3-9 ms (pyparsing), per label, font size,
dpi and backend: about 4 s of CPU in a default `trm-bounds figures` run. `save_figure` swaps
that default formatter for a `PlainLogFormatter` (`_formatter_class`), which writes the same
label as plain Unicode text (10⁻³, 2×10⁴) and keeps mathtext only for what Unicode cannot write
(a fractional exponent).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

__all__ = ["save_figure", "save_png_pdf", "plain_log_label"]

_FIXED_METADATA = {".pdf": {"CreationDate": None, "ModDate": None}, ".svg": {"Date": None}}
_MATH = re.compile(r"^\$\\mathdefault\{(.*)\}\$$")
_POWER = re.compile(r"\^\{(-?\d+)\}")
_SUPERSCRIPT = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def plain_log_label(label: str) -> str:
    """A log formatter's mathtext label as plain text: "$\\mathdefault{10^{-3}}$" -> "10⁻³",
    "$\\mathdefault{2\\times10^{4}}$" -> "2×10⁴", "$\\mathdefault{0.5}$" -> "0.5", a leading
    minus as U+2212; any other label (a fractional exponent, plain text, "") unchanged."""
    m = _MATH.match(label)
    if m is None:
        return label
    body = _POWER.sub(lambda e: e.group(1).translate(_SUPERSCRIPT), m.group(1).replace("\\times", "\u00d7"))
    if any(c in body for c in "\\^{}$"):
        return label
    return "\u2212" + body[1:] if body.startswith("-") else body


@lru_cache(maxsize=1)
def _formatter_class():
    """`PlainLogFormatter`, made on first use (importing this module needs no matplotlib)."""
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLogFormatter(LogFormatterSciNotation):
        """matplotlib's default log-axis formatter, its labels as plain text (`plain_log_label`)."""

        def __call__(self, x, pos=None):
            return plain_log_label(super().__call__(x, pos))

    return PlainLogFormatter


def _plain_log_axes(fig) -> None:
    """Give every axis of `fig` that still has the default log formatter (major or minor) a
    `PlainLogFormatter` with the same settings (base, which ticks get labels)."""
    from matplotlib.ticker import LogFormatterSciNotation

    cls = _formatter_class()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for get, set_ in (
                (axis.get_major_formatter, axis.set_major_formatter),
                (axis.get_minor_formatter, axis.set_minor_formatter),
            ):
                fmt = get()
                if type(fmt) is LogFormatterSciNotation:
                    plain = cls.__new__(cls)
                    plain.__dict__.update(fmt.__dict__)
                    set_(plain)


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """`fig.savefig(path, **kwargs)` without run-dependent metadata (dates), log-axis tick labels
    as plain text (module docstring); returns the path."""
    path = Path(path)
    meta = _FIXED_METADATA.get(path.suffix.lower())
    if meta is not None:
        kwargs["metadata"] = {**meta, **kwargs.get("metadata", {})}
    _plain_log_axes(fig)
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
