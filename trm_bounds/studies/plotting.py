"""Shared pieces of the figures: the meaning of the level 1, and which plotted curves coincide.

The level 1 (rewards in [0, 1]). |J(theta) - J(roll)| <= 1 always, but |Error| =
|J(theta) - J(roll) - L'(theta)| is not bounded by 1: L' sums T ratio terms
(`trm_bounds.counterexamples.large_error_pair`: Error = 5.958 at T = 6). So a bound B above 1
still bounds |Error|. What it cannot do: a step is certified to improve J when L' > B (then
J(theta) - J(roll) >= L' - B > 0); with B >= 1 that needs L' > 1, a surrogate gain above the
largest possible true change of J, so a bound B >= 1 certifies no step whose L' <= 1.

Coinciding curves. Several bounds are equal on whole families of inputs (the unified bound is a
minimum of six of them; pm_kl = pm_tv once eps is Pinsker's); on a log axis one line then hides
the others. `coincident_groups` finds curves equal at every point, `near_overlaps` curves drawn
within a line width of each other over part of the axis, so that a figure can say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["LEVEL_ONE_NOTE", "coincident_groups", "near_overlaps", "overlap_notes", "overlap_summary"]

LEVEL_ONE_NOTE = (
    "1 = largest possible |J(theta) - J(roll)| (R in [0, 1]); "
    "a bound B >= 1 certifies no step whose surrogate gain L' <= 1 (certified needs L' > B)"
)


def coincident_groups(curves: Mapping[str, Sequence[float]], rtol: float = 1e-9) -> list[list[str]]:
    """Partition curve names into groups equal at every point (|a - b| <= rtol max(|a|, |b|);
    NaN matches NaN), in the order of `curves`; singletons included.

    curves: name -> values at common abscissae (all the same length n).
    """
    groups: list[list[str]] = []
    reps: list[np.ndarray] = []
    for name, y in curves.items():
        y = np.asarray(y, dtype=np.float64)
        for g, r in zip(groups, reps):
            if r.shape == y.shape and _equal(r, y, rtol):
                g.append(name)
                break
        else:
            groups.append([name])
            reps.append(y)
    return groups


def _equal(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b))
    return bool(np.all(both_nan | close))


def near_overlaps(
    x: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    decades: float = 0.05,
    min_fraction: float = 0.25,
) -> list[tuple[str, str, float, float, int]]:
    """Pairs of positive curves drawn within `decades` of each other on a log axis (0.05 decades
    = 12%, about a line width) at >= `min_fraction` of the abscissae (at least 2), one hiding
    the other there, yet not equal everywhere:
    (a, b, x_first, x_last, count) over the abscissae where they are that close. Pass one curve per
    `coincident_groups` group.
    """
    x = np.asarray(x, dtype=np.float64)
    names = list(curves)
    logs = {}
    for n in names:
        y = np.asarray(curves[n], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs[n] = np.where(y > 0, np.log10(y), np.nan)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            with np.errstate(invalid="ignore"):
                close = np.abs(logs[a] - logs[b]) < decades
            if close.sum() >= max(2, min_fraction * x.size):
                out.append((a, b, float(x[close].min()), float(x[close].max()), int(close.sum())))
    return out


def _drawn(curves: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """The curves with at least one positive finite value (the others draw nothing on a log axis)."""
    out = {n: np.asarray(y, dtype=np.float64) for n, y in curves.items()}
    return {n: y for n, y in out.items() if np.any(np.isfinite(y) & (y > 0))}


def overlap_notes(x: Sequence[float], curves: Mapping[str, Sequence[float]], xname: str = "T") -> list[str]:
    """Lines of text for a figure: the groups of identical curves and the near overlaps
    (`coincident_groups`, `near_overlaps` on one representative per group); curves with no
    positive value are left out (nothing of them is drawn)."""
    curves = _drawn(curves)
    groups = coincident_groups(curves)
    lines = [" = ".join(g) + ": identical (one line)" for g in groups if len(g) > 1]
    reps = {" = ".join(g) if len(g) > 1 else g[0]: curves[g[0]] for g in groups}
    n = len(np.asarray(x))
    for a, b, lo, hi, k in near_overlaps(x, reps):
        lines.append(
            f"{a} ~ {b}: within 12% at {k} of {n} {xname} values between {xname} = {lo:g} and {hi:g}"
        )
    return lines


def overlap_summary(
    x: Sequence[float], curves: Mapping[str, Sequence[float]], min_fraction: float = 0.5
) -> str:
    """Two short lines for a crowded panel: "one line each: a = b; c = d" (identical curves) and
    "within 12% at most points: e ~ f" (`near_overlaps` at >= `min_fraction` of the points);
    "" when neither applies."""
    curves = _drawn(curves)
    groups = coincident_groups(curves)
    reps = {"=".join(g): curves[g[0]] for g in groups}
    lines = []
    same = ["=".join(g) for g in groups if len(g) > 1]
    if same:
        lines.append("identical (one line each): " + "; ".join(same))
    near = [f"{a}~{b}" for a, b, *_ in near_overlaps(x, reps, min_fraction=min_fraction)]
    if near:
        lines.append(f"within 12% at >= {min_fraction:.0%} of the T: " + "; ".join(near))
    return "\n".join(lines)
