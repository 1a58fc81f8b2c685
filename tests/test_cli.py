"""Tests for trm_bounds/cli.py and the core commands (bounds, plot-scaling, figures)."""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trm_bounds.cli import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bounds_reproduces_v3_kl_tv_column(capsys):
    code, out, err = run_cli(
        capsys,
        "bounds",
        "--T",
        4096,
        "--delta",
        1e-4,
        "--eps",
        5e-3,
        "--dkl-seq",
        0.01,
        "--dtv-seq",
        0.05,
        "--json",
    )
    assert code == 0 and err == ""
    res = json.loads(out)
    b = res["bounds"]
    # v3 Table 1, KL+TV column (printed: 839, 79.9, 35.0, 24.7, 8.2, 4.1, <= 24.7, <= 4.1)
    assert round(b["classical_tv"]) == 839
    assert round(b["coupling"], 1) == 79.9
    assert round(b["pm_kl"], 2) == 34.95  # printed 35.0 is the closed form, see test_bounds
    assert round(b["pm_tv"], 1) == 24.7
    assert round(b["mix_kl"], 1) == 8.2
    assert round(b["mix_tv"], 1) == 4.1
    assert round(b["adaptive_star"], 1) == 24.7
    assert round(b["unified"], 1) == 4.1
    assert res["inputs"]["sources"]["dbar"].startswith("worst_case")
    assert "dbar" not in res["inputs"]  # T copies of eps only with --full
    assert res["inputs"]["dbar_sum"] == pytest.approx(4096 * 5e-3)


def test_bounds_defaults_are_said(capsys):
    code, out, _ = run_cli(capsys, "bounds", "--T", 16, "--delta", 0.02, "--json")
    inp = json.loads(out)["inputs"]
    assert code == 0
    assert inp["eps"] == pytest.approx(0.1) and inp["sources"]["eps"].startswith("pinsker")
    assert inp["dkl_seq"] == pytest.approx(16 * 0.02) and inp["sources"]["dkl_seq"].startswith("worst_case")


def test_bounds_with_dbar_file(tmp_path, capsys):
    dbar = np.linspace(0.0, 0.05, 8)
    np.save(tmp_path / "dbar.npy", dbar)
    code, out, _ = run_cli(
        capsys, "bounds", "--T", 8, "--delta", 0.01, "--eps", 0.06, "--dbar", tmp_path / "dbar.npy", "--json"
    )
    assert code == 0
    res = json.loads(out)
    assert res["bounds"]["linear_dbar"] == pytest.approx(4 * dbar.sum())
    assert res["inputs"]["dbar"] == pytest.approx(dbar)  # a given array is echoed


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--T", 0, "--delta", 0.1], "T must be >= 1"),
        (["--T", 2.5, "--delta", 0.1], "T must be an integer"),
        (["--T", 10, "--delta", -0.1], "delta must be >= 0"),
        (["--T", 10, "--delta", 0.1, "--eps", 1.5], "eps"),
        (["--T", 10, "--delta", 0.1, "--dkl-seq", -1], "dkl_seq"),
        (["--T", 10, "--delta", "nan"], "delta contains NaN"),
        (["--T", 10, "--delta", "abc"], "invalid float"),
        (["--T", 10], "required"),
    ],
)
def test_bounds_bad_input_exit_2_one_line(capsys, argv, needle):
    code, out, err = run_cli(capsys, "bounds", *argv)
    assert code == 2
    assert out == ""
    assert needle in err and err.count("\n") == 1


def test_bad_dbar_length_exit_2(tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.zeros(3))
    code, out, err = run_cli(capsys, "bounds", "--T", 8, "--delta", 0.01, "--dbar", tmp_path / "d.npy")
    assert code == 2 and out == "" and "dbar" in err and err.count("\n") == 1


def test_plot_scaling_writes_png_pdf_csv(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "plot-scaling", "--out", tmp_path, "--T-max", 1000, "--points", 8)
    assert code == 0
    for name in ("scaling.png", "scaling.pdf", "scaling.csv", "scaling.json"):
        assert (tmp_path / name).stat().st_size > 0
    rows = json.loads((tmp_path / "scaling.json").read_text())
    assert {r["setting"] for r in rows} and all(r["unified"] <= r["pm_kl"] for r in rows)
    pdf = (tmp_path / "scaling.pdf").read_bytes()
    assert b"/CreationDate" not in pdf and b"/ModDate" not in pdf  # the same bytes on every run
    # again: refused (nothing touched) without --force; with it, the same bytes again
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, out, err = run_cli(capsys, "plot-scaling", "--out", tmp_path, "--T-max", 1000, "--points", 8)
    assert code == 2 and out == "" and err.count("\n") == 1 and "--force" in err
    code, _, _ = run_cli(capsys, "plot-scaling", "--out", tmp_path, "--T-max", 1000, "--points", 8, "--force")
    assert code == 0 and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_plot_scaling_default_out_is_untracked_and_said_in_help(capsys):
    from trm_bounds.cli import build_parser

    args = build_parser("plot-scaling").parse_args(["plot-scaling"])
    assert args.out == Path("runs") / "scaling" and not args.force
    assert main(["plot-scaling", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: runs/scaling, ignored by git" in help_text and "--force" in help_text


def test_figures_only_scaling_writes_manifest(tmp_path, capsys):
    out_dir = tmp_path / "figs"
    code, out, _ = run_cli(
        capsys, "figures", "--quick", "--only", "scaling", "--out", out_dir, "--no-progress"
    )
    assert code == 0
    manifest = json.loads((out_dir / "manifest.json").read_text())
    paths = {e["path"] for e in manifest["outputs"]}
    assert {"scaling.png", "scaling.pdf", "scaling.csv"} <= paths
    for e in manifest["outputs"]:
        assert (out_dir / e["path"]).exists()
        assert {"shows", "command", "inputs", "version", "sha256"} <= set(e) and "seconds" not in e


def test_figures_check_on_a_copy_of_the_repo_outputs(tmp_path, capsys):
    """`figures --check` exits 0 when a regenerated job matches the folder, 1 naming an edited file."""
    import shutil

    out = tmp_path / "paper_figures"
    shutil.copytree(REPO / "paper_figures", out)
    argv = ["figures", "--only", "scaling", "--out", out, "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--force" in err  # a run is there: not overwritten silently
    assert run_cli(capsys, *argv, "--force")[0] == 0  # the copy's scaling outputs made by this code
    code, out_text, _ = run_cli(capsys, *argv, "--check")
    assert code == 0 and "byte for byte" in out_text
    with open(out / "scaling.csv", "a") as fh:
        fh.write("edited\n")
    code, out_text, err = run_cli(capsys, *argv, "--check")
    assert code == 1 and out_text.strip() == f"{out / 'scaling.csv'}: differs" and "1 output" in err


def test_figures_unknown_job_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "figs"
    code, out, err = run_cli(capsys, "figures", "--only", "nope", "--out", out_dir, "--no-progress")
    assert code == 2 and "unknown job" in err and not out_dir.exists()


def test_json_output_is_strict_with_infinite_divergences(capsys):
    # delta = inf (disjoint supports somewhere): strict JSON has no Infinity; inf is written "inf"
    code, out, _ = run_cli(capsys, "bounds", "--T", 4, "--delta", "inf", "--eps", 1.0, "--json")
    assert code == 0 and "Infinity" not in out
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert res["bounds"]["classical_kl"] == "inf" and float(res["bounds"]["classical_kl"]) == float("inf")
    assert res["bounds"]["pm_kl"] == 12.0  # every cap binds: 4 * 1 * (T - 1)


def _python(*args: str) -> subprocess.CompletedProcess:
    """`python *args` in a fresh interpreter on this checkout (not an installed copy elsewhere)."""
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_m_trm_bounds_is_the_same_cli(capsys):
    argv = ["bounds", "--T", "16", "--delta", "0.02", "--json"]
    proc = _python("-m", "trm_bounds", *argv)
    assert proc.returncode == 0 and proc.stderr == ""
    assert main(argv) == 0
    assert proc.stdout == capsys.readouterr().out
    bad = _python("-m", "trm_bounds", "bounds", "--T", "0", "--delta", "0.1")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "trm-bounds bounds: T must be >= 1, got min 0\n"


@functools.lru_cache  # one fresh interpreter per probe, shared by the tests below
def _modules_loaded_by(code: str) -> frozenset[str]:
    """Every module name in sys.modules after running `code` in a fresh interpreter
    on this checkout (the code's own stdout is swallowed; the last line printed is the list)."""
    probe = (
        "import contextlib, io, json, sys\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = _python("-c", probe)
    assert proc.returncode == 0, proc.stderr
    return frozenset(json.loads(proc.stdout.splitlines()[-1]))


BOUNDS_MAIN = (
    "from trm_bounds.cli import main\n"
    "assert main(['bounds', '--T', '4096', '--delta', '1e-4', '--json']) == 0"
)


def test_bounds_loads_only_its_own_command_and_no_sympy_or_matplotlib():
    loaded = _modules_loaded_by(BOUNDS_MAIN)
    commands = {m for m in loaded if m.startswith("trm_bounds.commands.")}
    assert commands == {"trm_bounds.commands.bounds"}
    assert not {"sympy", "matplotlib", "trm_bounds.paper", "trm_bounds.figures"} & loaded


def test_bounds_imports_no_heavy_library():
    loaded = _modules_loaded_by(BOUNDS_MAIN)
    assert not {"torch", "sympy", "matplotlib", "scipy"} & loaded, sorted(
        {"torch", "sympy", "matplotlib", "scipy"} & loaded
    )


def test_help_lists_every_command_without_importing_any(capsys):
    loaded = _modules_loaded_by("from trm_bounds.cli import main\nassert main(['--help']) == 0")
    assert not {m for m in loaded if m.startswith("trm_bounds.commands.")}
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, help_line) in COMMANDS.items():
        assert name in out and help_line.split()[0] in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_its_module_and_help(name, capsys):
    mod = importlib.import_module(f"trm_bounds.commands.{COMMANDS[name][0]}")
    assert callable(mod.add_arguments) and callable(mod.run)
    # one help line per command, in cli.COMMANDS; a module still carrying its own must agree
    assert getattr(mod, "HELP", COMMANDS[name][1]) == COMMANDS[name][1]
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: trm-bounds {name}")


def test_unknown_command_and_no_command_exit_2(capsys):
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and err.count("\n") == 1
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_version(capsys):
    from trm_bounds import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"trm-bounds {__version__}\n"


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from trm_bounds.commands import bounds as cmd

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd, "run", interrupted)
    assert main(["bounds", "--T", "4", "--delta", "1e-3"]) == 130
    err = capsys.readouterr().err
    assert err == "trm-bounds bounds: interrupted\n"
