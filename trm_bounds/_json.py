"""Strict JSON for every command's output: RFC 8259 has no Infinity or NaN.

A KL is +inf for disjoint supports and a bound can be inf with it; those values are written
as the strings "inf" / "-inf" / "nan" (what `float()` reads back), never as the non-standard
bare `Infinity` that strict parsers (jq, JavaScript) reject.
"""

from __future__ import annotations

import json
import math

import numpy as np


def strict(x):
    """The same structure with non-finite floats replaced by their `str()` ("inf", "-inf", "nan")."""
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else str(float(x))
    if isinstance(x, dict):
        return {k: strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict(v) for v in x]
    if isinstance(x, np.ndarray):
        return strict(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    return x


def dumps(obj, **kwargs) -> str:
    """json.dumps of `strict(obj)`; raises if anything non-finite slipped through."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)
