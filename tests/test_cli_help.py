"""The CLI a newcomer meets: negative numbers, help texts that point only at what exists, hints for
the wrong kind of file, defaults in --help, and the example inputs that ship in docs/examples/."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from trm_bounds.cli import COMMANDS, attach_negative_numbers, build_parser, main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "docs" / "examples"


def _subparser(name):
    parser = build_parser(name)
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def _help_texts(sub):
    return [sub.description or "", *(a.help or "" for a in sub._actions)]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--delta", "-1e-3"], ["--delta=-1e-3"]),
        (["--delta", "-inf", "--T", "4"], ["--delta=-inf", "--T", "4"]),
        (["--eps", "-0.5"], ["--eps=-0.5"]),
        (["--json", "--T", "4"], ["--json", "--T", "4"]),  # an option is never attached
        (["--mismatch", "-x"], ["--mismatch", "-x"]),  # not a number
        (["--delta=-1"], ["--delta=-1"]),
        (["--", "--delta", "-1"], ["--", "--delta", "-1"]),  # after --, nothing is touched
    ],
)
def test_attach_negative_numbers(argv, expected):
    assert attach_negative_numbers(argv) == expected


@pytest.mark.parametrize("value", ["-1e-3", "-inf", "-2"])
def test_negative_delta_reaches_the_real_message(capsys, value):
    assert main(["bounds", "--T", "4", "--delta", value]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("trm-bounds bounds: delta must be >= 0") and err.count("\n") == 1


def test_negative_T_reaches_the_real_message(capsys):
    assert main(["bounds", "--T", "-4", "--delta", "1e-3"]) == 2
    assert "T must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_named_in_help_exists(name):
    sub = _subparser(name)
    options = {o for a in sub._actions for o in a.option_strings}
    for text in _help_texts(sub):
        for ref in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
            assert ref in options, f"`trm-bounds {name} --help` mentions {ref}, which it does not have"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_file_named_in_help_ships(name):
    for text in _help_texts(_subparser(name)):
        assert not re.search(r"INTERFACES\.md|THEORY\.md|\.\./shared", text), text
        for ref in re.findall(r"(?:docs|experiments)/[\w./-]+\.\w+", text):
            assert (REPO / ref).exists(), f"`trm-bounds {name} --help` names {ref}, which is not in the repo"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help(name):
    for action in _subparser(name)._actions:
        assert action.help, f"trm-bounds {name} {action.option_strings} has no help text"


def test_train_help_shows_defaults(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for needle in ("(default: 0.03)", "(default: moe)", "default moe at strength 0.3", "(default: trm-max)",
                   "(default: 0)", "(default: 60)", "docs/formats.md"):
        assert needle in out, needle


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["exact", "--pair", EXAMPLES / "chain.npz"], "this looks like a chain file: use trm-bounds exact --chain"),
        (["exact", "--chain", EXAMPLES / "pair.npz"], "this looks like a pair file: use trm-bounds exact --pair"),
        (["exact", "--pair", EXAMPLES / "bf16_batch.npz"], "log-prob batch file: use trm-bounds certify --logprobs"),
        (["certify", "--logprobs", EXAMPLES / "pair.npz"], "this looks like a pair file: use trm-bounds exact --pair"),
        (["certify", "--logprobs", EXAMPLES / "chain.npz"], "this looks like a chain file"),
    ],
)
def test_wrong_kind_of_file_gets_a_hint(capsys, argv, hint):
    assert main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and hint in err and err.count("\n") == 1


def test_unknown_npz_gets_no_misleading_hint(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    assert main(["exact", "--pair", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "looks like" not in err


def test_examples_are_small_and_reproducible(tmp_path):
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        import make_examples
    finally:
        sys.path.remove(str(REPO / "experiments"))
    for name in ("pair.npz", "chain.npz", "bf16_batch.npz"):
        assert (EXAMPLES / name).stat().st_size < 100_000
    assert make_examples.write_examples(tmp_path) == {"pair.npz": "written", "chain.npz": "written"}
    for name in ("pair.npz", "chain.npz"):  # the committed files are what the script makes
        with np.load(tmp_path / name) as fresh, np.load(EXAMPLES / name) as kept:
            assert set(fresh.files) == set(kept.files)
            for k in fresh.files:
                np.testing.assert_array_equal(fresh[k], kept[k])
    assert make_examples.write_examples(tmp_path) == {"pair.npz": "unchanged", "chain.npz": "unchanged"}
