"""Evidence for the paper's "tight" (issue 14): the worst-case search of `trm_bounds.studies.tightness`.

Reads tightness/tightness.json from the figures directories (`trm_bounds.audit.outputs`) and
summarises, per bound, the worst |Error| / bound found at the smallest and the largest horizon
and the verdicts (`trm_bounds.verdict`). Returns None when the study has not been run.
"""

from __future__ import annotations

import json

from ..outputs import find_output

__all__ = ["tightness_summary"]


def tightness_summary() -> dict | None:
    """{"path", "T_max", "T_tree_max" (largest tree horizon searched), "violations",
    "per_bound": {bound: {"T2", "Tmax", "fixed"}}} or None."""
    path = find_output("tightness/tightness.json")
    if path is None:
        return None
    recs = json.loads(path.read_text())
    T_max = max(r["T"] for r in recs)
    per: dict[str, dict] = {}
    for r in recs:
        d = per.setdefault(r["bound"], {"T2": 0.0, "Tmax": {}})
        if r["T"] == 2:
            d["T2"] = max(d["T2"], r["ratio"])
        if r["T"] == T_max:
            d["Tmax"][r["fixed"]] = r["ratio"]
    return {
        "path": str(path),
        "T_max": T_max,
        "T_tree_max": max((r["T"] for r in recs if r["kind"] == "pair"), default=None),
        "instances": len({r["instance"] for r in recs}),
        "violations": sum(r["verdict"] == "violated" for r in recs),
        "undecided": sum(r["verdict"] == "undecided" for r in recs),
        "per_bound": per,
    }
