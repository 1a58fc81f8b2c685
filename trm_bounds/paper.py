"""The paper's tables and worked numbers regenerated, and its claims audited (THEORY.md sections 6, 10).

Two products, both computed when called (nothing here is a typed-in conclusion):

- `paper_tables()`: every table cell and worked number of THEORY.md section 6 as a
  `TableCell` (INTERFACES.md: table, row, column, computed, published, printed_precision,
  verdict, note), labelled by paper version, with the "no cap" column and the ratios.
  The verdict compares the computed value with the printed one at the printed precision
  (`parse_printed`, `printed_verdict`).
- `audit()`: every claim C01..C24 of THEORY.md section 10 (split into sub-ids) as a
  `Claim` with a verdict (holds | fails | caveat | imprecise) and its evidence: a value
  computed by `trm_bounds.bounds`, a sympy result from `trm_bounds.symbolic`, or a
  counterexample found by a search over small exactly-enumerated policy pairs.
  Other layers add evidence (exact error measurements, measured slopes, trainer counts)
  through `register_evidence(claim_id, fn)`; the modules in `_EVIDENCE_MODULES` are
  imported lazily and their `cNN_evidence()` functions registered (see `audit`).

The small exact engine below (`_tiny_exact`) enumerates every response of a one-prompt
pair with T <= 4 and V <= 3: obviously correct, and fast enough to search thousands of
pairs in a second. The full engine lives in `trm_bounds.exact`.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np

from . import bounds as nb
from . import symbolic
from ._validate import check_divergence, check_horizon
from .divergences import k1, k2, k3, log_softmax, token_kl, token_tv

__all__ = [
    "TableCell",
    "Claim",
    "Printed",
    "parse_printed",
    "printed_verdict",
    "paper_tables",
    "audit",
    "register_evidence",
    "cells_to_markdown",
    "cells_to_csv",
    "claims_to_markdown",
    "write_tables",
    "write_audit",
    "pm_kl_uncapped",
]

CELL_VERDICTS = ("match", "rounding", "mismatch")
CLAIM_VERDICTS = ("holds", "fails", "caveat", "imprecise")
T_PAPER = 4096


# --------------------------------------------------------------------------- printed numbers
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
    """(verdict, note) for a computed value against a printed one (INTERFACES.md cell verdicts).

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


# --------------------------------------------------------------------------- table cells
@dataclass(frozen=True)
class TableCell:
    """One regenerated table cell (INTERFACES.md `trm-bounds table --json`), plus its version and ids."""

    table: str
    row: str
    column: str
    computed: float
    published: str
    printed_precision: str
    verdict: str
    note: str
    version: str
    row_key: str
    column_key: str

    @property
    def claim_id(self) -> str:
        """The audit id of this cell: C09.<version>.<row_key>.<column_key>."""
        return f"C09.{self.version}.{self.row_key}.{self.column_key}"


def _cell(version, table, row, column, computed, published, note="", alt=None) -> TableCell:
    """Build a cell; `alt` = (label, value): another reading of the number, reported when it rounds right."""
    pr = parse_printed(published)
    verdict, auto = printed_verdict(float(computed), pr)
    notes = [n for n in (note, auto) if n]
    if alt is not None and verdict != "match":
        label, value = alt
        alt_v, _ = printed_verdict(float(value), pr)
        notes.append(f"the {label} {float(value):.6g} gives '{alt_v}'")
    row_key, row_name = row if isinstance(row, tuple) else (_slug(row), row)
    col_key, col_name = column if isinstance(column, tuple) else (_slug(column), column)
    return TableCell(
        table,
        row_name,
        col_name,
        float(computed),
        published,
        pr.precision,
        verdict,
        "; ".join(notes),
        version,
        row_key,
        col_key,
    )


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")


def pm_kl_uncapped(T: int, delta: float) -> float:
    """B_PM^KL with every min(1, .) removed (v2 Table 1 "no cap"): 2 delta sum_{t=1..T} sqrt(t-1)."""
    T = int(check_horizon(T))
    delta = float(check_divergence("delta", delta))
    return 2.0 * delta * float(nb._sum_sqrt(T))


def _col(b: nb.BoundInputs, name: str) -> float:
    return float(nb.BOUNDS[name](b))


def paper_tables() -> list[TableCell]:
    """Every table and worked number of THEORY.md section 6, recomputed by `trm_bounds.bounds`."""
    T = T_PAPER
    small = nb.BoundInputs.from_partial(T, 1e-4, dkl_seq=0.01)  # eps, D_TV^seq by Pinsker; Dbar_t = eps
    large = nb.BoundInputs.from_partial(T, 1.0, dkl_seq=1.0)
    kltv = nb.BoundInputs.from_partial(T, 1e-4, eps=5e-3, dkl_seq=0.01, dtv_seq=0.05)
    cells: list[TableCell] = []

    # v1 text: classical 1677; PM 35.0 (48x); Mixed 8.2 (200x)
    v1 = ("v1", "v1 text (T = 4096, delta = 1e-4, D_KL^seq = 0.01)")
    c_kl, pm, mix = _col(small, "classical_kl"), _col(small, "pm_kl"), _col(small, "mix_kl")
    pm_closed = float(nb.pm_kl_closed_form(T, 1e-4))
    cells += [
        _cell(*v1, ("classical", "Classical"), ("value", "value"), c_kl, "1677"),
        _cell(
            *v1,
            ("pm", "Pinsker-Marginal"),
            ("value", "value"),
            pm,
            "35.0",
            alt=("closed form 4/3 T^1.5 delta", pm_closed),
        ),
        _cell(*v1, ("mix", "Mixed"), ("value", "value"), mix, "8.2"),
        _cell(*v1, ("pm", "Pinsker-Marginal"), ("ratio", "improvement over classical"), c_kl / pm, "48x"),
        _cell(
            *v1,
            ("mix", "Mixed"),
            ("ratio", "improvement over classical"),
            c_kl / mix,
            "200x",
            note=f"at 3 significant digits the ratio is {c_kl / mix:.0f}x",
        ),
    ]

    # v2 Table 1
    v2 = ("v2", "v2 Table 1 (T = 4096)")
    S, L, LN, LC = (
        ("small", "Small div. (delta = 1e-4)"),
        ("large", "Large div. (delta = 1)"),
        ("large_no_cap", "Large div. (delta = 1), no cap"),
        ("large_cap", "Large div. (delta = 1), with cap"),
    )
    adap_note = (
        "Adaptive evaluated at its worst case Dbar_t = eps (Pinsker); "
        "'<=' it is not implied by the inputs: the v2 unified min(PM, Mixed, Adaptive) = {u:.4g} is what is "
        "<= {p}"
    )
    pm_unc = pm_kl_uncapped(T, 1.0)
    cells += [
        _cell(*v2, ("classical", "Classical"), S, _col(small, "classical_kl"), "1,677"),
        _cell(*v2, ("classical", "Classical"), L, _col(large, "classical_kl"), "1.68e7"),
        _cell(*v2, ("linear", "Linear"), S, _col(small, "linear"), "115.9"),
        _cell(*v2, ("linear", "Linear"), L, _col(large, "linear"), "11,585"),
        _cell(*v2, ("pm", "Pinsker-Marginal"), S, pm, "35.0", alt=("closed form 4/3 T^1.5 delta", pm_closed)),
        _cell(
            *v2,
            ("pm", "Pinsker-Marginal"),
            LN,
            pm_unc,
            "3.49e5",
            note="no cap: exact sum 2 delta sum_t sqrt(t-1)",
            alt=("closed form 4/3 T^1.5 delta", nb.pm_kl_closed_form(T, 1.0)),
        ),
        _cell(*v2, ("pm", "Pinsker-Marginal"), LC, _col(large, "pm_kl"), "11,582"),
        _cell(*v2, ("mix", "Mixed"), S, mix, "8.2"),
        _cell(*v2, ("mix", "Mixed"), L, _col(large, "mix_kl"), "8,192"),
        _cell(
            *v2,
            ("adaptive", "Adaptive"),
            S,
            _col(small, "adaptive_kl"),
            "<= 8.2",
            note=adap_note.format(u=_col(small, "unified_v2"), p="8.2"),
        ),
        _cell(
            *v2,
            ("adaptive", "Adaptive"),
            L,
            _col(large, "adaptive_kl"),
            "<= 8,192",
            note=adap_note.format(u=_col(large, "unified_v2"), p="8,192"),
        ),
    ]

    # v3 Table 1: KL-only then KL+TV
    v3 = ("v3", "v3 Table 1 (T = 4096)")
    KO, KT = (
        ("kl_only", "KL-only (delta = 1e-4, D_KL^seq = 0.01)"),
        ("kl_tv", "KL+TV (+ eps = 5e-3, D_TV^seq = 0.05)"),
    )

    def classical(b):
        return min(_col(b, "classical_tv"), _col(b, "classical_kl"))

    pm_tv_closed = float(nb.pm_tv_closed_form(T, kltv.eps, 1e-4))
    cells += [
        _cell(*v3, ("eps", "eps (Pinsker)"), KO, small.eps, "7.07e-3"),
        _cell(*v3, ("dtv_seq", "D_TV^seq (Pinsker)"), KO, small.dtv_seq, "0.0707"),
        _cell(*v3, ("classical", "Classical"), KO, classical(small), "1,677"),
        _cell(*v3, ("classical", "Classical"), KT, classical(kltv), "839"),
        _cell(*v3, ("coupling", "Coupling"), KO, _col(small, "coupling"), "113.8"),
        _cell(*v3, ("coupling", "Coupling"), KT, _col(kltv, "coupling"), "79.9"),
        _cell(*v3, ("pm_kl", "PM-KL"), KO, _col(small, "pm_kl"), "35.0", alt=("closed form", pm_closed)),
        _cell(*v3, ("pm_kl", "PM-KL"), KT, _col(kltv, "pm_kl"), "35.0", alt=("closed form", pm_closed)),
        _cell(
            *v3,
            ("pm_tv", "PM-TV"),
            KO,
            _col(small, "pm_tv"),
            "35.0",
            alt=("closed form", nb.pm_tv_closed_form(T, small.eps, 1e-4)),
        ),
        _cell(*v3, ("pm_tv", "PM-TV"), KT, _col(kltv, "pm_tv"), "24.7", alt=("closed form", pm_tv_closed)),
        _cell(*v3, ("mix_kl", "Mix-KL"), KO, _col(small, "mix_kl"), "8.2"),
        _cell(*v3, ("mix_kl", "Mix-KL"), KT, _col(kltv, "mix_kl"), "8.2"),
        _cell(*v3, ("mix_tv", "Mix-TV"), KO, _col(small, "mix_tv"), "8.2"),
        _cell(*v3, ("mix_tv", "Mix-TV"), KT, _col(kltv, "mix_tv"), "4.1"),
        _cell(
            *v3,
            ("adaptive_star", "Adaptive hybrid"),
            KO,
            _col(small, "adaptive_star"),
            "<= 35.0",
            note="worst case Dbar_t = eps",
            alt=("closed form", pm_closed),
        ),
        _cell(
            *v3,
            ("adaptive_star", "Adaptive hybrid"),
            KT,
            _col(kltv, "adaptive_star"),
            "<= 24.7",
            note="worst case Dbar_t = eps",
        ),
        _cell(*v3, ("unified", "Unified"), KO, _col(small, "unified"), "<= 8.2"),
        _cell(*v3, ("unified", "Unified"), KT, _col(kltv, "unified"), "<= 4.1"),
    ]

    # v3 text: 409x and the coupling worked check
    v3t = ("v3", "v3 text")
    ratio = _col(small, "classical_kl") / _col(kltv, "unified")
    e = small.eps
    t_star = int(np.floor(1.0 / e)) + 1
    cells += [
        _cell(
            *v3t,
            ("improvement", "improvement"),
            ("ratio", "409x"),
            ratio,
            "409x",
            note=f"compares KL-only Classical {_col(small, 'classical_kl'):.6g} with KL+TV Unified "
            f"{_col(kltv, 'unified'):.6g}; printed values give 1677/4.1 = {1677 / 4.1:.1f}",
        ),
        _cell(
            *v3t,
            ("coupling_check", "coupling worked check (eps = 7.07e-3)"),
            ("t_star", "t*"),
            t_star,
            "142",
            note="floor(1/eps)+1 is the last uncapped t; the first capped t is "
            f"{int(nb.coupling_cap_position(e))}",
        ),
        _cell(
            *v3t,
            ("coupling_check", "coupling worked check (eps = 7.07e-3)"),
            ("sum", "sum"),
            float(nb._capped_linear_sum(np.int64(T), np.float64(e))),
            "4024.8",
        ),
        _cell(
            *v3t,
            ("coupling_check", "coupling worked check (eps = 7.07e-3)"),
            ("bound", "B_Coup"),
            _col(small, "coupling"),
            "113.8",
        ),
    ]

    # v2 text: worst-case Adaptive at delta = 0.01, large-divergence ratio, cap count
    v2t = ("v2", "v2 text")
    d = 0.01
    worst = 4.0 * np.sqrt(d / 2.0) * float(nb.adaptive_worst_case_sum(T, d))
    closed = float(nb.pm_kl_closed_form(T, d))
    cap_ge = int(np.sum(np.arange(T) * 1.0 / 2.0 >= 1.0))  # t with (t-1) delta/2 >= 1 at delta = 1
    cells += [
        _cell(
            *v2t,
            ("worst_case_adaptive", "worst-case Adaptive (delta = 0.01)"),
            ("value", "value"),
            worst,
            "about 1139",
            note="4 sqrt(delta/2) [(T - 2/delta) + 4/(3 delta)]",
            alt=("capped B_PM^KL (= Adaptive at Dbar_t = sqrt(delta/2))", nb.pm_kl(T, d)),
        ),
        _cell(
            *v2t,
            ("worst_case_adaptive", "worst-case Adaptive (delta = 0.01)"),
            ("pm_closed", "PM closed form"),
            closed,
            "3495",
            note=f"outside its regime: delta = 0.01 > 2/T = {2 / T:.2e}; capped B_PM^KL = "
            f"{float(nb.pm_kl(T, d)):.6g}",
        ),
        _cell(
            *v2t,
            ("worst_case_adaptive", "worst-case Adaptive (delta = 0.01)"),
            ("ratio", "3x"),
            closed / worst,
            "3x",
        ),
        _cell(
            *v2t,
            ("large_divergence", "large divergence (delta = 1)"),
            ("ratio", "uncapped / capped PM"),
            pm_unc / _col(large, "pm_kl"),
            "about 30x",
        ),
        _cell(
            *v2t,
            ("large_divergence", "large divergence (delta = 1)"),
            ("cap_count", "positions where the cap binds"),
            cap_ge,
            "4,094",
            note="counts t with (t-1) delta/2 >= 1, the tie at t = 3 included; strictly > 1: "
            f"{int(np.sum(np.arange(T) / 2.0 > 1.0))}",
        ),
    ]

    # v2 TRM-Max acceptance (1 - p)^T
    acc = ("v2", "v2 TRM-Max acceptance (1-p)^T")
    printed = {
        1e-3: ("0.774", "0.358", "0.017", "0.0003", "<1e-7"),
        1e-4: ("0.975", "0.903", "0.663", "0.440", "0.194"),
    }
    for p, row in printed.items():
        for T_, pub in zip((256, 1024, 4096, 8192, 16384), row):
            value = math.exp(T_ * math.log1p(-p))
            cells.append(
                _cell(
                    *acc,
                    (f"p_{p:g}".replace("-", "m"), f"p = {p:g}"),
                    (f"T_{T_}", f"T = {T_}"),
                    value,
                    pub,
                    alt=("approximation e^{-pT}", math.exp(-p * T_)),
                )
            )
    return cells


# --------------------------------------------------------------------------- writers (tables)
CELL_FIELDS = ("table", "row", "column", "computed", "published", "printed_precision", "verdict", "note")


def _cell_dict(c: TableCell) -> dict:
    d = asdict(c)
    d["id"] = c.claim_id
    return d


def cells_to_markdown(cells: list[TableCell]) -> str:
    """One Markdown table per paper table, in order, with a verdict summary."""
    out = ["# TRM paper tables regenerated by trm_bounds", ""]
    counts = {v: sum(c.verdict == v for c in cells) for v in CELL_VERDICTS}
    out.append("Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".")
    for table in dict.fromkeys(c.table for c in cells):
        out += [
            "",
            f"## {table}",
            "",
            "| row | column | computed | published | precision | verdict | note |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in (c for c in cells if c.table == table):
            out.append(
                f"| {c.row} | {c.column} | {c.computed:.6g} | {c.published} | {c.printed_precision} | "
                f"{c.verdict} | {_md(c.note)} |"
            )
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    """Escape a table-cell text for Markdown (pipes)."""
    return text.replace("|", "\\|")


def cells_to_csv(cells: list[TableCell]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*CELL_FIELDS, "version", "id"], lineterminator="\n")
    w.writeheader()
    for c in cells:
        d = _cell_dict(c)
        w.writerow({k: d[k] for k in w.fieldnames})
    return buf.getvalue()


def write_tables(out_dir: Path, cells: list[TableCell] | None = None) -> list[Path]:
    """Write table.md, table.csv, table.json into out_dir (all rendered before any is written)."""
    cells = paper_tables() if cells is None else cells
    texts = {
        "table.md": cells_to_markdown(cells),
        "table.csv": cells_to_csv(cells),
        "table.json": json.dumps([_cell_dict(c) for c in cells], indent=2) + "\n",
    }
    return _write_all(Path(out_dir), texts)


def _write_all(out_dir: Path, texts: dict[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in texts.items():
        (out_dir / name).write_text(text)
        paths.append(out_dir / name)
    return paths


# --------------------------------------------------------------------------- tiny exact engine
@dataclass(frozen=True)
class _TinyPairs:
    """B one-prompt policy pairs over V tokens, horizon T, enumerated exactly.

    logp_roll[k], logp_theta[k]: (B, V**k, V) log-probs at t = k + 1 (row = base-V digits of y_<t);
    reward: (B, V**T) in [0, 1].
    """

    logp_roll: tuple
    logp_theta: tuple
    reward: np.ndarray

    @property
    def shape(self):
        B, _, V = self.logp_roll[0].shape
        return B, len(self.logp_roll), V


def _log_softmax(z: np.ndarray) -> np.ndarray:
    return log_softmax(np.asarray(z, dtype=np.float64))  # log1p form: rows sum to 1 even at huge logits


def _random_tiny_pairs(rng: np.random.Generator, B: int, T: int, V: int) -> _TinyPairs:
    """Random pairs: roll logits of random scale, theta = roll + sparse perturbations, 0/1 or uniform R."""
    scale = np.exp(rng.uniform(np.log(0.1), np.log(8.0), (B, 1, 1)))
    pert = np.exp(rng.uniform(np.log(1e-3), np.log(6.0), (B, 1, 1)))
    lr, lt = [], []
    for k in range(T):
        z = rng.normal(size=(B, V**k, V)) * scale
        keep = rng.uniform(size=(B, V**k, 1)) < rng.uniform(0.2, 1.0, (B, 1, 1))
        lr.append(_log_softmax(z))
        lt.append(_log_softmax(z + pert * rng.normal(size=z.shape) * keep))
    reward = np.where(
        rng.uniform(size=(B, 1)) < 0.5, rng.integers(0, 2, (B, V**T)), rng.uniform(size=(B, V**T))
    )
    return _TinyPairs(tuple(lr), tuple(lt), reward.astype(np.float64))


def _tiny_exact(pairs: _TinyPairs, baseline: float | None = None) -> dict[str, np.ndarray]:
    """Exact J_roll, J_theta, L' (and L_b), Error and every bound ingredient, enumerating all V**T responses.

    Error = J_theta - J_roll - L', L' = E_roll[R sum_t (rho_t - 1)] (THEORY.md section 2);
    eps, delta: max over all contexts (full support: all reachable); D_KL^seq = sum_t E_{d_t^roll}[KL];
    Dbar_t = E_{d_t^roll}[TV]; D_TV^seq = 1/2 sum_y |P^theta(y) - P^roll(y)|. Arrays of shape (B,) / (B, T).
    """
    B, T, V = pairs.shape
    n = np.arange(V**T)
    lp_r = np.zeros((B, V**T))
    lp_t = np.zeros((B, V**T))
    rho_minus_1 = np.zeros((B, V**T))
    prefix = np.ones((B, 1))  # d_t^roll over contexts at level t
    dbar, dkl = np.zeros((B, T)), np.zeros(B)
    eps, delta = np.zeros(B), np.zeros(B)
    for kk in range(T):
        ctx, tok = n // V ** (T - kk), (n // V ** (T - 1 - kk)) % V  # context row and token of every response
        a, b = pairs.logp_roll[kk][:, ctx, tok], pairs.logp_theta[kk][:, ctx, tok]
        lp_r += a
        lp_t += b
        rho_minus_1 += np.expm1(b - a)
        tv = token_tv(pairs.logp_roll[kk], pairs.logp_theta[kk])  # (B, V**kk)
        kl = token_kl(pairs.logp_roll[kk], pairs.logp_theta[kk])
        eps, delta = np.maximum(eps, tv.max(-1)), np.maximum(delta, kl.max(-1))
        dbar[:, kk] = np.sum(prefix * tv, -1)
        dkl += np.sum(prefix * kl, -1)
        prefix = (prefix[:, :, None] * np.exp(pairs.logp_roll[kk])).reshape(B, -1)
    p_r, p_t, R = np.exp(lp_r), np.exp(lp_t), pairs.reward
    J_roll, J_theta = np.sum(p_r * R, -1), np.sum(p_t * R, -1)
    surrogate = np.sum(p_r * R * rho_minus_1, -1)
    out = {
        "J_roll": J_roll,
        "J_theta": J_theta,
        "surrogate": surrogate,
        "error": J_theta - J_roll - surrogate,
        "eps": np.minimum(eps, 1.0),
        "delta": delta,
        "dkl_seq": dkl,
        "dtv_seq": np.minimum(1.0, 0.5 * np.sum(np.abs(p_t - p_r), -1)),  # min: rounding only
        "dbar": np.minimum(dbar, 1.0),
        "T": T,
    }
    if baseline is not None:
        out["surrogate_b"] = np.sum(
            p_r * (R - baseline) * (rho_minus_1 + T), -1
        )  # L_b = E[(R - b) sum_t rho_t]
    return out


def _bounds_batch(ex: dict) -> dict[str, np.ndarray]:
    """Every published bound on a batch of exact ingredients (trm_bounds.bounds functions, broadcast)."""
    T, e, d, s_kl, s_tv, db = ex["T"], ex["eps"], ex["delta"], ex["dkl_seq"], ex["dtv_seq"], ex["dbar"]
    out = {
        "classical_tv": nb.classical_tv(T, e),
        "classical_kl": nb.classical_kl(T, d),
        "linear": nb.linear(T, e),
        "pm_kl": nb.pm_kl(T, d),
        "pm_tv": nb.pm_tv(T, e, d),
        "mix_kl": nb.mix_kl(T, d, s_kl),
        "mix_tv": nb.mix_tv(T, e, s_tv),
        "coupling": nb.coupling(T, e),
        "adaptive_kl": nb.adaptive_kl(db, d),
        "adaptive_tv": nb.adaptive_tv(db, e),
        "adaptive_star": nb.adaptive_star(db, e, d),
    }
    out["unified"] = np.minimum.reduce([out[n] for n in nb.UNIFIED_OF])
    return out


_ROUNDING = 1e-14  # per position: J_theta - J_roll - L' cancels terms of size <= 1, each rounded to ~1e-16


@dataclass(frozen=True)
class _Search:
    """Result of the tiny-pair search: worst |Error| / bound per bound key, at full and halved constants."""

    instances: int
    worst_ratio: dict
    worst_ratio_halved: dict
    description: str


def _tiny_search(n_batches: int = 6, batch: int = 400, seed: int = 0) -> _Search:
    """Random search over exactly enumerated pairs (T in 1..4, V in 2..3) plus a hill-climb on the worst."""
    rng = np.random.default_rng(seed)
    worst: dict[str, float] = {}
    worst_h: dict[str, float] = {}
    total = 0

    def score(pairs):
        ex = _tiny_exact(pairs)
        bnd = _bounds_batch(ex)
        err = np.maximum(np.abs(ex["error"]) - _ROUNDING * ex["T"], 0.0)  # |Error| beyond float64 rounding
        with np.errstate(divide="ignore", invalid="ignore"):
            return {n: np.where(b > 0, err / b, np.where(err > 0, np.inf, 0.0)) for n, b in bnd.items()}

    for i in range(n_batches):
        T, V = (1, 2, 3, 4, 2, 3)[i % 6], (2, 3, 2, 2, 3, 3)[i % 6]
        if V**T > 81:
            T = 3
        pairs = _random_tiny_pairs(rng, batch, T, V)
        ratios = score(pairs)
        total += batch
        # hill-climb on the instances that are worst for the unified bound: small moves of theta
        best = np.argsort(-ratios["unified"])[:32]
        cur = _TinyPairs(
            tuple(x[best] for x in pairs.logp_roll),
            tuple(x[best] for x in pairs.logp_theta),
            pairs.reward[best],
        )
        cur_score = ratios["unified"][best]
        for _ in range(15):
            moved = _TinyPairs(
                cur.logp_roll,
                tuple(_log_softmax(x + 0.3 * rng.normal(size=x.shape)) for x in cur.logp_theta),
                cur.reward,
            )
            r_new = score(moved)
            total += len(best)
            for n, r in r_new.items():
                worst[n] = max(worst.get(n, 0.0), float(np.max(r)))
                worst_h[n] = max(worst_h.get(n, 0.0), 2.0 * float(np.max(r)))
            better = r_new["unified"] > cur_score
            cur = _TinyPairs(
                cur.logp_roll,
                tuple(
                    np.where(better[:, None, None], m, c) for m, c in zip(moved.logp_theta, cur.logp_theta)
                ),
                cur.reward,
            )
            cur_score = np.maximum(cur_score, r_new["unified"])
        for n, r in ratios.items():
            worst[n] = max(worst.get(n, 0.0), float(np.max(r)))
            worst_h[n] = max(worst_h.get(n, 0.0), 2.0 * float(np.max(r)))
    return _Search(
        total,
        worst,
        worst_h,
        f"{total} exactly enumerated one-prompt pairs (T <= 4, V <= 3), "
        f"random plus a hill-climb on |Error|/B*, seed {seed}; |Error| counted beyond a rounding "
        f"allowance of {_ROUNDING:g} T",
    )


# --------------------------------------------------------------------------- evidence hooks
_EVIDENCE_MODULES = ("trm_bounds.exact_evidence", "trm_bounds.chain_evidence", "trm_bounds.trainer_evidence")
_EVIDENCE: dict[str, list[Callable[[], dict]]] = {}
_PROVIDER_RE = re.compile(r"^c(\d\d)_evidence$")


def register_evidence(claim_id: str, fn: Callable[[], dict]) -> None:
    """Add an evidence provider for claim `claim_id` ("C01", "C11", "C13", ...).

    fn() returns, for C01: {bound_key: {"worst_ratio": float, "instances": int, "description": str}}
    (measured worst |Error| / bound); for C11: {bound_key: {"slope": float, "description": str}};
    for any claim: {"verdict": ..., "evidence": str} or {sub_id: {"verdict": ..., "evidence": str}}.
    """
    if not re.fullmatch(r"C\d\d(\.[\w.]+)?", claim_id):
        raise ValueError(f"claim_id must look like 'C01' or 'C09.v3.pm_tv', got {claim_id!r}")
    fns = _EVIDENCE.setdefault(claim_id, [])
    if fn not in fns:
        fns.append(fn)


def _load_providers() -> list[str]:
    """Import the optional evidence modules (skip only those that do not exist); register cNN_evidence."""
    loaded = []
    for name in _EVIDENCE_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        loaded.append(name)
        for attr in dir(mod):
            mt = _PROVIDER_RE.match(attr)
            if mt and callable(getattr(mod, attr)):
                register_evidence(f"C{mt[1]}", getattr(mod, attr))
    return loaded


def _provided(claim: str) -> list[tuple[str, object]]:
    """[(provider name, result or exception)] for `claim`; a provider error is reported, not hidden."""
    out = []
    for fn in _EVIDENCE.get(claim, []):
        label = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"
        try:
            out.append((label, fn()))
        except Exception as exc:  # noqa: BLE001 - reported in the evidence text
            out.append((label, exc))
    return out


# --------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Claim:
    """One audited claim (INTERFACES.md `trm-bounds audit --json`)."""

    id: str
    claim: str
    verdict: str
    evidence: str
    source: str

    def __post_init__(self):
        if self.verdict not in CLAIM_VERDICTS:
            raise ValueError(f"verdict must be one of {CLAIM_VERDICTS}, got {self.verdict!r}")


def _d(key: str) -> symbolic.Derivation:
    return symbolic.get_derivation(key)


def _from_derivation(cid, claim, key, source, verdict=None) -> Claim:
    d = _d(key)
    v = verdict or {"holds": "holds", "fails": "fails", "imprecise": "imprecise"}[d.status]
    return Claim(cid, claim, v, f"[{d.method}] {d.detail}", source)


def _c01(search: _Search) -> list[Claim]:
    provided = _provided("C01")
    claims = []
    for key in nb.PUBLISHED_BOUNDS:
        worst, n, parts = (
            search.worst_ratio[key],
            search.instances,
            [f"self: worst |Error|/bound = {search.worst_ratio[key]:.4f} over {search.description}"],
        )
        pending = True
        for label, res in provided:
            if isinstance(res, Exception):
                parts.append(f"{label} raised {type(res).__name__}: {res}")
            elif isinstance(res, dict) and key in res:
                r = res[key]
                worst, n, pending = max(worst, float(r["worst_ratio"])), n + int(r.get("instances", 0)), False
                parts.append(
                    f"{label}: worst ratio {float(r['worst_ratio']):.4f} over {r.get('instances')} instances "
                    f"({r.get('description', '')})"
                )
        if pending:
            parts.append(
                "pending: exact-engine measurements (trm_bounds.exact_evidence.c01_evidence) not available"
            )
        verdict = "fails" if worst > 1.0 + 1e-9 else "holds"
        parts.append("a numeric search, not a proof" if verdict == "holds" else "counterexample found")
        claims.append(
            Claim(
                f"C01.{key}",
                f"{key} bounds |Error| = |J(theta) - J(roll) - L'(theta)|",
                verdict,
                "; ".join(parts),
                "v1-v3 theorems (THEORY.md section 5)",
            )
        )
    return claims


def _claims_symbolic() -> list[Claim]:
    pm = _d("pm_closed_forms")
    ci = _d("integral_bound")
    return [
        Claim(
            "C02.pm_kl",
            "B_PM^KL = 4/3 T^1.5 delta when delta <= 2/T",
            "imprecise",
            f"[{pm.method}] {pm.detail} Regime: {_d('pm_regime').detail} Integral step: {ci.detail}",
            "v1-v3",
        ),
        Claim(
            "C02.pm_tv",
            "B_PM^TV = 8/3 T^1.5 eps sqrt(delta/2) when delta <= 2/T",
            "imprecise",
            f"[{pm.method}] upper estimate, not equality (same integral step); at T = 4096, delta = 1e-4, "
            "eps = 5e-3: "
            f"exact {float(nb.pm_tv(4096, 5e-3, 1e-4)):.6f} vs closed "
            f"{float(nb.pm_tv_closed_form(4096, 5e-3, 1e-4)):.6f}",
            "v3",
        ),
        _from_derivation(
            "C03",
            "Mixed closed forms; caps inactive iff delta <= 2 and D_KL^seq <= 2",
            "mix_closed_forms",
            "v1, v3",
        ),
        _from_derivation(
            "C04.regimes", "Coupling: T eps <= 1 gives B_Coup = 2 T (T-1) eps^2", "coupling_regimes", "v3"
        ),
        _from_derivation(
            "C04.le_4Teps", "Coupling: T eps > 1 gives B_Coup <= 4 T eps", "coupling_le_4Teps", "v3"
        ),
        _from_derivation(
            "C04.le_4Teps_plus_2",
            "Coupling proof: B_Coup <= 4 T eps + 2",
            "coupling_le_4Teps_plus_2",
            "v3 proof",
            verdict="caveat",
        ),
        _from_derivation(
            "C04.cap_position",
            "t* = floor(1/eps) + 1 is where the cap activates",
            "coupling_cap_position",
            "v3",
        ),
        _from_derivation(
            "C05.crossover", "Adaptive crossover at T - t = delta / (2 eps^2)", "adaptive_crossover", "v3"
        ),
        _from_derivation(
            "C05.pinsker_tight",
            "eps = sqrt(delta/2): crossover at 1",
            "adaptive_crossover_pinsker_tight",
            "v3",
        ),
        _from_derivation(
            "C06.recovery_kl",
            "Dbar_t = min(1, sqrt(delta/2)) turns B_Adap^KL into B_PM^KL",
            "recovery_adaptive_kl_to_pm_kl",
            "v2, v3",
        ),
        _from_derivation(
            "C06.recovery_tv",
            "Dbar_t = eps turns B_Adap^TV into B_Coup",
            "recovery_adaptive_tv_to_coupling",
            "v3",
        ),
        _from_derivation(
            "C06.star_le_min", "B_Adap^* <= min(B_Adap^KL, B_Adap^TV)", "adaptive_star_le_min", "v3"
        ),
        _from_derivation(
            "C08.sum",
            "worst-case Adaptive sum <= (T - 2/delta) + 4/(3 delta) for 2/delta <= T",
            "worst_case_adaptive_sum",
            "v2",
        ),
        _from_derivation(
            "C08.regimes",
            "worst-case Adaptive: delta < 2/T recovers 4/3 T^1.5 delta; prefactor 4 when delta >= 2",
            "worst_case_adaptive_regimes",
            "v2",
        ),
    ]


def _c07() -> Claim:
    T, delta = 64, 0.05
    dbar_max = np.full(T, min(1.0, np.sqrt(delta / 2.0)))
    a, p = float(nb.adaptive_kl(dbar_max, delta)), float(nb.pm_kl(T, delta))
    dbar_big = np.r_[np.full(T - 1, 0.3), 0.0]
    a2, l2 = float(nb.adaptive_kl(dbar_big, 3.0)), float(nb.linear_dbar(dbar_big))
    return Claim(
        "C07",
        "v2: the Adaptive bound is strictly tighter than both PM and Linear",
        "imprecise",
        f"B_Adap^KL <= B_PM^KL and <= 4 sum_t Dbar_t always (Dbar_t <= min(1, sqrt(delta/2)), weights <= 1), "
        f"but not strictly: counterexample 1, Dbar_t = min(1, sqrt(delta/2)) (T = {T}, delta = {delta}): "
        f"Adaptive {a:.12g} = PM {p:.12g}; counterexample 2, delta = 3 >= 2 and Dbar_T = 0: Adaptive "
        f"{a2:.12g} "
        f"= Linear (data form) {l2:.12g}.",
        "v2",
    )


def _c08_ratio() -> Claim:
    T, d = 4096, 0.01
    worst = 4.0 * np.sqrt(d / 2.0) * float(nb.adaptive_worst_case_sum(T, d))
    pm_c, closed = float(nb.pm_kl(T, d)), float(nb.pm_kl_closed_form(T, d))
    return Claim(
        "C08.ratio",
        "'about 1139 vs 3495, 3x' at delta = 0.01",
        "caveat",
        f"computed worst-case Adaptive {worst:.2f} and PM closed form {closed:.2f}: ratio "
        f"{closed / worst:.3f}. "
        f"The gain comes from the caps, not from adaptivity: delta = 0.01 > 2/T = {2 / T:.2e}, so the closed "
        f"form is outside its regime, and the capped B_PM^KL itself is {pm_c:.2f} (ratio to the Adaptive "
        f"estimate {pm_c / worst:.4f}).",
        "v2 text",
    )


def _c09(cells: list[TableCell]) -> list[Claim]:
    to_v = {"match": "holds", "rounding": "imprecise", "mismatch": "fails"}
    return [
        Claim(
            c.claim_id,
            f"{c.table}: {c.row}, {c.column} = {c.published}",
            to_v[c.verdict],
            f"computed {c.computed:.6g} vs printed {c.published} ({c.printed_precision}): {c.verdict}"
            + (f"; {c.note}" if c.note else ""),
            c.table,
        )
        for c in cells
    ]


def _c10() -> Claim:
    small = nb.BoundInputs.from_partial(4096, 1e-4, dkl_seq=0.01)
    kltv = nb.BoundInputs.from_partial(4096, 1e-4, eps=5e-3, dkl_seq=0.01, dtv_seq=0.05)
    ck, ut = _col(small, "classical_kl"), _col(kltv, "unified")
    same_ko = ck / _col(small, "unified")
    same_kt = min(_col(kltv, "classical_tv"), _col(kltv, "classical_kl")) / ut
    return Claim(
        "C10",
        "'409x improvement'",
        "caveat",
        f"409x = KL-only Classical ({ck:.2f}) / KL+TV Unified ({ut:.4f}) = {ck / ut:.2f} (printed 409 "
        "truncates "
        f"409.5; 1677/4.1 = {1677 / 4.1:.1f}): it mixes columns. Within one column the improvement is "
        f"{same_ko:.1f}x (KL-only) and {same_kt:.1f}x (KL+TV).",
        "v3 text",
    )


def _c11() -> list[Claim]:
    ex = symbolic.leading_exponents()
    want = {"classical_kl": ("2", "2"), "pm_kl": ("3/2", "1"), "mix_kl": ("1", "1"), "coupling": ("2", "1")}
    provided = _provided("C11")
    claims = []
    for fam, (w_unc, w_cap) in want.items():
        got = (str(ex[fam]["uncapped"]), str(ex[fam]["capped"]))
        parts = [
            f"[symbolic] sympy limit log(B)/log(T): {got[0]} without caps, {got[1]} with every cap binding"
        ]
        for label, res in provided:
            if isinstance(res, Exception):
                parts.append(f"{label} raised {type(res).__name__}: {res}")
            elif isinstance(res, dict) and fam in res:
                parts.append(
                    f"{label}: measured slope {res[fam].get('slope')} ({res[fam].get('description', '')})"
                )
        if not any(isinstance(r, dict) and fam in r for _, r in provided):
            parts.append("pending: measured log-log slopes on exact chains (trm_bounds.chain_evidence)")
        verdict = "holds" if got == (w_unc, w_cap) else "fails"
        if fam == "pm_kl":
            verdict = "caveat" if verdict == "holds" else verdict
            parts.append("O(T^1.5) only while delta <= 2/T; at fixed delta the caps bind and B_PM is O(T)")
        claims.append(
            Claim(
                f"C11.{fam}",
                f"scaling exponent of {fam}: {w_unc}" + (f" then {w_cap}" if w_unc != w_cap else ""),
                verdict,
                "; ".join(parts),
                "v1-v3",
            )
        )
    return claims


def _c12_c13() -> list[Claim]:
    rng = np.random.default_rng(3)
    pairs = _random_tiny_pairs(rng, 400, 3, 2)
    ex = _tiny_exact(pairs, baseline=0.0)
    bstar = _bounds_batch(ex)["unified"]
    err_b = ex["J_theta"] - ex["J_roll"] - ex["surrogate_b"]  # the L_b form with b = 0
    viol_b = np.abs(err_b) > bstar
    i = int(np.argmax(np.abs(err_b) - bstar))
    shift = ex["surrogate_b"] - ex["surrogate"] - 3 * ex["J_roll"]
    c12 = Claim(
        "C12",
        "any fixed baseline b: all bounds apply equally to L_b and L'",
        "fails",
        f"L_b = L' + T (J(roll) - b) (max deviation from the identity over 400 exact pairs: "
        f"{float(np.max(np.abs(shift))):.2e}), so the error of the L_b form is Error - T (J(roll) - b). "
        f"With b = 0, T = 3: |J(theta) - J(roll) - L_0| > B* on {int(viol_b.sum())} of 400 random pairs; "
        "worst "
        f"|error_b| = {abs(float(err_b[i])):.4g} vs B* = {float(bstar[i]):.3g}. The bounds hold for L' "
        "(equivalently b = J(roll)) only.",
        "v2, v3",
    )
    # C13: L_0 - B* > 0 but J decreases
    cert_b = (ex["surrogate_b"] - bstar > 0) & (ex["J_theta"] < ex["J_roll"])
    cert_p = (ex["surrogate"] - bstar > 0) & (ex["J_theta"] <= ex["J_roll"])
    j = int(np.argmax(cert_b)) if cert_b.any() else None
    ce = (
        f"e.g. L_0 = {float(ex['surrogate_b'][j]):.4g} > B* = {float(bstar[j]):.3g} while J(theta) - "
        "J(roll) = "
        f"{float(ex['J_theta'][j] - ex['J_roll'][j]):.2e}"
        if j is not None
        else "none found"
    )
    c13 = Claim(
        "C13",
        "L(theta) - B* > 0 implies J(theta) > J(roll) (stated with the baseline form L)",
        "fails" if cert_b.any() else "caveat",
        f"with b = 0 the premise holds and J decreases on {int(cert_b.sum())} of 400 exact pairs ({ce}). "
        f"With L' (b = J(roll)) the implication follows from |Error| <= B*: violations found "
        f"{int(cert_p.sum())}." + _provider_text("C13"),
        "v2, v3",
    )
    return [c12, c13]


def _rare_context_pair(kl_rare: float, q: float) -> dict:
    """T = 2, V = 2: y_1 = 1 with prob q under both policies; at context y_1 = 1, KL(roll || theta) = kl_rare.

    roll(.|y_1=1) = (1/2, 1/2), theta = (1 - s, s) with s(1 - s) = e^{-2 kl_rare} / 4, solved in log space.
    Returns delta, D_KL^seq (both from trm_bounds.divergences) and the TRM-Max acceptance at any
    threshold below kl_rare.
    """
    y = math.exp(-2.0 * kl_rare) / 4.0
    log_s = math.log(2.0 * y) - math.log1p(math.sqrt(1.0 - 4.0 * y))
    first = np.log([1.0 - q, q])
    logp_roll = np.array([first, np.log([0.5, 0.5]), np.log([0.5, 0.5])])  # contexts: root, y1=0, y1=1
    logp_theta = np.array([first, np.log([0.5, 0.5]), [math.log1p(-math.exp(log_s)), log_s]])
    kl = token_kl(logp_roll, logp_theta)
    visit = np.array([1.0, 1.0 - q, q])
    return {"delta": float(kl.max()), "dkl_seq": float(np.sum(visit * kl)), "acceptance": 1.0 - q, "kl": kl}


def _c14_c18() -> list[Claim]:
    rows = []
    for K in (0.1, 1.0, 10.0, 100.0):
        r = _rare_context_pair(K, 0.01 / K)
        rows.append(f"delta = {r['delta']:.4g} at D_KL^seq = {r['dkl_seq']:.4g}")
    c14 = Claim(
        "C14",
        "no function f with delta <= f(D_KL^seq) for all pairs",
        "caveat",
        "computed family (T = 2, V = 2, a context visited with probability q = 0.01/K carrying token KL K): "
        + "; ".join(rows)
        + ". D_KL^seq is fixed while delta grows without bound, so no finite-valued f "
        "exists (at D_KL^seq = 0, delta = 0 is forced: theta = roll on roll-reachable contexts makes the "
        "theta-reachable set the same, so f(0) = 0 works there). The paper's own proof is not part of "
        "THEORY.md and is not checked here.",
        "v2 proposition",
    )
    r = _rare_context_pair(5.0, 0.01)
    c18 = Claim(
        "C18",
        "acceptance above 70% is evidence that D_KL^{tok,max} <= delta globally",
        "fails",
        f"counterexample (T = 2): TRM-Max with threshold 0.05 accepts {100 * r['acceptance']:.1f}% of "
        "sequences "
        f"while D_KL^{{tok,max}} = {r['delta']:.3g} (a rare context, visit probability 0.01). Acceptance "
        "measures how often bad contexts are visited, not whether they exist." + _provider_text("C18"),
        "v2, v3",
    )
    return [c14, c18]


def _provider_text(claim: str) -> str:
    parts = []
    for label, res in _provided(claim):
        if isinstance(res, Exception):
            parts.append(f"{label} raised {type(res).__name__}: {res}")
        elif isinstance(res, dict) and "evidence" in res:
            parts.append(f"{label}: {res['evidence']}")
        else:
            parts.append(f"{label}: {json.dumps(res, default=str)[:400]}")
    return ("; measured: " + "; ".join(parts)) if parts else ""


def _c15_c16() -> list[Claim]:
    rng = np.random.default_rng(5)
    logp_roll = _log_softmax(rng.normal(size=(200, 6)))
    logp_theta = _log_softmax(np.log(np.exp(logp_roll)) + rng.normal(size=(200, 6)))
    p = np.exp(logp_roll)
    lr = logp_theta - logp_roll  # log rho at each token
    kl = token_kl(logp_roll, logp_theta)
    e1 = np.sum(p * k1(lr), -1)
    e3 = np.sum(p * k3(lr), -1)
    e_mix = np.sum(p * (k1(lr) + 0.37 * np.expm1(lr)), -1)
    dev = float(max(np.max(np.abs(e1 - kl)), np.max(np.abs(e3 - kl)), np.max(np.abs(e_mix - kl))))
    k3_min = float(np.min(k3(np.linspace(-50.0, 50.0, 100_001))))
    c15 = [
        Claim(
            "C15.unique",
            "k3 is the only / unique unbiased estimator of KL(roll || theta)",
            "fails",
            "exact expectations over 200 random 6-token pairs: E_roll[k1], E_roll[k3] and E_roll[k1 + 0.37 "
            "(rho - 1)] "
            f"all equal KL(roll || theta) (max deviation {dev:.1e}); k3 = k1 + (rho - 1) is one member of "
            "the unbiased "
            "family k1 + lambda (rho - 1) (E_roll[rho - 1] = 0 when theta << roll); k3 is the member that "
            "is >= 0.",
            "v2, v3",
        ),
        Claim(
            "C15.jensen",
            "k3 >= 0 'by Jensen'",
            "imprecise",
            f"{_d('k3_nonnegative').detail} Numeric: min k3 over log rho in [-50, 50] = {k3_min:.3g}.",
            "v2, v3",
        ),
    ]
    vals = {
        "k3(0.01)": float(k3(math.log(0.01))),
        "k2(0.01)": float(k2(math.log(0.01))),
        "k2(100)": float(k2(math.log(100.0))),
    }
    ok = (
        abs(vals["k2(0.01)"] - vals["k2(100)"]) < 1e-12
        and round(vals["k3(0.01)"], 1) == 3.6
        and round(vals["k2(0.01)"], 1) == 10.6
    )
    c16 = Claim(
        "C16",
        "k2(rho) = k2(1/rho); k3(0.01) about 3.6; k2(0.01) = k2(100) about 10.6",
        "holds" if ok and _d("k2_symmetric").status == "holds" else "fails",
        f"{_d('k2_symmetric').detail} Computed by trm_bounds.divergences: "
        + ", ".join(f"{k} = {v:.4f}" for k, v in vals.items()),
        "v2, v3",
    )
    return [*c15, c16]


def _c17() -> list[Claim]:
    """SER statistic (1/T) sum_t |rho_t - 1| on an iid-token model: its variance and its acceptance vs T."""
    rng = np.random.default_rng(7)
    V = 8
    lr_roll = _log_softmax(rng.normal(size=V))
    lr_theta = _log_softmax(lr_roll + 0.4 * rng.normal(size=V))
    p = np.exp(lr_roll)
    a = np.abs(np.expm1(lr_theta - lr_roll))  # |rho - 1| per token
    mean = float(np.sum(p * a))
    tv = float(token_tv(lr_roll, lr_theta))
    sigma2 = float(np.sum(p * (a - mean) ** 2))
    Ts = np.array([16, 64, 256, 1024])
    var, acc_hi, acc_lo = [], [], []
    for T in Ts:
        tok = rng.choice(V, size=(2000, T), p=p)
        stat = a[tok].mean(-1)
        var.append(stat.var())
        acc_hi.append(np.mean(stat <= 1.2 * mean))
        acc_lo.append(np.mean(stat <= 0.8 * mean))
    slope = float(np.polyfit(np.log(Ts), np.log(var), 1)[0])
    return [
        Claim(
            "C17.variance",
            "SER: 'variance decreases as O(1/sqrt(T))'",
            "imprecise",
            f"iid-token model (V = 8): E|rho - 1| = {mean:.4f} = 2 TV = {2 * tv:.4f}; exact variance of the "
            "SER "
            f"statistic is sigma^2 / T with sigma^2 = {sigma2:.4f}; Monte Carlo (2000 sequences per T, T = "
            f"{Ts.tolist()}) log-log slope of the variance {slope:.3f}. The variance is O(1/T); the standard "
            "deviation is O(1/sqrt(T)).",
            "v2",
        ),
        Claim(
            "C17.length_bias",
            "SER is 'mildly biased in favour of longer sequences'",
            "caveat",
            "same model: acceptance with threshold 1.2 x mean rises with T "
            f"({', '.join(f'{x:.3f}' for x in acc_hi)}) "
            f"but with threshold 0.8 x mean falls ({', '.join(f'{x:.3f}' for x in acc_lo)}): the direction "
            "of the "
            "length bias depends on whether delta_SER is above or below E|rho - 1| = 2 Dbar.",
            "v2",
        ),
    ]


def _c19() -> list[Claim]:
    rng = np.random.default_rng(11)
    pairs = _random_tiny_pairs(rng, 64, 3, 2)
    ex = _tiny_exact(pairs)
    B, T, V = pairs.shape
    n = np.arange(V**T)
    rho = np.zeros((B, V**T, T))
    lp_r = np.zeros((B, V**T))
    for kk in range(T):
        ctx, tok = n // V ** (T - kk), (n // V ** (T - 1 - kk)) % V
        a, b = pairs.logp_roll[kk][:, ctx, tok], pairs.logp_theta[kk][:, ctx, tok]
        rho[:, :, kk] = np.exp(b - a)
        lp_r += a
    EW = np.sum(np.exp(lp_r) * nb.ln_trm_score(rho, ex["eps"][:, None], ex["delta"][:, None]), -1)
    star = nb.adaptive_star(ex["dbar"], ex["eps"], ex["delta"])
    dev = float(np.max(np.abs(2 * EW - star) / np.maximum(star, 1e-300)))
    W = nb.ln_trm_score(rho[0], ex["eps"][0], ex["delta"][0])
    Z = float(nb.ln_trm_Z(T, ex["eps"][0], ex["delta"][0]))
    thr = float(np.median(W / Z))
    keep = W / Z <= thr
    return [
        Claim(
            "C19.accepted",
            "LN-TRM: accepted sequences have W <= delta_W Z(T)",
            "holds",
            f"by the definition of the mask 1[W/Z <= delta_W]; computed on one pair: {int(keep.sum())} "
            "accepted, "
            f"max W - delta_W Z over them {float(np.max(W[keep] - thr * Z)):.2e} <= 0.",
            "v2, v3",
        ),
        Claim(
            "C19.bound",
            "|Error| <= 2 E_roll[W(y)] assuming only delta globally",
            "caveat",
            "2 E_roll[W] = 4 sum_t Dbar_t w_t = B_Adap^* (v3 weights), since E_roll[|rho_t - 1| | c_t] = 2 "
            "TV(c_t): "
            f"max relative gap over 64 exact pairs {dev:.1e}. So the guarantee is the Adaptive bound (C01."
            "adaptive_star / adaptive_kl): the v3 weights use eps as well as delta (a global TV assumption "
            "TRM "
            "does not enforce); only the v2 weights need delta alone. It bounds the error of the unmasked "
            "surrogate; masking by W does not enter it.",
            "v2, v3",
        ),
    ]


def _c20() -> Claim:
    lo, hi = 0.8, 1.28  # the paper's clipping range [0.8, 1.28]

    def obj(rho, A):
        return min(rho * A, min(max(rho, lo), hi) * A)

    rows, h = [], 1e-6
    for rho, A in ((1.5, 1.0), (1.5, -1.0), (0.5, 1.0), (0.5, -1.0)):
        g = (obj(rho + h, A) - obj(rho - h, A)) / (2 * h)
        rows.append(
            f"rho = {rho}, A = {A:+g}: objective {obj(rho, A):+.3f}, d/drho {g:+.3f} "
            f"({'clipped, no gradient' if abs(g) < 1e-9 else 'unclipped'})"
        )
    return Claim(
        "C20",
        "PPO clipping leaves rho_t A_t unclipped when rho_t > 1 + eps and A_t < 0 (four cases)",
        "holds",
        "computed min(rho A, clip(rho, 0.8, 1.28) A): "
        + "; ".join(rows)
        + ". The exact wording of v2's table cells is not in THEORY.md; the computed cases agree with the "
        "stated one.",
        "v2 table",
    )


def _c21() -> Claim:
    rng = np.random.default_rng(13)
    logp_roll = _log_softmax(3 * rng.normal(size=(50, 16)))
    logp_theta = _log_softmax(np.log(np.exp(logp_roll)) + 0.5 * rng.normal(size=(50, 16)))
    delta = float(token_kl(logp_roll, logp_theta).max())
    lr = logp_theta - logp_roll
    token_mask = (
        np.abs(lr) <= 0.3
    )  # a token-level mask drops sampled tokens from the loss; logits are untouched
    delta_after = float(token_kl(logp_roll, logp_theta).max())
    return Claim(
        "C21",
        "token masking leaves delta, and so every bound, unchanged",
        "holds",
        f"delta is a function of the two full next-token distributions at each context; a token mask "
        f"(here dropping {int((~token_mask).sum())} of {token_mask.size} tokens) changes the loss, not "
        f"pi_roll or pi_theta: delta {delta:.6g} before and {delta_after:.6g} after. Every bound input "
        "(eps, delta, D^seq, Dbar) is likewise a function of the two policies only.",
        "v2, v3",
    )


def _c22(cells: list[TableCell]) -> list[Claim]:
    by = {(c.version, c.row_key, c.column_key): c for c in cells}
    cnt, ratio = by[("v2", "large_divergence", "cap_count")], by[("v2", "large_divergence", "ratio")]
    return [
        Claim(
            "C22.cap_count",
            "large divergence: the cap binds for 4,094 of 4,096 positions",
            "holds" if cnt.verdict == "match" else "fails",
            f"counted: {cnt.computed:.0f} ({cnt.note})",
            "v2 text",
        ),
        Claim(
            "C22.ratio",
            "uncapped / capped PM about 30x",
            "holds" if ratio.verdict == "match" else "fails",
            f"computed {ratio.computed:.3f} (uncapped exact sum / capped B_PM^KL at delta = 1)",
            "v2 text",
        ),
    ]


def _c23() -> list[Claim]:
    rng = np.random.default_rng(17)
    p = _log_softmax(rng.normal(size=(100, 5)))
    q = _log_softmax(p + rng.normal(size=(100, 5)))
    lhs = np.sum(np.exp(p) * np.abs(np.expm1(q - p)), -1)
    dev = float(np.max(np.abs(lhs - 2 * token_tv(p, q))))
    p0 = p[:1].copy()
    p0[0, 0] = -np.inf  # roll has a zero where theta does not
    p0 = p0 - np.log(np.sum(np.exp(p0)))
    safe = np.where(np.isfinite(p0), p0, 0.0)  # the zero-probability token contributes 0 to E_roll
    lhs0 = float(np.sum(np.where(np.isfinite(p0), np.exp(p0) * np.abs(np.expm1(q[:1] - safe)), 0.0)))
    tv0 = float(token_tv(p0, q[:1])[0])
    # gradient: theta = roll + s D on one tiny pair; central differences of J and L' at s = 0
    pairs = _random_tiny_pairs(rng, 1, 3, 2)
    D = tuple(rng.normal(size=x.shape) for x in pairs.logp_roll)
    h = 1e-5

    def at(s):
        th = tuple(_log_softmax(x + s * dd) for x, dd in zip(pairs.logp_roll, D))
        return _tiny_exact(_TinyPairs(pairs.logp_roll, th, pairs.reward))

    up, dn = at(h), at(-h)
    dJ = float((up["J_theta"] - dn["J_theta"])[0] / (2 * h))
    dL = float((up["surrogate"] - dn["surrogate"])[0] / (2 * h))
    return [
        Claim(
            "C23.identity",
            "E_roll|rho_t - 1| = 2 TV(c_t)",
            "caveat",
            f"100 random 5-token pairs: max |E_roll|rho - 1| - 2 TV| = {dev:.1e}. Needs theta << roll: with "
            "a zero "
            f"of pi_roll that pi_theta does not share, E_roll|rho - 1| = {lhs0:.4f} < 2 TV = {2 * tv0:.4f}."
            + _provider_text("C23"),
            "v2 lemma",
        ),
        Claim(
            "C23.gradient",
            "grad L'(theta) = grad J(theta) at theta = roll",
            "holds",
            f"central differences along a random direction on an exact T = 3 pair: dJ/ds = {dJ:.8f}, dL'/ds "
            "= "
            f"{dL:.8f} (gap {abs(dJ - dL):.1e}; Error = O(s^2)). A numeric check; the proof is the identity "
            "Error = sum_t (E_{d_t^theta} - E_{d_t^roll})[g_t] with both factors O(s).",
            "v1-v3",
        ),
    ]


def _c24() -> Claim:
    parts = []
    for d in (0.001, 0.002, 0.05, 0.1):
        vals = []
        for T in (256, 1024, 4096):
            b = nb.BoundInputs.from_partial(T, d)
            vals.append(f"T = {T}: {_col(b, 'unified'):.3g}")
        lo, hi = 1, 4096
        while lo < hi:  # largest T with B* <= 1 (B* increases with T)
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if _col(nb.BoundInputs.from_partial(mid, d), "unified") <= 1 else (lo, mid - 1)
        parts.append(f"delta = {d}: B* {', '.join(vals)}; B* <= 1 only for T <= {lo}")
    return Claim(
        "C24",
        "the experiments' thresholds (delta = 0.05, 0.1, 0.001, 0.002) give non-vacuous guarantees",
        "fails",
        "B* from delta alone (eps by Pinsker, D_KL^seq = T delta, Dbar_t = eps: all TRM controls): "
        + "; ".join(parts)
        + ". |J(theta) - J(roll)| <= 1, so B* > 1 certifies nothing at reasoning lengths. "
        "(0.001 and 0.002 are TRM-Avg thresholds, which do not bound the max token KL at all.)"
        + _provider_text("C24"),
        "v2, v3 experiments",
    )


def _section9(search: _Search) -> Claim:
    """S9.halved_constants from the written proof in `trm_bounds.refined` and evidence computed now."""
    from . import refined
    from .refined_evidence import halved_constants_evidence

    keys = tuple(refined.REFINED_OF)
    ev = halved_constants_evidence()
    tiny = max(search.worst_ratio_halved[k] for k in keys if k in search.worst_ratio_halved)
    worst_key = max(keys, key=lambda k: ev["worst"][k])
    holds = ev["violations"] == 0 and ev["worst_mp"] <= 1.0 and tiny <= 1.0
    return Claim(
        "S9.halved_constants",
        "[beyond] every bound holds with its leading constant halved",
        "holds" if holds else "fails",
        "[written proof, checked by hand, not machine-checked] trm_bounds.refined: route A "
        "(|g_t| <= TV(c_t) since R in [0, 1] and sum_v (pi_theta - pi_roll) = 0, then the master inequality) "
        "halves classical_tv/kl, pm_kl/tv, mix_kl/tv, coupling; route B (ratio identity with R replaced by "
        "R - 1/2, tower rule, E[|1 - prod rho| | c_{t+1}] = 2 TV_fut) halves linear, linear_dbar, "
        "adaptive_kl/tv/star under pi_theta << pi_roll, and a limit pi_roll^n = (1 - 1/n) pi_roll + "
        "pi_theta / n removes that assumption; registered as *_refined. The constant cannot be halved again: "
        "a T = 2 pair attains adaptive_tv_refined and coupling_refined exactly (refined.tight_pair, checked "
        "in rationals). Numeric evidence (not a proof): worst |Error| / refined bound = "
        f"{ev['worst'][worst_key]:.6f} ({worst_key}) over {ev['description']}, "
        f"{ev['violations']} violations; the worst pair "
        f"({ev['worst_kind']}, P, V, T = {ev['worst_shape']}) recomputed trajectory by trajectory at "
        f"{ev['mp_dps']} digits (mpmath): ratio {ev['worst_mp']:.10f}. Tiny-pair search: worst |Error| / "
        f"(bound / 2) = {tiny:.4f} over {search.description}. Float64 caveat: rows stored by a naive "
        "log-softmax with logits ~1e3 sum to 1 + 1e-82, which halves the computed eps / Dbar and adds a "
        "spurious Error (~1e-166 against a true 1e-1005); such pairs showed |Error| / B_Adap^TV from 0.5 up "
        "to 1.0 in float64 (the reported 0.705; 637 of 132,000 seeded pairs), and all 637 are within the "
        "refined bounds when recomputed at 120-960 digits (13 of them within 1e-28 of equality; one is "
        "pinned in tests/test_refined.py); refined.log_softmax_log1p keeps such rows normalised.",
        "THEORY.md section 9",
    )


def audit(quick: bool = False) -> list[Claim]:
    """Every claim of THEORY.md section 10 with a verdict and evidence computed now.

    Loads the optional evidence providers first (`_EVIDENCE_MODULES`), then computes the
    toolkit's own evidence. quick=True uses a smaller random search for C01 / section 9.
    """
    _load_providers()
    cells = paper_tables()
    search = _tiny_search(n_batches=6, batch=150 if quick else 400)
    claims = [
        *_c01(search),
        *_claims_symbolic(),
        _c07(),
        _c08_ratio(),
        *_c09(cells),
        _c10(),
        *_c11(),
        *_c12_c13(),
        *_c14_c18(),
        *_c15_c16(),
        *_c17(),
        *_c19(),
        _c20(),
        _c21(),
        *_c22(cells),
        *_c23(),
        _c24(),
        _section9(search),
    ]
    return sorted(claims, key=lambda c: c.id.split(".")[0])  # stable: C01 .. C24, S9


def claims_to_markdown(claims: list[Claim]) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in CLAIM_VERDICTS}
    out = [
        "# Audit of the TRM paper's claims (THEORY.md section 10)",
        "",
        "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ". Evidence is computed when the "
        "command runs; a numeric check is never called a proof.",
        "",
        "| id | verdict | claim | evidence | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in claims:
        out.append(f"| {c.id} | {c.verdict} | {_md(c.claim)} | {_md(c.evidence)} | {c.source} |")
    return "\n".join(out) + "\n"


def write_audit(out_dir: Path, claims: list[Claim] | None = None) -> list[Path]:
    """Write audit.md and audit.json into out_dir."""
    claims = audit() if claims is None else claims
    texts = {
        "audit.md": claims_to_markdown(claims),
        "audit.json": json.dumps([asdict(c) for c in claims], indent=2) + "\n",
    }
    return _write_all(Path(out_dir), texts)


def _figures_job(out_dir: Path, quick: bool) -> list[dict]:
    cells = paper_tables()
    claims = audit(quick=quick)
    write_tables(out_dir, cells)
    write_audit(out_dir, claims)
    shows = {
        "table.md": "every table and worked number of the TRM paper (v1-v3), recomputed, with verdicts",
        "table.csv": "the regenerated table cells (CSV)",
        "table.json": "the regenerated table cells (JSON, INTERFACES.md format)",
        "audit.md": "every claim of THEORY.md section 10 with verdict and computed evidence",
        "audit.json": "the audit (JSON, INTERFACES.md format)",
    }
    return [{"path": p, "shows": s, "inputs": {"T": T_PAPER, "quick": quick}} for p, s in shows.items()]


def _register_job() -> None:
    from .figures import JOBS, register_job

    if "paper_tables" not in JOBS:
        register_job("paper_tables")(_figures_job)


_register_job()
