"""Tests for trm_bounds/__init__.py: lazy public names, the torch-free bound layer, deprecations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import trm_bounds

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    """Run `code` in a fresh interpreter on this checkout; its stdout (fails the test on error)."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_bounds_refined_symbolic_load_without_torch():
    out = _python(
        "import sys; import trm_bounds.bounds, trm_bounds.refined, trm_bounds.symbolic; "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "import trm_bounds; print(trm_bounds.__file__)"
    )
    assert Path(out.strip()).parent == ROOT / "trm_bounds"  # this checkout, not an installed copy


def test_bounds_registry_has_the_refined_keys_whichever_module_loads_first():
    out = _python(
        "import sys; from trm_bounds.bounds import BOUNDS; "
        "print(sorted(BOUNDS)); print('torch' in sys.modules)"
    )
    keys, torch_loaded = out.splitlines()
    assert "'unified_refined'" in keys and "'pm_kl_refined'" in keys and torch_loaded == "False"


def test_dir_is_exactly_all_and_every_public_name_resolves():
    assert dir(trm_bounds) == sorted(trm_bounds.__all__)
    assert len(set(trm_bounds.__all__)) == len(trm_bounds.__all__)
    for name in trm_bounds.__all__:
        if name == "log_softmax_log1p":
            continue  # deprecated: tested below
        value = getattr(trm_bounds, name)
        module = trm_bounds._LAZY.get(name)
        if name == "audit":  # the audit package itself, callable like its function audit()
            assert value is sys.modules["trm_bounds.audit"] and callable(value)
            assert callable(value.audit) and value.audit.__module__ == "trm_bounds.audit.claims"
        elif module is not None:  # the lazy table points at the module that defines the name
            assert value is getattr(sys.modules[f"trm_bounds.{module}"], name), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trm_bounds.nope  # noqa: B018


def test_log_softmax_log1p_warns_and_is_the_divergences_log_softmax():
    from trm_bounds import divergences

    with pytest.warns(DeprecationWarning, match=r"trm_bounds\.divergences\.log_softmax"):
        old = trm_bounds.log_softmax_log1p
    assert old is divergences.log_softmax


def test_newcomer_names_are_public_and_lazy():
    # the entry points the docs name are reachable from the package, loading their module on use
    for name, module in {
        "sample_certificate": "certify",
        "make_policy": "policies",
        "resolve_mismatch": "mismatch",
        "mismatch_table": "mismatch",
    }.items():
        assert name in trm_bounds.__all__ and trm_bounds._LAZY[name] == module
    assert {"BOUND_INFO", "BoundInfo"} <= set(trm_bounds.__all__)
    assert trm_bounds.BOUND_INFO["pm_kl"].equation == "B_PM^KL"
    assert not {"annotations", "importlib", "warnings"} & set(dir(trm_bounds))


# docs/architecture.md: the layers, top to bottom; a module imports only from its own layer or above
LAYERS = {
    1: ("divergences", "bounds", "refined", "symbolic", "confidence", "_validate", "_json", "_files", "_savefig",
        "_outdir", "_npz", "_resources"),
    2: ("policies", "rewards", "pair", "mismatch", "adversarial", "counterexamples"),
    3: ("exact", "exact_stream", "_tree_kernel", "_chain_kernel", "_compute", "exact_batch", "exact_mp", "chain",
        "second_order", "verdict", "tightness_search"),
    4: ("masks", "certify", "trainer", "integrations"),
    5: ("report", "bound_table", "taskpool", "studies", "audit", "paper"),
    6: ("jobs", "figures", "cli", "commands", "__main__"),
}


def _layer_of(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    for layer, names in LAYERS.items():
        if top in names:
            return layer
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def test_imports_follow_the_layers_of_the_architecture_doc():
    import ast
    from pathlib import Path

    root = Path(trm_bounds.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        if module == "trm_bounds":
            continue  # the package __init__ re-exports lazily
        pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trm_bounds."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("trm_bounds.")]
            else:
                continue
            for name in names:
                top = name.split(".")[1] if name.count(".") else ""
                if not ((root / f"{top}.py").exists() or (root / top).is_dir()):
                    continue  # trm_bounds itself or a name defined in its __init__ (__version__)
                if _layer_of(name) > _layer_of(module):
                    bad.append(f"{module} (layer {_layer_of(module)}) imports {name} (layer {_layer_of(name)})")
    assert not bad, "\n".join(sorted(set(bad)))
