"""Strict JSON for every command's output: RFC 8259 has no Infinity or NaN.

A KL is +inf for disjoint supports and a bound can be inf with it; those values are written
as the strings "inf" / "-inf" / "nan" (what `float()` reads back), never as the non-standard
bare `Infinity` that strict parsers (jq, JavaScript) reject.
"""

from __future__ import annotations

import json
import math

import numpy as np

_LONG = 64  # lists longer than this get the fast paths below


def _finite_floats(x: list) -> bool:
    """True when every item of the list is a finite Python float (checked in one numpy pass)."""
    return all(type(v) is float for v in x) and bool(np.isfinite(np.asarray(x, dtype=np.float64)).all())


def strict(x):
    """The same structure with non-finite floats replaced by their `str()` ("inf", "-inf", "nan")."""
    if isinstance(x, list) and len(x) > _LONG and _finite_floats(x):
        return x  # nothing to replace (per-step outputs of a long chain: millions of floats)
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


def dumps(obj, *, inline_lists: int | None = None, **kwargs) -> str:
    """json.dumps of `strict(obj)`; raises if anything non-finite slipped through.

    inline_lists=N (with indent): a list of more than N numbers is written on one line, not one
    number per line (the same JSON value; a T = 10**6 chain's per-step lists print in seconds).
    """
    obj = strict(obj)
    if inline_lists is None or kwargs.get("indent") is None:
        return json.dumps(obj, allow_nan=False, **kwargs)
    inline: dict[str, str] = {}

    def mark(x):
        if isinstance(x, dict):
            return {k: mark(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            if len(x) > inline_lists and all(type(v) in (int, float) for v in x):
                key = f"\x00inline{len(inline)}\x00"
                inline[json.dumps(key)] = json.dumps(x, allow_nan=False)
                return key
            return [mark(v) for v in x]
        return x

    text = json.dumps(mark(obj), allow_nan=False, **kwargs)
    for key, value in inline.items():
        text = text.replace(key, value, 1)
    return text
