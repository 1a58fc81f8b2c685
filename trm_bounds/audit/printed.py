"""Numbers as the paper prints them, and the verdict of a computed value against one.

`parse_printed("1.68e7")` reads the relation ("=", "<=", "<"), the value and the unit of the
last printed digit; `printed_verdict(computed, printed)` says whether the computed value,
rounded half-up to that unit, is the printed number (docs/formats.md cell verdicts:
match | rounding | mismatch). Pure Python (decimal), no numpy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

__all__ = ["Printed", "parse_printed", "printed_verdict", "CELL_VERDICTS"]

CELL_VERDICTS = ("match", "rounding", "mismatch")


@dataclass(frozen=True)
class Printed:
    """A number as the paper prints it.

    relation: "=" (a value), "<=" (an inequality claim "<= 8.2"), "<" (a bound "<1e-7").
    value: the printed number; unit: the value of its last printed digit (1 for "1,677",
    0.1 for "35.0", 1e5 for "1.68e7", 100 for "200" whose trailing zeros are not significant).
    """

    text: str
    relation: str
    value: float
    unit: float
    precision: str


_NUM = re.compile(r"^(?P<mant>\d+(?:\.\d+)?)(?:e(?P<exp>[+-]?\d+))?$")


def parse_printed(text: str) -> Printed:
    """Parse "1,677", "35.0", "1.68e7", "<= 8.2", "<1e-7", "about 1139", "409x" into a `Printed`."""
    s = text.strip().lower().replace(",", "").replace("≤", "<=")
    s = s.removeprefix("about").strip().removesuffix("x").strip()
    relation = "="
    for rel in ("<=", "<"):
        if s.startswith(rel):
            relation, s = rel, s[len(rel) :].strip()
            break
    mt = _NUM.match(s)
    if not mt:
        raise ValueError(f"text: cannot parse printed number {text!r}")
    mant, exp = mt["mant"], int(mt["exp"] or 0)
    value = float(mant) * 10.0**exp
    if relation == "<":
        return Printed(text, relation, value, value, "strict bound")
    if "." in mant:
        decimals = len(mant.split(".")[1])
        unit = 10.0 ** (exp - decimals)
        if exp:
            precision = f"{len(mant.replace('.', '').lstrip('0'))} significant digits"
        else:
            precision = f"{decimals} decimal" + ("s" if decimals > 1 else "")
    else:
        zeros = len(mant) - len(mant.rstrip("0")) if mant.rstrip("0") else 0
        unit = 10.0 ** (exp + zeros)
        precision = "integer" if unit == 1 else f"{len(mant) - zeros} significant digit(s) (trailing zeros)"
    if relation == "<=":
        precision = f"inequality, {precision}"
    return Printed(text, relation, value, unit, precision)


def printed_verdict(computed: float, printed: Printed) -> tuple[str, str]:
    """(verdict, note) for a computed value against a printed one (docs/formats.md cell verdicts).

    match: computed, rounded half-up to the printed unit, is the printed value ("<= x": the
    same, so computed <= x + unit/2 and it is tight; "<x": computed < x).
    rounding: within one unit of the last printed digit but not a correct rounding.
    mismatch: anything else.
    """
    v, unit = printed.value, printed.unit
    if printed.relation == "<":
        ok = computed < v
        return (
            "match" if ok else "mismatch"
        ), f"computed {computed:.4g} {'<' if ok else '>='} {printed.text[1:]}"
    rounded = _quantize(computed, unit, ROUND_HALF_UP)
    if abs(rounded - v) <= 1e-9 * unit:
        return "match", ""
    if abs(computed - v) < unit:
        kind = (
            "a truncation"
            if abs(_quantize(computed, unit, ROUND_FLOOR) - v) <= 1e-9 * unit
            else "not the rounding"
        )
        return "rounding", f"{computed:.6g} rounds to {_fmt_unit(rounded, unit)}; the printed value is {kind}"
    if printed.relation == "<=":
        side = "holds but is loose" if computed <= v else "is violated"
        return "mismatch", f"computed {computed:.6g}: the inequality {printed.text} {side}"
    return "mismatch", f"computed {computed:.6g} is {abs(computed - v) / unit:.1f} printed units away"


def _quantize(x: float, unit: float, mode: str) -> float:
    """x rounded to a multiple of the power of ten `unit`, in decimals on the exact binary value of x."""
    exponent = round(math.log10(unit))
    return float(Decimal(x).quantize(Decimal(1).scaleb(exponent), rounding=mode))


def _fmt_unit(x: float, unit: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(unit) + 1e-9)))
    return f"{x:.{decimals}f}"
