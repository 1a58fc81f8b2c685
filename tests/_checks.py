"""The one "bound holds" check of the test suite: a relative tolerance, never a blanket slack.

`value <= bound * (1 + REL) + TINY` elementwise. REL = 1e-12 absorbs the rounding of the
float64 sums on both sides; TINY = 1e-300 only lets 0 <= 0 pass with subnormal noise. An
absolute slack such as `+ 1e-12` would make every check whose bound is below 1e-12 unable to
fail (the paper's regime, delta <= 1e-3 at small T, is full of such bounds).

One exception, always derived, never guessed: when one side is a slow reference that adds n
probabilities of total mass <= 1 (e.g. a whole-context TV aggregated over all V**T paths),
its rounding is absolute, up to n * 2**-52, whatever the true value; pass
`atol=sum_rounding(n)` for that side only.
"""

from __future__ import annotations

import numpy as np

REL = 1e-12
TINY = 1e-300


def sum_rounding(n_terms: int) -> float:
    """Worst absolute rounding of a float64 sum of `n_terms` non-negative terms of total <= 1."""
    return n_terms * 2.0**-52


def _holds(value, bound, rel: float, atol: float) -> np.ndarray:
    """Elementwise value <= bound * (1 + rel) + atol + 1e-300 (NaN on either side: False)."""
    value, bound = np.asarray(value, dtype=np.float64), np.asarray(bound, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return value <= bound * (1 + rel) + (atol + TINY)


def assert_bound_holds(value, bound, what: str = "", rel: float = REL, atol: float = 0.0) -> None:
    """Assert value <= bound * (1 + rel) + atol + 1e-300; the message gives both numbers and their ratio.

    Args:
      value: the bounded quantity (e.g. |Error|), scalar or array.
      bound: its upper bound, same shape or broadcastable.
      what: which inequality, for the message.
      rel: relative tolerance (1e-12: float64 rounding of both sides).
      atol: 0 except for a slow reference's summation rounding, `sum_rounding(n)` (module doc).
    """
    ok = _holds(value, bound, rel, atol)
    if np.all(ok):
        return
    v, b = np.broadcast_arrays(np.asarray(value, np.float64), np.asarray(bound, np.float64))
    bad = ~np.broadcast_to(ok, v.shape)
    i = tuple(int(k) for k in np.argwhere(bad)[0]) if v.ndim else ()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = v[i] / b[i]
    where = f" at index {i}" if i else ""
    raise AssertionError(
        f"bound fails{' (' + what + ')' if what else ''}{where}: value {v[i]!r} > bound {b[i]!r} "
        f"(ratio {ratio!r}, relative tolerance {rel:g}, atol {atol:g})"
    )
