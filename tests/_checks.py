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

import math

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


REL = 1e-12  # the promised agreement of two engine routes: |new - old| <= REL |old| + ABS
# ABS: values that are pure rounding noise (a true 0 computed as ~1e-17 from terms of size ~1,
# e.g. a masked surrogate at T = 1) agree only to rounding of the J-sized terms summed into them
ABS = 1e-16


def max_rel_diff(new, old, path="", rel: float = REL, abs_: float = ABS) -> tuple[float, str]:
    """Largest |new - old| / (REL |old| + ABS) over every number of two JSON-like trees (<= 1:
    agreement; same keys, same lengths, equal strings / None / bools / infinities required)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), path
        extra_ok = path.endswith(".bounds")  # the bound registry may grow (other tests register bounds)
        assert set(old) <= set(new) if extra_ok else set(new) == set(old), (
            f"{path}: keys {set(new) ^ set(old)}"
        )
        worst = (0.0, path)
        for k in old:
            worst = max(worst, max_rel_diff(new[k], old[k], f"{path}.{k}", rel, abs_))
        return worst
    if isinstance(old, list):
        if path.endswith(".notes"):  # notes added since the recording (second_order) may follow
            new = [n for n in new if not str(n).startswith("second_order")]
        assert isinstance(new, list) and len(new) == len(old), path
        return max(
            [(0.0, path)]
            + [max_rel_diff(a, b, f"{path}[{i}]", rel, abs_) for i, (a, b) in enumerate(zip(new, old))]
        )
    if old is None or isinstance(old, (str, bool)):
        assert new == old, f"{path}: {new!r} != {old!r}"
        return 0.0, path
    new, old = float(new), float(old)
    if math.isinf(old) or math.isnan(old):
        assert new == old or (math.isnan(new) and math.isnan(old)), f"{path}: {new!r} != {old!r}"
        return 0.0, path
    return abs(new - old) / (rel * abs(old) + abs_), path
