"""Every `$ trm-bounds ...` example of README.md runs as printed, from a copy of the shipped files
only (no ../shared), and prints the numbers the README shows.

A README block is a ``` fence whose first line starts with `$ trm-bounds`. Each `$ trm-bounds`
line runs through `trm_bounds.cli.main` in a temporary folder holding a copy of docs/ (the
example inputs); `| head -N`, `| tail -N`, `| sed -n Np` and a following `$ tail -N FILE` line
are applied in Python. The printed lines that follow a command are its expected output,
abridged with `...`: every number there must equal, at the precision printed, a number of the
real output. The set-up commands are the two install lines and are not run here.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import shlex
import shutil
from pathlib import Path

import pytest

from trm_bounds.cli import main

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d+\.\d*|\d*\.\d+|\d+)(?:e[+-]?\d+)?(?![\w])")


def readme_examples(text: str) -> list[list[tuple[str, list[str]]]]:
    """The README's example blocks: each a list of (command line after '$ ', expected output lines)."""
    blocks = []
    for body in re.findall(r"```\n(.*?)```", text, flags=re.S):
        lines = body.splitlines()
        if not lines or not lines[0].startswith("$ trm-bounds"):
            continue
        steps: list[tuple[str, list[str]]] = []
        for line in lines:
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        blocks.append(steps)
    return blocks


def _pipe(output: str, stage: str) -> str:
    """Apply one `head -N`, `tail -N` or `sed -n Np` stage to output."""
    argv = shlex.split(stage)
    lines = output.splitlines()
    if argv[0] == "head":
        return "\n".join(lines[: int(argv[1].lstrip("-"))])
    if argv[0] == "tail":
        return "\n".join(lines[-int(argv[1].lstrip("-")) :])
    if argv[0] == "sed" and argv[1] == "-n" and argv[2].endswith("p"):
        return lines[int(argv[2][:-1]) - 1]
    raise AssertionError(f"README pipe stage not supported by this test: {stage!r}")


def run_line(command: str, cwd: Path) -> str:
    """The output of one README command line (a trm-bounds command with pipes, or `tail -N FILE`)."""
    first, *stages = [s.strip() for s in command.split("|")]
    argv = shlex.split(first, comments=True)  # a trailing "# ..." is a comment, as in a shell
    if argv[0] == "tail":
        return _pipe((cwd / argv[2]).read_text(), f"tail {argv[1]}")
    assert argv[0] == "trm-bounds", f"README example runs something other than trm-bounds: {command}"
    out = io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out):
        code = main(argv[1:])
    assert code == 0, f"`{command}` exited {code}"
    text = out.getvalue()
    for stage in stages:
        text = _pipe(text, stage)
    return text


def _matches(expected: str, actual: list[float]) -> bool:
    """Some actual number rounds to `expected` at the precision it is printed with."""
    x = float(expected)
    mantissa = expected.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(expected.lower().split("e")[1]) if "e" in expected.lower() else 0
    half_unit = 0.5 * 10.0 ** (exponent - decimals)
    return any(math.isclose(a, x, rel_tol=1e-12, abs_tol=half_unit * (1 + 1e-9)) for a in actual)


def check_numbers(expected_lines: list[str], output: str, command: str) -> int:
    """Every number of the expected lines is in the output at the printed precision; returns how many."""
    actual = [float(m) for m in _NUMBER.findall(output)]
    n = 0
    for line in expected_lines:
        for token in _NUMBER.findall(line):
            assert _matches(token, actual), f"`{command}`: README shows {token} ({line.strip()!r}); not in output"
            n += 1
    return n


def _fresh_clone(tmp_path: Path) -> Path:
    """A folder with only what a clone ships for the examples: docs/ (no ../shared next to it)."""
    cwd = tmp_path / "clone"
    shutil.copytree(REPO / "docs", cwd / "docs")
    return cwd


BLOCKS = readme_examples(README.read_text())


def test_readme_has_examples_and_exactly_two_setup_commands():
    assert len(BLOCKS) >= 6
    text = README.read_text()
    setup = re.findall(r"```\n(python -m pip install[^\n]*)\n```", text)
    assert len(setup) == 2 and setup[0] == "python -m pip install -c constraints-cpu.txt -e . && trm-bounds figures --force"
    # CI runs the README's test command verbatim
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if "pip install" in line]
    assert ci == [setup[1]] and "pytest" in setup[1]
    assert not re.search(r"INTERFACES\.md|THEORY\.md|\.\./shared", text)
    for ref in set(re.findall(r"(?:docs|experiments|paper_figures)/[\w./-]+\.\w+", text)):
        assert (REPO / ref).exists(), f"README names {ref}, which is not in the repo"


@pytest.mark.parametrize("block", BLOCKS, ids=[b[0][0][:60] for b in BLOCKS])
def test_readme_example_runs_as_printed(block, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help at the terminal width
    cwd = _fresh_clone(tmp_path)
    checked = 0
    for command, expected in block:
        output = run_line(command, cwd)
        checked += check_numbers(expected, output, command)
        flat = " ".join(output.split())
        for line in expected:  # text lines without "..." appear in the output (spacing aside)
            stripped = " ".join(line.split())
            if stripped and "..." not in stripped and not stripped.startswith(("{", '"')):
                assert stripped in flat, f"`{command}`: README line {stripped!r} not in output"
    assert checked > 0 or block[0][0] == "trm-bounds --help"


def test_number_check_can_fail():
    assert _matches("0.59977", [0.599766419282482]) and not _matches("0.59978", [0.599766419282482])
    assert _matches("1.342e+06", [1342177.28]) and not _matches("1.343e+06", [1342177.28])
    assert _matches("702.9", [702.94]) and not _matches("703.0", [702.94])
    with pytest.raises(AssertionError, match="not in output"):
        check_numbers(["value 64.75"], "value 64.74", "x")


def test_readme_python_tour_runs(monkeypatch):
    """The ```python block, up to the trm_mask line (whose tensors are placeholders), as a doctest."""
    import doctest

    monkeypatch.chdir(REPO)
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    block = block.split(">>> from trm_bounds.masks")[0]
    test = doctest.DocTestParser().get_doctest(block, {}, "README", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize().attempted >= 8 and runner.summarize().failed == 0
