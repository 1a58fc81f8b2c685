"""Tests for trm_bounds/_json.py: strict RFC 8259 output, non-finite floats written as strings
that float() reads back, numpy scalars and arrays converted, nothing else changed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trm_bounds._json import dumps, strict


def _strict_loads(text: str):
    """json.loads that fails on the non-standard constants Infinity / -Infinity / NaN."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_non_finite_floats_become_strings_float_reads_back():
    out = strict({"a": math.inf, "b": -math.inf, "c": math.nan, "d": np.float32("inf"), "e": 1.5})
    assert out == {"a": "inf", "b": "-inf", "c": "nan", "d": "inf", "e": 1.5}
    assert float(out["a"]) == math.inf and float(out["b"]) == -math.inf and math.isnan(float(out["c"]))


def test_numpy_values_become_plain_python_values():
    out = strict({"i": np.int64(7), "f": np.float64(0.1), "arr": np.array([[1.0, np.inf], [np.nan, -0.0]])})
    assert type(out["i"]) is int and out["i"] == 7
    assert type(out["f"]) is float and out["f"] == 0.1
    assert out["arr"][0] == [1.0, "inf"] and out["arr"][1][0] == "nan"
    assert math.copysign(1.0, out["arr"][1][1]) == -1.0  # -0.0 kept bit for bit


def test_nested_structures_and_other_values_are_kept():
    obj = {"list": [1, (2.0, math.inf)], "s": "inf", "n": None, "b": True, "nested": {"x": [-math.inf]}}
    assert strict(obj) == {
        "list": [1, [2.0, "inf"]],
        "s": "inf",
        "n": None,
        "b": True,
        "nested": {"x": ["-inf"]},
    }


def test_dumps_is_strict_json_and_round_trips_finite_values_exactly():
    obj = {
        "bound": 1 / 3,
        "tiny": 5e-324,
        "huge": 1.7976931348623157e308,
        "kl": math.inf,
        "v": [np.float64(2.5)],
    }
    text = dumps(obj, indent=2)
    assert "Infinity" not in text and "NaN" not in text
    back = _strict_loads(text)
    assert back == {"bound": 1 / 3, "tiny": 5e-324, "huge": 1.7976931348623157e308, "kl": "inf", "v": [2.5]}


def test_dumps_raises_if_a_non_finite_value_slips_past_strict():
    # strict() cannot see inside objects that json's `default` hook converts later: the
    # allow_nan=False guard turns such a value into an error instead of a bare Infinity
    class Opaque:
        pass

    with pytest.raises(ValueError, match="Out of range float"):
        dumps({"x": Opaque()}, default=lambda o: math.inf)
    assert dumps({"x": Opaque()}, default=lambda o: 0.5) == '{"x": 0.5}'


def test_long_lists_inline_same_value_and_non_finite_still_strict():
    """inline_lists: long number lists on one line, the same JSON value; inf/nan inside them
    (the fast path of strict() must not skip those) still become strings."""
    import json as _json

    from trm_bounds._json import dumps

    long = [0.1 * i for i in range(200)]
    obj = {"dbar": long, "short": [1.0, 2.0], "nested": [{"g": long[:100]}], "n": 3}
    text = dumps(obj, indent=2, inline_lists=64)
    assert _json.loads(text) == obj
    assert len(text.splitlines()) < 20  # 200 + 100 numbers, one line each without inline_lists
    assert len(dumps(obj, indent=2).splitlines()) > 300
    assert '"short": [\n' in text  # short lists keep one item per line
    bad = long[:100] + [float("inf"), float("nan")]
    got = _json.loads(dumps({"x": bad}, indent=2, inline_lists=64))["x"]
    assert got[-2:] == ["inf", "nan"] and got[:100] == long[:100]
    with_str = ["a"] * 100  # not numbers: not inlined
    assert len(dumps({"s": with_str}, indent=2, inline_lists=64).splitlines()) > 100
