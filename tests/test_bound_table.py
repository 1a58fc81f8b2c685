"""Tests for trm_bounds/bound_table.py and the bound metadata (BOUND_INFO) behind `trm-bounds bounds`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _checks import assert_bound_holds
from trm_bounds.bound_table import (
    AGGREGATES,
    bounds_summary,
    delta_for_target,
    explain_bounds,
    format_bounds_table,
    horizon_for_target,
    surrogate_limit,
)
from trm_bounds.bounds import BOUND_INFO, BOUNDS, PUBLISHED_BOUNDS, BoundInfo, BoundInputs, register_bound
from trm_bounds.cli import main
from trm_bounds.refined import REFINED_OF


def _registered():
    return [n for n in BOUNDS if not n.startswith("_test")]  # other tests register throwaway keys


def test_every_registered_bound_has_metadata():
    for name in _registered():
        info = BOUND_INFO[name]
        assert info.name == name and info.formula and info.inputs and info.assumption
    for name in PUBLISHED_BOUNDS:
        assert BOUND_INFO[name].version.startswith("v") and not BOUND_INFO[name].refined
        assert "R in [0, 1]" in BOUND_INFO[name].assumption
    for pub, ref in REFINED_OF.items():
        info = BOUND_INFO[ref]
        assert info.refined and info.version.startswith("refined, this package")
        assert "max R - min R <= 1" in info.assumption
        assert info.inputs == BOUND_INFO[pub].inputs
        assert info.equation == BOUND_INFO[pub].equation + " / 2"


def test_refined_formula_is_half_the_published_one_on_numbers():
    # the formula text is documentation; check it against the functions where it is a number
    b = BoundInputs.from_partial(T=9, delta=0.3)
    for pub, ref in REFINED_OF.items():
        assert BOUNDS[ref](b) == pytest.approx(0.5 * BOUNDS[pub](b), rel=1e-15)


def test_register_bound_info_must_match_and_replacement_drops_stale_info():
    info = BoundInfo("_test_meta", "X", "v9", "1", ("T",), "-", "-")
    with pytest.raises(ValueError, match="info.name"):
        register_bound("_test_other", lambda b: 1.0, info=info, replace=True)
    from trm_bounds import bounds as B

    try:
        register_bound("_test_meta", lambda b: 1.0, info=info, replace=True)
        assert BOUND_INFO["_test_meta"] is info
        register_bound("_test_meta", lambda b: 2.0, replace=True)
        assert "_test_meta" not in BOUND_INFO
        assert "_test_meta: registered by the user, no metadata" in explain_bounds("_test_meta")
        s = bounds_summary(BoundInputs.from_partial(T=4, delta=1.0))
        assert s["groups"]["other"] == ["_test_meta"] and "registered by the user" in format_bounds_table(s)
    finally:  # the registry is global: leave it as it was
        B._BOUNDS.pop("_test_meta", None)
        B._BOUND_INFO.pop("_test_meta", None)


def test_surrogate_limit_bounds_L_prime_on_exact_pairs():
    # |L'| <= sum_t Dbar_t for rewards in [0, 1] (|g_t(c)| <= TV(c)); it is what decides 'never'
    from trm_bounds.adversarial import adversarial_pairs
    from trm_bounds.exact import exact_quantities

    worst = 0.0
    for _, lr, lt, R, pp in adversarial_pairs(60, seed=3, T_max=3):
        q = exact_quantities(lr, lt, R, pp)
        assert_bound_holds(abs(q["surrogate"]), float(np.sum(q["dbar"])), "|L'| <= sum_t Dbar_t")
        worst = max(worst, abs(q["surrogate"]) / max(float(np.sum(q["dbar"])), 1e-300))
    assert worst > 0.5  # the inequality is not loose on every pair


def test_surrogate_can_exceed_one_and_the_limit_still_holds():
    from trm_bounds.counterexamples import large_error_pair

    from trm_bounds.exact import exact_quantities

    p = large_error_pair()
    q = exact_quantities(p.logp_roll, p.logp_theta, p.reward, p.prompt_probs)
    assert abs(q["surrogate"]) > 5.9  # L' = -5.958: a bound >= 1 is not automatically useless
    assert_bound_holds(abs(q["surrogate"]), float(np.sum(q["dbar"])), "|L'| <= sum_t Dbar_t")


def test_certificate_check_marks_what_no_surrogate_can_exceed():
    s = bounds_summary(BoundInputs.from_partial(T=16384, delta=1e-3, eps=0.05))
    assert s["surrogate_limit"] == pytest.approx(16384 * 0.05)
    assert not s["certifies"]["pm_kl"] and s["certifies"]["pm_kl_refined"]  # 1406 > 819.2 > 702.9
    assert not s["certifies"]["linear_dbar_refined"]  # 2 sum Dbar > sum Dbar whenever it is > 0
    assert (s["tightest"]["published"], s["tightest"]["refined"]) == ("pm_kl", "pm_kl_refined")
    small = bounds_summary(BoundInputs.from_partial(T=4, delta=1e-6))
    assert all(small["certifies"][n] for n in ("unified", "unified_refined", "mix_kl"))


@pytest.mark.parametrize("name", ["unified", "unified_refined", "pm_kl"])
@pytest.mark.parametrize("T", [1, 64, 16384])
def test_delta_for_target_is_the_threshold(name, T):
    target = 0.1
    d = delta_for_target(T, target, name)
    bound = lambda delta: float(BOUNDS[name](BoundInputs.from_partial(T, delta)))  # noqa: E731
    if np.isinf(d):
        assert bound(1e4) <= target
        return
    assert 0 < d and bound(d) <= target < bound(d * 1.002)


@pytest.mark.parametrize("delta", [1e-3, 1e-5])
def test_horizon_for_target_is_the_threshold(delta):
    T = horizon_for_target(delta, 0.1, "unified_refined")
    bound = lambda T: float(BOUNDS["unified_refined"](BoundInputs.from_partial(T, delta)))  # noqa: E731
    assert T >= 1 and bound(T) <= 0.1 < bound(T + 1)


def test_target_must_be_positive():
    with pytest.raises(ValueError, match="target"):
        delta_for_target(8, 0.0)
    with pytest.raises(ValueError, match="unknown bound"):
        horizon_for_target(1e-3, 0.1, "nope")


def test_table_is_short_names_the_tightest_and_every_key(capsys):
    assert main(["bounds", "--T", "16384", "--delta", "1e-3", "--eps", "0.05"]) == 0
    out = capsys.readouterr().out
    assert len(out.encode()) < 5000
    assert "Tightest: pm_kl_refined = 702.9 (published: pm_kl = 1406)" in out
    for name in _registered():
        assert f"\n  {name} " in out
    assert "B_PM^KL, v1" in out and "refined, this package" in out
    assert "max R - min R <= 1" in out and "|R| <= 1" in out
    assert "|L'(theta)| <= sum_t Dbar_t = 819.2" in out and "docs/theory.md" in out


def test_table_stays_short_at_huge_T(capsys):
    assert main(["bounds", "--T", "1000000", "--delta", "1e-4"]) == 0
    assert len(capsys.readouterr().out.encode()) < 5000


def test_json_dbar_only_when_given_or_full(capsys):
    assert main(["bounds", "--T", "64", "--delta", "1e-3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"inputs", "bounds"} and "dbar" not in res["inputs"]
    assert res["tightest"]["refined"] in BOUNDS and res["tightest"]["refined"] not in AGGREGATES
    assert "linear_dbar_refined" in res["never_certify"]
    assert main(["bounds", "--T", "64", "--delta", "1e-3", "--json", "--full"]) == 0
    assert len(json.loads(capsys.readouterr().out)["inputs"]["dbar"]) == 64


def test_explain_every_key_and_one(capsys):
    assert main(["bounds", "--explain"]) == 0
    out = capsys.readouterr().out
    for name in [*_registered(), "second_order"]:
        assert f"{name}: " in out and BOUND_INFO[name].formula in out
    assert main(["bounds", "--explain", "mix_tv"]) == 0
    one = capsys.readouterr().out
    assert one.startswith("mix_tv: B_Mix^TV; source: v3") and "pm_kl" not in one
    code = main(["bounds", "--explain", "nope"])
    assert code == 2 and "unknown bound 'nope'" in capsys.readouterr().err


def test_format_without_refined_keys_still_works():
    s = bounds_summary(BoundInputs.from_partial(T=8, delta=1e-2))
    s = {**s, "groups": {"published": s["groups"]["published"], "refined": [], "other": []}}
    s["tightest"] = {"published": s["tightest"]["published"]}
    best = min(s["groups"]["published"], key=lambda n: (n in AGGREGATES, s["bounds"][n]))
    text = format_bounds_table(s)
    assert f"Tightest: {best} = " in text and "\n  pm_kl_refined" not in text


def test_targets_skipped_for_json_and_beyond_the_search_limit():
    b = BoundInputs.from_partial(T=64, delta=1e-3)
    s = bounds_summary(b, targets=False)
    assert s["delta_for_target"] == {} == s["horizon_for_target"]
    assert "To reach" not in format_bounds_table(s)
    big = bounds_summary(BoundInputs.from_partial(T=2**20 + 1, delta=1e-4))
    assert big["delta_for_target"] == {"unified": None, "unified_refined": None}
    assert big["horizon_for_target"]["unified_refined"] >= 1
    assert f"delta not searched (T > {2**20})" in format_bounds_table(big)
