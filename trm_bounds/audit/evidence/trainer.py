"""Audit evidence from the trainer (claims C13, C18, C24 of docs/theory.md section 10).

`trm_bounds.audit.claims` imports the ``cNN_evidence`` functions. Each returns
``{"evidence": str, ...numbers}`` measured in exact training runs: read from the JSON
that the training study (`trm_bounds.studies.training`) wrote (``training/train_figures.json``
in the audit's measurement folder, `trm_bounds.audit.outputs`) when it exists, otherwise from
a tiny training run made here (a few seconds). The text says which. A file there that cannot
be read raises (the claims are then "unchecked").
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ...studies.training import tally_by_threshold
from ..outputs import describe, find_output, output_dirs

__all__ = ["training_evidence", "c13_evidence", "c18_evidence", "c24_evidence", "EVIDENCE_JSON"]

EVIDENCE_JSON = Path("training") / "train_figures.json"  # relative to a figures output directory


def _search_dirs() -> tuple[Path, ...]:
    """Where the experiment's JSON is looked for (`trm_bounds.audit.outputs`); tests replace this."""
    return output_dirs()


def training_evidence() -> dict:
    """{"source": str, "totals": {...}} with totals as `trm_bounds.studies.training.totals` computes them."""
    path = find_output(EVIDENCE_JSON, _search_dirs())
    if path is None:
        return _tiny_evidence()
    return _read_evidence(str(path), path.stat().st_mtime_ns, describe(path))


@functools.lru_cache(maxsize=4)
def _read_evidence(path: str, mtime_ns: int, shown: str) -> dict:
    """The training study's JSON at `path` (cached per file version); raises when it cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
        kind = "quick" if data.get("quick") else "default"
        return {"source": f"{shown} ({kind} run of the training study)", "totals": data["totals"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{shown} cannot be read: {type(exc).__name__}: {exc}") from exc


@functools.lru_cache(maxsize=1)
def _tiny_evidence() -> dict:
    return {"source": "tiny training run made by trm_bounds.audit.evidence.trainer", "totals": _tiny_totals()}


def _tiny_totals() -> dict:
    """A few short runs (TRM-Max under MoE flips, and certified mode under fp16 rollouts)."""
    from ...trainer import TrainConfig, train

    small = dict(P=2, V=3, T=4, n_groups=4, group_size=4, steps=6)
    runs = []
    for seed in (0, 1):
        for thr in (0.05, 0.1):
            cfg = TrainConfig(method="trm-max", mismatch="moe=0.1", max_threshold=thr, seed=seed, **small)
            runs.append(("plain", thr, train(cfg)))
        cfg = TrainConfig(method="trm-max", mismatch="precision=fp16", certified=True, seed=seed, **small)
        runs.append(("certified", 0.05, train(cfg)))
    tot = {
        "runs": len(runs),
        "steps": sum(r.summary["steps"] for _, _, r in runs),
        "certified_steps": sum(r.summary["certified_steps"] for _, _, r in runs),
        "violations": sum(r.summary["violations"] for _, _, r in runs),
    }
    cert = [r for kind, _, r in runs if kind == "certified"]
    tot["certified_mode"] = {
        "steps": sum(r.summary["steps"] for r in cert),
        "shrunk": sum(r.summary["shrunk"] for r in cert),
        "skipped": sum(r.summary["skipped"] for r in cert),
        "applied_below_roll": sum(r.summary["applied_below_roll"] for r in cert),
    }
    by_thr = tally_by_threshold((thr, r.steps) for kind, thr, r in runs if kind == "plain")
    tot["trm_max_by_threshold"] = by_thr
    return tot


def c13_evidence() -> dict:
    """Certified steps (exact L' > B*) and violations (certified but J_new <= J_roll) in training."""
    ev = training_evidence()
    t = ev["totals"]
    cm = t.get("certified_mode", {})
    text = (
        f"exact training runs ({ev['source']}): {t['certified_steps']} of {t['steps']} optimizer steps over "
        f"{t['runs']} runs were certified (L' > B*, L' the analysis form, exact); violations "
        f"(certified but J(theta_new) <= J(roll)): {t['violations']}. Certified mode (backtrack/skip until "
        f"certified): {cm.get('steps', 0)} steps, {cm.get('shrunk', 0)} shrunk, "
        f"{cm.get('skipped', 0)} skipped, {cm.get('applied_below_roll', 0)} applied updates with J "
        "below J(roll)"
    )
    return {"evidence": text, "certified_steps": t["certified_steps"], "violations": t["violations"]}


def c18_evidence() -> dict:
    """Steps where TRM-Max kept >= 70% of the batch although the exact global max token KL exceeded delta."""
    ev = training_evidence()
    parts = []
    for thr, d in sorted(ev["totals"].get("trm_max_by_threshold", {}).items()):
        parts.append(
            f"delta = {thr}: acceptance >= 70% on {d['acc_ge_0.7']} of {d['steps']} steps, and on "
            f"{d['acc_ge_0.7_but_delta_above']} of those the exact max token KL(pi_roll || pi_theta) "
            "over all contexts exceeded delta"
        )
    text = f"TRM-Max training under MoE routing flips ({ev['source']}): " + "; ".join(parts)
    return {"evidence": text}


def c24_evidence() -> dict:
    """How often B* (exact inputs, T small) was below 1 and how often it certified, per TRM-Max threshold."""
    ev = training_evidence()
    parts = []
    for thr, d in sorted(ev["totals"].get("trm_max_by_threshold", {}).items()):
        parts.append(
            f"delta = {thr}: B* < 1 on {d['bound_below_1']} of {d['steps']} steps, certified (L' > B*) on "
            f"{d['certified']}"
        )
    text = (
        f"toy training (T <= 5, exact B* from the realised pi_roll / pi_theta_new, {ev['source']}): "
        + "; ".join(parts)
        + ". Even at T = 5 the realised divergences (mismatch plus the step itself) usually make B* exceed "
        "the one-step gain L'"
    )
    return {"evidence": text}
