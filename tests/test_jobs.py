"""Tests for trm_bounds/jobs.py and trm_bounds/figures.py's job list: one explicit ordered list,
no import circle, nothing executed from outside the package, and the deprecated paper alias."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import trm_bounds
from trm_bounds import figures, jobs

PACKAGE = Path(trm_bounds.__file__).resolve().parent


def test_job_list_is_explicit_and_ordered():
    assert list(jobs.JOBS) == [
        "scaling",
        "experiments/error_vs_horizon",
        "experiments/train_figures",
        "experiments/certify_coverage",
        "experiments/tightness_sweep",
        "paper_tables",
    ]
    assert figures.all_jobs() == jobs.JOBS and figures.all_jobs() is not jobs.JOBS
    for name, fn in jobs.JOBS.items():
        assert fn.__module__.startswith("trm_bounds."), name  # every job lives in the package
    assert list(jobs.JOBS)[-1] == "paper_tables"  # the audit reads what the studies wrote


def _imports(path: Path) -> set[str]:
    """Absolute module names a package file imports (relative imports resolved)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    pkg = list(rel.parts[:-1])  # the package a relative import starts from
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.add(mod)
            for a in node.names:
                out.add(f"{mod}.{a.name}")
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_import_circle_and_no_experiments_or_tests_imported():
    files = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    graph = {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}
    for m, p in files.items():
        text = p.read_text()
        assert "experiments" not in {i.split(".")[0] for i in _imports(p)}, m
        assert "spec_from_file_location" not in text and "exec_module" not in text, m
    # the package __init__ files may re-export lazily; a circle is a path back to the start
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph[m]:
            if n == "trm_bounds" or n.endswith("__init__"):
                continue
            if state.get(n) == 1:
                raise AssertionError(f"import circle: {' -> '.join([*stack, m, n])}")
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_paper_is_a_deprecated_alias():
    sys.modules.pop("trm_bounds.paper", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paper = importlib.import_module("trm_bounds.paper")
    assert any(
        issubclass(w.category, DeprecationWarning) and "trm_bounds.audit" in str(w.message) for w in caught
    )
    from trm_bounds.audit import claims, printed, tables

    assert paper.paper_tables is tables.paper_tables and paper.parse_printed is printed.parse_printed
    assert paper.audit is claims.audit
    assert paper.pm_kl_uncapped(4096, 1.0) == float(trm_bounds.bounds.pm_kl_nocap(4096, 1.0))
    with pytest.raises(ValueError, match="^delta"):
        paper.pm_kl_uncapped(10, -1.0)
