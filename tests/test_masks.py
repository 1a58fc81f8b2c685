"""Tests for trm_bounds/masks/__init__.py: the package's public names and its module boundaries.

The behaviour of each module is tested in tests/test_masks_<module>.py (inputs, estimators, verl,
trl, trm, registry, loss).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import trm_bounds.masks as masks

PACKAGE = Path(masks.__file__).parent
MODULES = ("inputs", "estimators", "verl", "trl", "trm", "registry", "loss", "advantages")


def test_every_public_name_is_its_defining_modules_object():
    # the names trainers, the CLI and INTERFACES.md use, unchanged by the split of masks.py,
    # then the framework-parity additions (compute_dtype modes, verl presets, TRL metrics, advantages)
    added = [
        "VERL_PRESETS",
        "COMPUTE_DTYPES",
        "NAN_POLICIES",
        "verl_preset",
        "rollout_correction",
        "vllm_is_ratio_metrics",
        "ADVANTAGE_KINDS",
        "group_advantages",
    ]
    assert [n for n in masks.__all__ if n not in added] == [
        "SAFETY_BOUND",
        "VERL_RS_OPTIONS",
        "TRL_IS_MODES",
        "TRM_MODES",
        "MAX_ESTIMATORS",
        "AVG_ESTIMATORS",
        "LOSS_AGG_MODES",
        "NORMALIZE_CHOICES",
        "METHODS",
        "MaskResult",
        "token_divergence",
        "sequence_stat",
        "rollout_rejection_mask",
        "rollout_is_weights",
        "offpolicy_metrics",
        "vllm_importance_sampling_ratio",
        "off_policy_sequence_mask",
        "trm_mask",
        "sequence_mask",
        "masked_policy_loss",
    ]
    assert set(added) <= set(masks.__all__)
    owners = {}
    for mod in MODULES:
        m = importlib.import_module(f"trm_bounds.masks.{mod}")
        for name in m.__all__:
            assert hasattr(m, name), (mod, name)
            owners.setdefault(name, m)
    for name in masks.__all__:
        assert getattr(masks, name) is getattr(owners[name], name), name
    assert {p.stem for p in PACKAGE.glob("*.py")} == {"__init__", *MODULES}


def _private_imports(path: Path) -> list[str]:
    """`from .x import _y` and `x._y` on an imported trm_bounds module, as 'line: what'."""
    tree = ast.parse(path.read_text())
    out, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.append(f"{node.lineno}: from {'.' * node.level}{node.module or ''} import {a.name}")
                if node.module is None:
                    modules.add(a.asname or a.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            out.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return out


@pytest.mark.parametrize("path", [*sorted(PACKAGE.glob("*.py")), PACKAGE.parent / "certify.py"], ids=str)
def test_no_module_uses_another_modules_private_names(path):
    assert _private_imports(path) == []


def test_the_private_name_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from .inputs import _x, ok\nfrom .. import divergences\ndivergences._to_torch(1)\n")
    assert _private_imports(bad) == ["1: from .inputs import _x", "3: divergences._to_torch"]
