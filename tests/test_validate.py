"""Tests for trm_bounds/_validate.py: every check names its argument, refuses what it must,
passes what it must (inf where a divergence may be infinite), and returns float64 / int64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trm_bounds._validate import (
    check_divergence,
    check_finite_or_inf,
    check_horizon,
    check_nonneg_finite,
    check_tv,
)


@pytest.mark.parametrize(
    "check, value, message",
    [
        (check_finite_or_inf, "abc", "x must be numeric, got 'abc'"),
        (check_finite_or_inf, [1.0, math.nan], "x contains NaN"),
        (check_divergence, -1e-300, "x must be >= 0, got min -1e-300"),
        (check_divergence, [0.5, math.nan], "x contains NaN"),
        (check_tv, 1.0 + 2**-52, "x is a total variation and must be <= 1"),
        (check_tv, -0.5, "x must be >= 0"),
        (check_tv, math.inf, "x is a total variation and must be <= 1, got max inf"),
        (check_nonneg_finite, math.inf, "x must be finite, got inf"),
        (check_nonneg_finite, -2.0, "x must be >= 0, got min -2"),
    ],
)
def test_refusals_name_the_argument(check, value, message):
    with pytest.raises(ValueError) as info:
        check("x", value)
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    "T, message",
    [
        (0, "T must be >= 1, got min 0"),
        ([3, 0.5], "T must be >= 1, got min 0.5"),
        (2.5, "T must be an integer, got 2.5"),
        (math.inf, "T must be finite, got inf"),
        (math.nan, "T contains NaN"),
        ("ten", "T must be numeric"),
    ],
)
def test_horizon_refusals(T, message):
    with pytest.raises(ValueError) as info:
        check_horizon(T)
    assert str(info.value).startswith(message), str(info.value)


def test_horizon_uses_the_callers_name():
    with pytest.raises(ValueError, match=r"^T-max must be >= 1"):
        check_horizon(0, "T-max")


def test_accepted_values_come_back_exactly_with_the_contract_dtypes():
    T = check_horizon([1, 4096.0, 10**12])
    assert T.dtype == np.int64 and T.tolist() == [1, 4096, 10**12]
    d = check_divergence("delta", [0.0, 1e-300, math.inf])  # a KL may be +inf (disjoint supports)
    assert d.dtype == np.float64 and d.tolist() == [0.0, 1e-300, math.inf]
    tv = check_tv("eps", [0.0, 0.25, 1.0])  # both ends of [0, 1] included
    assert tv.dtype == np.float64 and tv.tolist() == [0.0, 0.25, 1.0]
    assert check_nonneg_finite("threshold", 0.0).dtype == np.float64
    assert check_finite_or_inf("x", -math.inf).tolist() == -math.inf  # only NaN is refused here


@given(x=st.floats(allow_nan=False))
def test_divergence_check_accepts_exactly_the_nonnegative_values(x):
    if x >= 0:
        assert float(check_divergence("d", x)) == x
    else:
        with pytest.raises(ValueError, match=r"^d must be >= 0"):
            check_divergence("d", x)


@given(x=st.floats(allow_nan=False))
def test_tv_check_accepts_exactly_the_unit_interval(x):
    if 0 <= x <= 1:
        assert float(check_tv("tv", x)) == x
    else:
        with pytest.raises(ValueError, match=r"^tv "):
            check_tv("tv", x)
