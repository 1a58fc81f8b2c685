"""trm_bounds._savefig: figure files without run-dependent bytes, log-axis labels as plain text."""

from __future__ import annotations

import pytest

from trm_bounds._savefig import plain_log_label, save_figure


@pytest.mark.parametrize(
    "label, want",
    [
        (r"$\mathdefault{10^{-3}}$", "10\u207b\u00b3"),
        (r"$\mathdefault{10^{12}}$", "10\u00b9\u00b2"),
        (r"$\mathdefault{2\times10^{4}}$", "2\u00d710\u2074"),
        (r"$\mathdefault{2^{5}}$", "2\u2075"),
        (r"$\mathdefault{-10^{2}}$", "\u221210\u00b2"),
        (r"$\mathdefault{0.5}$", "0.5"),
        (r"$\mathdefault{0}$", "0"),
        (r"$\mathdefault{2^{0.50}}$", r"$\mathdefault{2^{0.50}}$"),  # no Unicode for a fractional exponent
        ("", ""),
        ("1/256", "1/256"),
        (r"$\alpha$", r"$\alpha$"),
    ],
)
def test_plain_log_label(label, want):
    assert plain_log_label(label) == want


def test_saved_log_axes_label_in_plain_text_and_keep_other_formatters(tmp_path):
    """Every default log formatter (major and minor, x and y, base 10 and 2) is swapped before the
    file is written: the drawn labels are the default's labels as plain text, no mathtext left;
    a formatter the figure chose itself stays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation

    def figure():
        fig, (a, b, c) = plt.subplots(1, 3)
        a.loglog([1, 1e6], [1e-9, 1e3])
        b.plot([1, 256], [2, 3])
        b.set_xscale("log", base=2)
        b.yaxis.set_major_formatter(FuncFormatter(lambda y, pos: f"y={y:g}"))
        c.semilogy([0, 1], [0.25, 3.5])  # about one decade: labelled minor ticks (2x10^-1, ...)
        return fig

    ref = figure()
    ref.canvas.draw()
    want = {
        axis: [plain_log_label(t.get_text()) for t in axis.get_ticklabels(which="both")]
        for axis in (ref.axes[0].xaxis, ref.axes[0].yaxis, ref.axes[1].xaxis, ref.axes[2].yaxis)
    }
    assert any("$" in t.get_text() for t in ref.axes[0].yaxis.get_ticklabels())  # mathtext by default
    fig = figure()
    save_figure(fig, tmp_path / "f.png", dpi=50)
    got = {
        axis: [t.get_text() for t in axis.get_ticklabels(which="both")]
        for axis in (fig.axes[0].xaxis, fig.axes[0].yaxis, fig.axes[1].xaxis, fig.axes[2].yaxis)
    }
    assert list(got.values()) == list(want.values())
    assert any("10\u207b" in t for t in got[fig.axes[0].yaxis]) and any(
        "2" in t for t in got[fig.axes[1].xaxis]
    )
    assert any("\u00d710\u207b\u00b9" in t for t in got[fig.axes[2].yaxis])  # a minor label, e.g. 2x10^-1
    for axis in (fig.axes[0].xaxis, fig.axes[0].yaxis, fig.axes[1].xaxis, fig.axes[2].yaxis):
        assert not any("$" in t for t in got[axis])
        assert type(axis.get_major_formatter()) is not LogFormatterSciNotation
        assert isinstance(axis.get_major_formatter(), LogFormatterSciNotation)  # same settings, subclass
    assert isinstance(fig.axes[1].yaxis.get_major_formatter(), FuncFormatter)
    plt.close("all")
