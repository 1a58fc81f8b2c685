"""Tests for `trm-bounds plot-run` (trm_bounds/commands/plot_run.py, trm_bounds/studies/runs.py) on
tiny runs written by `trm-bounds train --steps 3`."""

from __future__ import annotations

import json
import shutil

import pytest

from trm_bounds.cli import main
from trm_bounds.studies import runs as runs_mod
from trm_bounds.studies.plotting import LEVEL_ONE_NOTE

TINY = ["--steps", "3", "--P", "2", "--V", "3", "--T", "3", "--n-groups", "2", "--no-progress"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of `trm-bounds train`: TRM-Max (default) and PPO clipping."""
    root = tmp_path_factory.mktemp("runs")
    out = []
    for name, extra in (("trm", []), ("ppo", ["--method", "ppo-clip"])):
        d = root / name
        assert main(["train", *TINY, *extra, "--out", str(d)]) == 0
        out.append(d)
    return out


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_plot_run_writes_png_and_pdf_for_several_runs(two_runs, tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    drawn = []
    original = Figure.savefig

    def savefig(self, *a, **k):
        original(self, *a, **k)
        drawn.append(self)

    monkeypatch.setattr(Figure, "savefig", savefig)
    prefix = tmp_path / "compare"
    code, out, err = _cli(capsys, "plot-run", *two_runs, "--out", prefix)
    assert code == 0, err
    png, pdf = tmp_path / "compare.png", tmp_path / "compare.pdf"
    assert out.split() == [str(png), str(pdf)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    texts = [" ".join(t.get_text().split()) for t in drawn[0].findobj(Text)]
    joined = " | ".join(texts)
    assert "trm (trm-max, moe=0.3)" in joined and "ppo (ppo-clip, moe=0.3)" in joined
    assert " ".join(LEVEL_ONE_NOTE.split()) in joined and "vacuous" not in joined
    assert "certified step (L' > B*)" in joined
    assert {ax.get_yscale() for ax in drawn[0].axes} == {"linear", "log"}  # L' vs B* on a log axis


def test_default_prefix_is_inside_the_first_run_and_overwriting_needs_force(two_runs, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(two_runs[0], run)
    assert _cli(capsys, "plot-run", run)[0] == 0
    png = run / "plot.png"
    before = png.read_bytes()
    code, out, err = _cli(capsys, "plot-run", run)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "exists" in err and "--force" in err
    assert png.read_bytes() == before
    assert _cli(capsys, "plot-run", run, "--force")[0] == 0


def test_a_directory_that_is_not_a_run_exits_2_and_writes_nothing(two_runs, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    prefix = tmp_path / "p"
    code, out, err = _cli(capsys, "plot-run", two_runs[0], bad, "--out", prefix)
    assert code == 2 and "steps.jsonl missing" in err and err.count("\n") == 1
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "p.pdf").exists()


def test_load_run_names_the_missing_key_and_the_line(two_runs, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(two_runs[1], run)
    lines = (run / "steps.jsonl").read_text().splitlines()
    step = json.loads(lines[1])
    del step["bound_unified"]
    lines[1] = json.dumps(step)
    (run / "steps.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"steps.jsonl line 2: missing bound_unified"):
        runs_mod.load_run(run)
    (run / "steps.jsonl").write_text("")
    with pytest.raises(ValueError, match="no steps logged"):
        runs_mod.load_run(run)
    with pytest.raises(ValueError, match="not a directory"):
        runs_mod.load_run(tmp_path / "nowhere")


def test_load_run_reads_what_train_wrote(two_runs):
    run = runs_mod.load_run(two_runs[0])
    assert run["name"] == "trm" and run["config"]["method"] == "trm-max"
    assert [s["step"] for s in run["steps"]] == [1, 2, 3]
    for s in run["steps"]:
        assert s["certified"] == (s["surrogate"] > s["bound_unified"])


def test_plot_runs_needs_a_run_and_an_existing_folder(tmp_path):
    with pytest.raises(ValueError, match="at least one run"):
        runs_mod.plot_runs([], tmp_path / "x")
    fake = {"name": "a", "path": "a", "config": {}, "steps": []}
    with pytest.raises(ValueError, match="does not exist"):
        runs_mod.plot_runs([fake], tmp_path / "missing" / "x")


def test_the_command_module_imports_no_matplotlib():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, trm_bounds.commands.plot_run; print('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
