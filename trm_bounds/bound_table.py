"""The `trm-bounds bounds` report: every registered bound with what it is, the tightest, and
whether it can certify an improvement at the given inputs.

Certificate criterion. J(theta) - J(roll) = L'(theta) + Error, so for any bound B >= |Error|

    J(theta) - J(roll) >= L'(theta) - B,

and a step certifies an improvement exactly when its surrogate gain L'(theta) exceeds B. How
large can L' be? L'(theta) = sum_t E_{d_t^roll}[g_t(c_t)] with g_t(c) = sum_v (pi_theta -
pi_roll)(v|c) Q_t(c, v); for rewards of range max R - min R <= 1 (e.g. R in [0, 1]) the values
Q_t lie in an interval of length 1 and sum_v (pi_theta - pi_roll)(v|c) = 0, so |g_t(c)| <= TV(c)
(docs/theory.md, "building blocks") and

    |L'(theta)| <= sum_t Dbar_t  (<= T eps).

A bound B >= sum_t Dbar_t therefore certifies nothing at these inputs: no attainable L' exceeds
it. (B >= 1 alone does not decide it: L' can exceed 1, e.g. |L'| = 5.958 in
`trm_bounds.counterexamples.large_error_pair`; what is bounded by 1 is J(theta) - J(roll), so
a certifying step also has L' <= B + 1.) Below sum_t Dbar_t a bound certifies the steps whose
gain exceeds it, which one-step gains far below 1 reach only when B is small too.

What would make a bound useful: `delta_for_target` and `horizon_for_target` give the largest
delta (at this T) and the largest T (at this delta) for which a key stays <= a target, with
every other input derived from delta alone as `BoundInputs.from_partial` does (the worst case
that delta allows; measured inputs are at most these values, so they can only lower a bound).

Numpy only: `trm-bounds bounds` imports this and `trm_bounds.bounds`, nothing heavier.
"""

from __future__ import annotations

import math

import numpy as np

from .bounds import BOUND_INFO, BOUNDS, BoundInfo, BoundInputs, bound_info, evaluate_bounds
from .refined import REFINED_OF

__all__ = [
    "AGGREGATES",
    "surrogate_limit",
    "certifies_possibly",
    "delta_for_target",
    "horizon_for_target",
    "bounds_summary",
    "format_bounds_table",
    "explain_bounds",
]

AGGREGATES = ("unified", "unified_v2", "unified_refined")  # minima of other keys: tie with one
_T_SEARCH_MAX = 2**20  # horizon_for_target looks no further (each step builds (T,) arrays)


def surrogate_limit(inputs: BoundInputs) -> float:
    """sum_t Dbar_t: the largest |L'(theta)| that `inputs` allow, for rewards of range <= 1.

    |L'| <= sum_t E_{d_t^roll}|g_t| <= sum_t Dbar_t (|g_t(c)| <= TV(c)). Returns a float.
    """
    u = inputs.dbar_uniform  # a uniform dbar: T times the value, no pass over T entries
    return float(np.sum(inputs.dbar)) if u is None else u * inputs.T


def certifies_possibly(bound: float, limit: float) -> bool:
    """Whether some attainable L' can exceed `bound` (L' > B certifies J(theta) > J(roll)).

    Args: bound B >= 0 (may be inf); limit = `surrogate_limit(inputs)`, the largest |L'|.
    """
    return bool(bound < limit)


def _derived_bound(name: str, T: int, delta: float) -> float:
    """Key `name` at horizon T with every input derived from delta (BoundInputs.from_partial)."""
    return float(BOUNDS[name](BoundInputs.from_partial(int(T), float(delta))))


def delta_for_target(T: int, target: float, name: str = "unified_refined", *, steps: int = 60) -> float:
    """The largest delta (to 0.1% relative, rounded down) at which key `name`, with every other
    input derived from delta, is <= target at horizon T.

    Bisection on log(delta) over [1e-40, 1e4]: the derived inputs (eps, D_KL^seq, D_TV^seq,
    Dbar_t) and so every bound grow with delta. Returns 0.0 if even delta = 1e-40 is too large,
    inf if delta = 1e4 (every cap binding) still meets the target.
    """
    bound_info(name)  # ValueError for an unknown key
    if not target > 0:
        raise ValueError(f"target must be > 0, got {target!r}")
    lo, hi = -40.0, 4.0
    if _derived_bound(name, T, 10.0**hi) <= target:
        return math.inf
    if _derived_bound(name, T, 10.0**lo) > target:
        return 0.0
    for _ in range(steps):
        if hi - lo < 4e-4:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _derived_bound(name, T, 10.0**mid) <= target else (lo, mid)
    return 10.0**lo


def horizon_for_target(delta: float, target: float, name: str = "unified_refined") -> int | None:
    """The largest T <= 2**20 at which key `name` (inputs derived from delta) is <= target.

    Returns 0 if not even T = 1 meets it, None if T = 2**20 still does (looked no further).
    Doubling, then bisection on integers: the derived bounds grow with T.
    """
    bound_info(name)
    if not target > 0:
        raise ValueError(f"target must be > 0, got {target!r}")
    if _derived_bound(name, 1, delta) > target:
        return 0
    ok = 1
    while ok < _T_SEARCH_MAX and _derived_bound(name, min(2 * ok, _T_SEARCH_MAX), delta) <= target:
        ok = min(2 * ok, _T_SEARCH_MAX)
    if ok == _T_SEARCH_MAX:
        return None
    bad = 2 * ok
    while bad - ok > 1:
        mid = (ok + bad) // 2
        ok, bad = (mid, bad) if _derived_bound(name, mid, delta) <= target else (ok, mid)
    return ok


def _group(name: str) -> str:
    info = BOUND_INFO.get(name)
    if info is None:
        return "other"
    return "refined" if info.refined else "published"


def _tightest(values: dict[str, float], names) -> str | None:
    """The key of smallest value among `names` (an aggregate only if nothing else is there)."""
    pool = [n for n in names if n not in AGGREGATES] or list(names)
    return min(pool, key=lambda n: values[n]) if pool else None


def bounds_summary(
    inputs: BoundInputs, target: float = 0.1, *, targets: bool = True, reward_range: float = 1.0
) -> dict:
    """Every registered bound at `inputs`, with its metadata, the tightest, and the certificate check.

    Returns {"inputs": BoundInputs, "bounds": {key: value}, "groups": {"published"|"refined"|
    "other": [keys]}, "tightest": {group: key}, "surrogate_limit": sum_t Dbar_t,
    "certifies": {key: bool (some attainable L' exceeds it)}, "target": target,
    "delta_for_target": {key: delta or None}, "horizon_for_target": {key: T or None}} where the
    last two are computed for the tightest published and refined aggregates (`unified`,
    `unified_refined`) when `targets` (delta_for_target only up to T = 2**20: each of its steps
    builds (T,) arrays; None beyond). `reward_range` (max R - min R) scales every bound by
    `bounds.reward_range_factor` and the surrogate limit by the range (L' is unchanged by a shift
    of R, and |g_t| <= range * TV(c_t)); "reward_range" in the result records it.
    """
    values = evaluate_bounds(inputs, reward_range=reward_range)
    groups: dict[str, list[str]] = {"published": [], "refined": [], "other": []}
    for name in values:
        groups[_group(name)].append(name)
    limit = surrogate_limit(inputs) * float(reward_range)
    aims = [n for n in ("unified", "unified_refined") if n in values] if targets else []
    small = inputs.T <= _T_SEARCH_MAX
    return {
        "inputs": inputs,
        "reward_range": float(reward_range),
        "bounds": values,
        "groups": groups,
        "tightest": {g: _tightest(values, names) for g, names in groups.items() if names},
        "surrogate_limit": limit,
        "certifies": {n: certifies_possibly(v, limit) for n, v in values.items()},
        "target": float(target),
        "delta_for_target": {n: delta_for_target(inputs.T, target, n) if small else None for n in aims},
        "horizon_for_target": {n: horizon_for_target(inputs.delta, target, n) for n in aims},
    }


def _g(x: float) -> str:
    return f"{x:.4g}"


_GROUP_TITLE = {
    "published": "published, TRM paper (arXiv 2512.23075); assumes R in [0, 1] as the paper states "
    "(its proofs use only |R| <= 1)",
    "refined": "refined, this package (leading constant halved, proved in docs/theory.md); assumes a "
    "reward range max R - min R <= 1",
    "other": "registered by the user, no metadata",
}


def _source_of(info: BoundInfo | None) -> str:
    if info is None:
        return "-"
    if info.refined:
        return info.equation
    return f"{info.equation}, {info.version.split(' (')[0]}"


def _input_line(inputs: BoundInputs) -> list[str]:
    """One line per input: value and where it came from."""
    src = inputs.sources
    d = inputs.dbar
    same = inputs.dbar_uniform is not None or bool(np.all(d == d[0]))
    dbar = f"Dbar_t = {_g(d[0])} for every t" if same else f"Dbar_t in [{_g(d.min())}, {_g(d.max())}]"
    return [
        f"  delta   = {_g(inputs.delta)}  ({src['delta']})",
        f"  eps     = {_g(inputs.eps)}  ({src['eps']})",
        f"  dkl_seq = {_g(inputs.dkl_seq)}  ({src['dkl_seq']})",
        f"  dtv_seq = {_g(inputs.dtv_seq)}  ({src['dtv_seq']})",
        f"  {dbar}, sum_t Dbar_t = {_g(surrogate_limit(inputs))}  ({src['dbar']})",
    ]


def format_bounds_table(summary: dict) -> str:
    """The human table of `bounds_summary`: one line per key, the tightest marked, then the certificate."""
    inputs, values, limit = summary["inputs"], summary["bounds"], summary["surrogate_limit"]
    tight = summary["tightest"]
    lines = [
        f"Upper bounds on |Error| = |J(theta) - J(roll) - L'(theta)| at T = {inputs.T} "
        "(each holds under its group's assumption)",
        "inputs:",
        *_input_line(inputs),
    ]
    r = summary.get("reward_range", 1.0)
    if r != 1.0:
        lines.append(
            f"  reward range max R - min R = {_g(r)} (declared): every value below is scaled for it "
            "(published by max(1, range/2), refined and second_order by max(1, range))"
        )
    width = max(len(n) for n in values)
    for group, names in summary["groups"].items():
        if not names:
            continue
        lines += ["", _GROUP_TITLE[group]]
        lines.append(f"  {'key':<{width}}  {'value':>10}  {'equation, version':<24}  certifies")
        for n in names:
            info = BOUND_INFO.get(n)
            value = values[n]
            cert = f"if L' > {_g(value)}" if summary["certifies"][n] else "never"
            mark = "  <- tightest" if tight.get(group) == n else ""
            if n in AGGREGATES:
                twin = [m for m in names if m not in AGGREGATES and values[m] == value]
                mark = f"  (= {twin[0]})" if twin else mark
            lines.append(f"  {n:<{width}}  {_g(value):>10}  {_source_of(info):<24}  {cert}{mark}")
    best = min((tight[g] for g in tight), key=lambda n: values[n])
    lines += [
        "",
        f"Tightest: {best} = {_g(values[best])}"
        + (
            f" (published: {tight['published']} = {_g(values[tight['published']])})"
            if "published" in tight
            else ""
        ),
        "Certificate: J(theta) - J(roll) = L'(theta) + Error >= L'(theta) - B, so a step certifies an improvement",
        "only when its surrogate gain L'(theta) exceeds B. With R in [0, 1], |g_t(c)| <= TV(c) gives",
        f"|L'(theta)| <= sum_t Dbar_t = {_g(limit)} here: 'never' marks a bound that no attainable L' exceeds.",
        "A bound above 1 still bounds |Error| (|Error| can exceed 1); a certifying step also has",
        "L' <= B + 1, since J(theta) - J(roll) <= 1. `trm-bounds certify` estimates L' from a batch.",
    ]
    lines += _usefulness(summary)
    lines.append("Formulas, inputs and sources: trm-bounds bounds --explain [NAME]; docs/theory.md.")
    return "\n".join(lines)


def _usefulness(summary: dict) -> list[str]:
    """What would bring the aggregate bounds down to the target (worst-case inputs from delta)."""
    inputs, target = summary["inputs"], summary["target"]
    if not summary["horizon_for_target"]:
        return []
    out = [f"To reach B <= {_g(target)} (--target), inputs derived from delta alone (worst case):"]
    for name, T_ok in summary["horizon_for_target"].items():
        d = summary["delta_for_target"][name]
        if d is None:
            at_T = f"delta not searched (T > {_T_SEARCH_MAX})"
        else:
            at_T = "any delta <= 1e4 meets it" if math.isinf(d) else f"needs delta <= {_g(d)}"
        if T_ok is None:
            horizon = f"T >= {_T_SEARCH_MAX} (looked no further)"
        elif T_ok == 0:
            horizon = "no T (not even T = 1)"
        else:
            horizon = f"T <= {T_ok}"
        out.append(f"  {name}: at T = {inputs.T} {at_T}; at delta = {_g(inputs.delta)} holds for {horizon}")
    out.append(
        "  Measured inputs (--eps, --dkl-seq, --dtv-seq, --dbar; from `trm-bounds exact` or a batch) are at"
    )
    out.append("  most these worst-case values when delta holds, so they can only lower the bounds.")
    return out


def explain_bounds(name: str | None = None) -> str:
    """Each key's formula, inputs, regime, assumption and source (all described keys, or one)."""
    names = [name] if name is not None else list(dict.fromkeys([*BOUNDS, *BOUND_INFO]))
    blocks = []
    for n in names:
        info = bound_info(n)
        if info is None:
            blocks.append(f"{n}: registered by the user, no metadata")
            continue
        refined_of = {v: k for k, v in REFINED_OF.items()}
        lines = [
            f"{n}: {info.equation}; source: {info.version}",
            f"    formula:    {info.formula}   [sums over t = 1..T]",
            f"    inputs:     {', '.join(info.inputs)}",
            f"    regime:     {info.regime}",
            f"    assumption: {info.assumption}",
        ]
        if n in refined_of:
            lines.append(f"    published:  {refined_of[n]} (twice this)")
        if n not in BOUNDS:
            lines.append(
                "    not computed by `trm-bounds bounds`: see `trm-bounds exact` and `trm-bounds certify`"
            )
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + "\nDefinitions and proofs: docs/theory.md."
