"""Tests for trm_bounds/audit/printed.py: parsing printed numbers and their verdicts."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import assume, example, given, note
from hypothesis import strategies as st

from trm_bounds.audit.printed import parse_printed, printed_verdict


# --------------------------------------------------------------------------- printed numbers
@pytest.mark.parametrize(
    "text, relation, value, unit",
    [
        ("1,677", "=", 1677, 1),
        ("35.0", "=", 35.0, 0.1),
        ("1.68e7", "=", 1.68e7, 1e5),
        ("3.49e5", "=", 3.49e5, 1e3),
        ("7.07e-3", "=", 7.07e-3, 1e-5),
        ("<= 8.2", "<=", 8.2, 0.1),
        ("<= 8,192", "<=", 8192, 1),
        ("<1e-7", "<", 1e-7, 1e-7),
        ("200x", "=", 200, 100),
        ("about 30x", "=", 30, 10),
        ("0.0003", "=", 3e-4, 1e-4),
        ("about 1139", "=", 1139, 1),
    ],
)
def test_parse_printed(text, relation, value, unit):
    pr = parse_printed(text)
    assert (pr.relation, pr.value, pr.unit) == (relation, pytest.approx(value), pytest.approx(unit))


def test_parse_printed_rejects_text():
    with pytest.raises(ValueError, match="^text"):
        parse_printed("thirty")


def _half_up(x: float, decimals: int) -> float:
    """Slow twin: decimal rounding half-up of the exact binary value of x."""
    return float(Decimal(x).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


@given(x=st.floats(0, 1e5), decimals=st.integers(0, 4))
@example(x=34.946091886296685, decimals=1)  # the PM cell: 34.9, so "35.0" is not its rounding
@example(x=409.50286, decimals=0)
def test_printed_verdict_against_decimal_rounding(x, decimals):
    printed = f"{_half_up(x, decimals):.{decimals}f}"
    note(f"x={x!r} printed={printed}")
    verdict, _ = printed_verdict(x, parse_printed(printed))
    assert verdict == "match"
    unit = 10.0**-decimals
    trunc = f"{math.floor(x / unit) * unit:.{decimals}f}"
    v2, note2 = printed_verdict(x, parse_printed(trunc))
    assert v2 in ("match", "rounding") and (v2 == "match" or "truncation" in note2)
    far = f"{_half_up(x, decimals) + 3 * unit:.{decimals}f}"
    # an integer printed with trailing zeros ("41530") is read at a coarser unit (10): skip those
    assume(decimals > 0 or not far.endswith("0"))
    assert printed_verdict(x, parse_printed(far))[0] == "mismatch"


def test_inequality_and_bound_verdicts():
    le = parse_printed("<= 8.2")
    assert printed_verdict(8.192, le)[0] == "match"
    assert printed_verdict(34.9, le)[0] == "mismatch"
    assert "loose" in printed_verdict(1.0, le)[1]
    lt = parse_printed("<1e-7")
    assert printed_verdict(7.6e-8, lt)[0] == "match"
    assert printed_verdict(2e-7, lt)[0] == "mismatch"
