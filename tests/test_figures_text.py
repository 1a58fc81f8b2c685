"""What the figures say: the shared helpers of trm_bounds/studies/plotting.py (level 1, coinciding
curves) and the texts, legends and marks each plotting function draws, on small synthetic inputs
(the studies themselves are run in test_studies.py and test_studies_coverage.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trm_bounds.bounds import PUBLISHED_BOUNDS
from trm_bounds.report import plot_scaling, scaling_table
from trm_bounds.studies import coverage, error_vs_horizon, training
from trm_bounds.studies.plotting import (
    LEVEL_ONE_NOTE,
    coincident_groups,
    near_overlaps,
    overlap_notes,
    overlap_summary,
)


def _flat(s: str) -> str:
    return " ".join(s.split())


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib Figure saved while the test runs (after it is drawn), in order."""
    from matplotlib.figure import Figure

    figs: list = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self not in figs:
            figs.append(self)
        return out

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figs


def _texts(fig) -> list[str]:
    """Every text of a drawn figure (titles, labels, tick labels, legends, notes), whitespace-flattened."""
    from matplotlib.text import Text

    return [_flat(t.get_text()) for t in fig.findobj(Text) if t.get_text()]


def _assert_level_one_stated_correctly(texts: list[str]) -> None:
    joined = " | ".join(texts)
    assert _flat(LEVEL_ONE_NOTE) in joined
    assert "vacuous" not in joined and "always" not in joined  # the false "|Error| <= 1 always"


# --------------------------------------------------------------------------- helpers
def test_level_one_note_states_what_follows_and_nothing_more():
    note = LEVEL_ONE_NOTE
    assert "|J(theta) - J(roll)|" in note and "R in [0, 1]" in note
    assert "L' > B" in note and "L' <= 1" in note
    assert "|Error| <= 1" not in note and "vacuous" not in note


def test_coincident_groups_partition_equal_curves_in_order():
    curves = {
        "a": [1.0, 2.0, 3.0],
        "b": [1.0, 2.0 * (1 + 1e-13), 3.0],
        "c": [1.0, 2.0, 3.1],
        "d": [np.nan, 2.0, 3.1],
        "e": [np.nan, 2.0, 3.1],
    }
    assert coincident_groups(curves) == [["a", "b"], ["c"], ["d", "e"]]
    assert coincident_groups(curves, rtol=0.1) == [["a", "b", "c"], ["d", "e"]]


def test_near_overlaps_report_pairs_within_a_line_width_over_enough_points():
    x = [1, 2, 4, 8]
    curves = {"a": [1.0, 1.0, 1.0, 1.0], "b": [1.05, 1.05, 10.0, 10.0], "c": [100.0] * 4}
    assert near_overlaps(x, curves) == [("a", "b", 1.0, 2.0, 2)]
    assert near_overlaps(x, curves, min_fraction=0.75) == []
    assert near_overlaps(x, curves, decades=0.01) == []


def test_overlap_notes_and_summary_name_identical_and_near_curves_and_skip_undrawn_ones():
    x = [1, 2, 4, 8]
    curves = {
        "pm_kl": [1.0, 2.0, 3.0, 4.0],
        "pm_tv": [1.0, 2.0, 3.0, 4.0],
        "mix_kl": [1.04, 2.04, 3.04, 40.0],
        "zero": [0.0, 0.0, 0.0, 0.0],  # nothing of it is drawn on a log axis
    }
    notes = overlap_notes(x, curves)
    assert notes[0] == "pm_kl = pm_tv: identical (one line)"
    assert notes[1].startswith("pm_kl = pm_tv ~ mix_kl: within 12% at 3 of 4 T values")
    assert not any("zero" in n for n in notes)
    summary = overlap_summary(x, curves)
    assert "identical (one line each): pm_kl=pm_tv" in summary and "pm_kl=pm_tv~mix_kl" in summary
    assert overlap_summary(x, {"a": [1.0] * 4, "b": [100.0] * 4}) == ""


def test_tightest_keeps_ties():
    assert error_vs_horizon.tightest({"a": 0.0, "b": 0.0, "c": 1.0}) == ["a", "b"]
    assert error_vs_horizon.tightest({"a": 2.0, "b": 1.0, "c": 1.0 * (1 + 1e-12)}) == ["b", "c"]
    assert error_vs_horizon.tightest({"a": 2.0, "b": 1.0}) == ["b"]


# --------------------------------------------------------------------------- scaling
def test_scaling_legend_merges_identical_bounds_and_states_level_one(tmp_path, saved_figures):
    rows = scaling_table(np.array([1, 4, 16, 64, 256, 1024]))
    plot_scaling(rows, tmp_path / "s.png", tmp_path / "s.pdf")
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "s.pdf").stat().st_size > 0
    texts = _texts(saved_figures[0])
    _assert_level_one_stated_correctly(texts)
    # large divergence, eps by Pinsker: pm_kl = pm_tv at every T, so one legend entry names both
    assert any(t.startswith("pm_kl = pm_tv") and "(identical here)" in t for t in texts)
    legend_names = {n for t in texts if "(identical here)" in t for n in t.split(" (")[0].split(" = ")}
    assert legend_names <= set(PUBLISHED_BOUNDS)


# --------------------------------------------------------------------------- error_vs_horizon
def _synthetic_sweep() -> dict:
    """Every (family, mechanism) of the study with 3 seeds on T = 1, 2, 4, 8; in counter/sparse
    |Error| is exactly 0 in 2 of 3 seeds at T = 2 and 4."""
    T = [1, 2, 4, 8]
    out = {}
    for fam in error_vs_horizon.FAMILIES:
        for name, (_, _, label) in error_vs_horizon.MECHANISMS.items():
            err = np.tile([0.0, 1e-6, 2e-6, 3e-6], (3, 1)) * np.arange(1, 4)[:, None]
            if (fam, name) == ("counter", "sparse"):
                err[:2, 1:3] = 0.0
            base = np.tile([0.0, 1e-3, 1e-2, 1e-1], (3, 1))
            bounds = {b: base * (1 + k) for k, b in enumerate(PUBLISHED_BOUNDS)}
            bounds["adaptive_star"] = bounds["unified"] = base  # identical: one line
            out[f"{fam}/{name}"] = dict(
                label=label,
                T=T,
                abs_error=err,
                bounds=bounds,
                delta=np.full(3, 1e-3),
                eps=np.full(3, 0.02),
                error_slope=0.0,
                error_slope_se=0.0,
            )
    return out


def test_sweep_says_what_coincides_why_a_panel_is_empty_and_what_level_one_means(tmp_path, saved_figures):
    error_vs_horizon.plot_sweep(_synthetic_sweep(), tmp_path)
    assert (tmp_path / "error_vs_horizon.png").stat().st_size > 0
    texts = _texts(saved_figures[0])
    _assert_level_one_stated_correctly(texts)
    joined = " | ".join(texts)
    assert "adaptive_star=unified" in joined
    zero = [t for t in texts if "exactly 0 in 2 of the 3 seeds" in t]
    assert len(zero) == 1 and "T = 2, 4: |Error| is exactly 0 in 2 of the 3 seeds" in zero[0]
    legend = saved_figures[0].legends[0]
    assert legend.get_texts()[0].get_fontsize() >= 8  # readable, outside the panels


def test_map_marks_ties_and_undefined_ratios(tmp_path, saved_figures):
    tied = "classical_tv=classical_kl=pm_kl"
    m = {
        "T": [1, 2, 4],
        "delta": np.array([1e-3, 1e-1]),
        "tightest": np.array([[tied, "adaptive_tv=adaptive_star", "adaptive_star"]] * 2, dtype=object),
        "tightest_value": np.array([[0.0, 0.1, 0.2]] * 2),
        "ratio_unified": np.array([[0.0, 1e-2, 1e-3]] * 2),
    }
    error_vs_horizon.plot_map(m, tmp_path)
    texts = _texts(saved_figures[0])
    assert any(t.startswith("tie at 0 (3 bounds equal 0") for t in texts)
    assert "adaptive_tv = adaptive_star (tie of 2)" in texts and "adaptive_star" in texts
    assert any(t.startswith("hatched: B* = 0 and |Error| = 0") for t in texts)
    ax = saved_figures[0].axes[1]
    shown = ax.images[0].get_array()
    assert np.ma.is_masked(shown[0, 0]) and not np.ma.is_masked(shown[0, 1])  # 0/0 not coloured


def test_ratios_are_small_multiples_naming_identical_histograms(tmp_path, saved_figures):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(20):
        r = {f"ratio_{b}": float(10 ** rng.uniform(-8, -2)) for b in PUBLISHED_BOUNDS}
        r["ratio_unified"] = r["ratio_adaptive_star"]
        rows.append({"T": 8, **r})
    rows[0]["ratio_pm_kl"] = 0.0
    worst = {b: max(r[f"ratio_{b}"] for r in rows) for b in PUBLISHED_BOUNDS}
    error_vs_horizon.plot_ratios({"rows": rows, "worst": worst}, tmp_path)
    fig = saved_figures[0]
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == list(error_vs_horizon.RATIO_SHOWN)  # one panel per bound
    joined = " | ".join(_texts(fig))
    assert "equal to adaptive_star on 20 of 20 (identical histograms)" in joined
    assert "equal to unified on 20 of 20" in joined
    assert "1 at ratio 0" in joined and "no pair is" in joined


# --------------------------------------------------------------------------- training
def _synthetic_certified_results() -> list[dict]:
    out = []
    for reg in training.CERTIFIED_REGIMES:
        for mode in ("plain", "certified"):
            for seed in (0, 1):
                scales = [1.0] * 4 if mode == "plain" else [0.5, 0.25, 0.0, 2.0**-8]
                steps = [
                    {"J_new": 0.3 + 0.01 * k, "J_roll": 0.3, "step_scale": s} for k, s in enumerate(scales)
                ]
                out.append(
                    {
                        "regime": reg,
                        "label": mode,
                        "seed": seed,
                        "config": {"max_backtracks": 8},
                        "steps": steps,
                    }
                )
    return out


def test_certified_mode_step_scale_axis_has_readable_ticks(tmp_path, saved_figures):
    training.plot_certified(_synthetic_certified_results(), tmp_path)
    ax = saved_figures[0].axes[1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["0 (skipped)", "1/256", "1/64", "1/16", "1/4", "1"]
    lo, hi = ax.get_ylim()
    assert lo < 0 < 2.0**-8 and hi > 1  # every tick inside the axis


def test_length_bias_dodges_methods_and_says_what_the_bars_are(tmp_path, saved_figures):
    rows = [
        {"seed": s, "method": m, "length": ell, "n": 10, "acceptance": 0.5 + 0.1 * s}
        for s in (0, 1, 2)
        for m in training.LENGTH_METHODS
        for ell in (1, 2, 3)
    ]
    training.plot_length_bias(rows, tmp_path)
    ax = saved_figures[0].axes[0]
    xs = [tuple(np.round(c.lines[0].get_xdata(), 6)) for c in ax.containers]
    assert len(xs) == len(training.LENGTH_METHODS) and len(set(xs)) == len(xs)  # no two at the same x
    for x in xs:
        assert np.all(np.abs(np.array(x) - np.array([1, 2, 3])) < 0.5)  # still within their length
    assert "bar: min-max over the seeds" in _flat(ax.get_title())
    assert "mean over 3 seeds" in _flat(ax.get_title())


# --------------------------------------------------------------------------- coverage
def test_certify_horizon_explains_level_one_in_the_legend(tmp_path, saved_figures):
    rows = [
        {
            "T": T,
            "certified_median": 0.02 * T,
            "linear_dbar_refined_exact": 0.015 * T,
            "second_order": 1e-4 * T**2,
            "exact_abs_error": 1e-5,
            "N": 64,
            "reps": 10,
        }
        for T in (8, 32, 128)
    ]
    coverage._plot_horizon(rows, tmp_path)
    fig = saved_figures[0]
    legend = [_flat(t.get_text()) for t in fig.axes[0].get_legend().get_texts()]
    assert any(_flat(LEVEL_ONE_NOTE) in t for t in legend)
    assert any("about constant in T" in t for t in legend)  # |Error| flat here
    assert not [t for t in _texts(fig) if t.startswith("1 = the largest")]  # no label under the curves


def test_certify_coverage_panels_say_what_a_dot_is(tmp_path, saved_figures):
    rows = []
    for pair in ("p1", "p2"):
        for n in (16, 64):
            for m in coverage.METHODS:
                rows.append(
                    {
                        "pair": pair,
                        "method": m,
                        "N": n,
                        "reps": 100,
                        "mc_se": math.sqrt(0.95 * 0.05 / 100),
                        "coverage_sum_dbar": 1.0,
                        "coverage_dtv_seq": 0.97,
                        "median_ratio_sum_dbar": 3.0,
                        "median_bound_over_error": 100.0 if pair == "p1" else 1000.0,
                    }
                )
    coverage._plot_coverage(rows, tmp_path)
    joined = " | ".join(_texts(saved_figures[0]))
    assert "12 of 12 at coverage 1.0 (100 repeats each)" in joined
    assert "0 of 12 at coverage 1.0" in joined
    assert "certified bound / exact |Error|" in joined


def test_no_figure_module_claims_error_at_most_one():
    root = Path(error_vs_horizon.__file__).resolve().parents[1]
    for rel in (
        "report.py",
        "studies/error_vs_horizon.py",
        "studies/coverage.py",
        "studies/runs.py",
        "studies/training.py",
        "audit/claims_bounds.py",
    ):
        text = (root / rel).read_text()
        assert "<= 1 always" not in text.replace('"|Error| <= 1 always" is false', ""), rel
        assert "vacuous above" not in text and "certifies nothing" not in text, rel


def test_training_figure_names_runs_that_coincide(tmp_path, saved_figures):
    stem = "fig3_single_vs_combined"
    labels = training.FIGURES[stem][1]
    results = []
    for reg in training.REGIMES:
        for j, label in enumerate(labels):
            twin = 1 if j == 2 else j  # the third run repeats the second exactly
            for seed in (0, 1):
                steps = [{"J_new": 0.3 + 0.01 * k * (1 + twin), "log_ppl_gap": 0.1 + twin} for k in range(6)]
                results.append({"regime": reg, "label": label, "seed": seed, "steps": steps})
    training.plot_training_figure(results, stem, tmp_path)
    notes = [t for t in _texts(saved_figures[0]) if t.startswith("identical runs")]
    assert notes == [f"identical runs (one line hides the other): {labels[1]} = {labels[2]}"] * len(
        training.REGIMES
    )
