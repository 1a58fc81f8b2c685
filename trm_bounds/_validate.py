"""Argument checks shared by every public entry point.

Each check raises ``ValueError`` whose message starts with the argument's name, so that
the CLI can print it as its one-line error. Checks return float64 / int64 numpy arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def check_finite_or_inf(name: str, value: ArrayLike) -> np.ndarray:
    """float64 array of `value`; NaN is refused (inf is allowed)."""
    try:
        x = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN")
    return x


def check_horizon(T: ArrayLike, name: str = "T") -> np.ndarray:
    """Horizon(s) T: integers >= 1, finite. Returns int64 array."""
    x = check_finite_or_inf(name, T)
    if np.isinf(x).any():
        raise ValueError(f"{name} must be finite, got {x[np.isinf(x)].flat[0]:g}")
    if (x < 1).any():
        raise ValueError(f"{name} must be >= 1, got min {x.min():g}")
    if (x != np.floor(x)).any():
        raise ValueError(f"{name} must be an integer, got {x[x != np.floor(x)].flat[0]:g}")
    return x.astype(np.int64)


def check_divergence(name: str, value: ArrayLike) -> np.ndarray:
    """A KL-type divergence: >= 0, may be +inf (disjoint supports), never NaN."""
    x = check_finite_or_inf(name, value)
    if (x < 0).any():
        raise ValueError(f"{name} must be >= 0, got min {x.min():g}")
    return x


def check_tv(name: str, value: ArrayLike) -> np.ndarray:
    """A total-variation distance: in [0, 1], never NaN."""
    x = check_divergence(name, value)
    if (x > 1).any():
        raise ValueError(f"{name} is a total variation and must be <= 1, got max {x.max():g}")
    return x


def check_nonneg_finite(name: str, value: ArrayLike) -> np.ndarray:
    """A threshold or weight: finite and >= 0."""
    x = check_divergence(name, value)
    if np.isinf(x).any():
        raise ValueError(f"{name} must be finite, got inf")
    return x
