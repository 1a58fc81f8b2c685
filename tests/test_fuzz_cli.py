"""Fuzz every `trm-bounds` command in-process (trm_bounds.cli.main) with wild options and files.

Contract (issue 11, checked by `_fuzz.run_cli`): exit 0 or 2; on 2 one stderr line naming the
problem, no traceback, nothing written; on 0 no NaN in the JSON from finite input.
"""

from __future__ import annotations

import numpy as np
import pytest
from _fuzz import fuzz_settings, number_texts, run_cli, wild_arrays, write_examples
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: valid input files (pair.npz, chain.npz, lp.npz), a file, an output folder."""
    d = tmp_path_factory.mktemp("fuzzcli")
    f = write_examples(d)
    f["logprobs"].rename(d / "lp.npz")
    out = d / "out"
    out.mkdir()
    return d, out


_BOUNDS_OPTS = ["--eps", "--dkl-seq", "--dtv-seq", "--target"]


@fuzz_settings
@given(
    T=number_texts, delta=number_texts, extra=st.lists(st.tuples(st.sampled_from(_BOUNDS_OPTS), number_texts))
)
def test_bounds(ws, T, delta, extra):
    _, out = ws
    argv = ["bounds", "--T", T, "--delta", delta, "--json"]
    for opt, v in extra:
        argv += [opt, v]
    code, o, _ = run_cli(argv, out)
    if code == 0:
        assert '"bounds"' in o


@fuzz_settings
@given(dbar=wild_arrays(max_dims=2, max_side=6), T=st.integers(1, 6), as_npz=st.booleans())
def test_bounds_dbar_files(ws, dbar, T, as_npz):
    d, out = ws
    p = d / "dbar.npy"
    with open(p, "wb") as fh:
        (np.savez if as_npz else np.save)(fh, dbar)
    run_cli(["bounds", "--T", T, "--delta", "0.01", "--dbar", p, "--json"], out)


_PAIR_KEYS = ["logp_roll_1", "logp_theta_1", "logp_roll_2", "logp_theta_2", "logp_roll_3", "logp_theta_3"]


@fuzz_settings
@given(
    drop=st.lists(st.sampled_from([*_PAIR_KEYS, "reward", "prompt_probs"]), max_size=2, unique=True),
    poison=st.one_of(
        st.none(), st.tuples(st.sampled_from([*_PAIR_KEYS, "reward", "prompt_probs"]), wild_arrays())
    ),
    scale=st.sampled_from([None, np.nan, np.inf, -np.inf, 1e300, -1e-300, 2.0]),
)
def test_exact_pair_files(ws, drop, poison, scale):
    d, out = ws
    with np.load(d / "pair.npz") as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    if poison is not None:
        arrays[poison[0]] = poison[1]
    if scale is not None and "reward" in arrays:
        arrays["reward"] = arrays["reward"] * scale
    np.savez(d / "fz_pair.npz", **arrays)
    run_cli(["exact", "--pair", d / "fz_pair.npz"], out)


_CHAIN_KEYS = ["T", "transition", "init_state", "prompt_probs", "logp_roll", "logp_theta", "reward_final"]


@fuzz_settings
@given(
    key=st.sampled_from(_CHAIN_KEYS),
    value=st.one_of(wild_arrays(), st.integers(-5, 10**12).map(np.int64)),
    T=st.one_of(st.none(), st.sampled_from(["0", "-1", "5", "1048577", "1000000000", "2.5", "nan"])),
)
def test_exact_chain_files(ws, key, value, T):
    d, out = ws
    with np.load(d / "chain.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = value
    np.savez(d / "fz_chain.npz", **arrays)
    argv = ["exact", "--chain", d / "fz_chain.npz"] + ([] if T is None else ["--T", T])
    run_cli(argv, out)


@fuzz_settings
@given(
    source=st.sampled_from(["pair", "chain", "policy"]),
    opts=st.lists(
        st.sampled_from(
            [
                ("--mask", "max"),
                ("--mask", "avg"),
                ("--mask-delta", "0.1"),
                ("--mask-delta", "nan"),
                ("--mask-delta-avg", "-1"),
                ("--baseline", "0.5"),
                ("--baseline", "inf"),
                ("--future-tv",),
                ("--V", "3"),
                ("--V", "1"),
                ("--T", "3"),
                ("--T", "40"),
                ("--P", "0"),
                ("--eos", "7"),
                ("--strength", "nan"),
                ("--strength", "0.05"),
                ("--mismatch", "bogus"),
                ("--device", "bogus"),
                ("--device", "cuda:7"),
                ("--reward", "x"),
            ]
        ),
        max_size=3,
        unique=True,
    ),
)
def test_exact_option_combinations(ws, source, opts):
    d, out = ws
    argv = ["exact"] + {
        "pair": ["--pair", d / "pair.npz"],
        "chain": ["--chain", d / "chain.npz"],
        "policy": ["--policy", "tabular"],
    }[source]
    for o in opts:
        argv += list(o)
    if source == "policy" and not any(o[0] == "--T" for o in opts):
        argv += ["--T", "3"]
    run_cli(argv, out)


_LP_KEYS = ["log_prob", "rollout_log_prob", "response_mask", "exact_kl", "group_id", "advantages"]


@fuzz_settings
@given(
    key=st.sampled_from(_LP_KEYS),
    value=st.one_of(st.none(), wild_arrays(max_dims=2, max_side=6)),
    opts=st.lists(
        st.tuples(
            st.sampled_from(
                ["--confidence", "--target", "--delta", "--delta-avg", "--T", "--eps", "--dkl-seq"]
            ),
            number_texts,
        ),
        max_size=2,
    ),
)
def test_certify(ws, key, value, opts):
    d, out = ws
    with np.load(d / "lp.npz") as z:
        arrays = {k: z[k] for k in z.files}
    if value is None:
        arrays.pop(key, None)
    else:
        arrays[key] = value
    np.savez(d / "fz_lp.npz", **arrays)
    argv = ["certify", "--logprobs", d / "fz_lp.npz", "--json"]
    for o, v in opts:
        argv += [o, v]
    run_cli(argv, out)


@fuzz_settings
@given(
    command=st.sampled_from(["train", "table", "audit", "plot-scaling"]),
    where=st.sampled_from(["a_file", "a_file/sub", "a_file/sub/deeper", "out/../a_file"]),
)
def test_output_paths_refused_before_work(ws, command, where):
    d, out = ws
    argv = [command, "--out", d / where]
    if command == "train":
        argv += ["--steps", "1", "--no-progress"]
    code, _, err = run_cli(argv, out)
    assert code == 2 and "out" in err


@fuzz_settings
@given(
    opt=st.sampled_from(
        [
            "--lr",
            "--T",
            "--V",
            "--P",
            "--group-size",
            "--n-groups",
            "--max-threshold",
            "--save-pair-every",
        ]
    ),
    value=st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e400", "abc", "40"]),
)
def test_train_bad_options(ws, opt, value):
    _, out = ws
    code, _, _ = run_cli(["train", "--out", out / "run", "--steps", "0", "--no-progress", opt, value], out)
    if code == 0:  # a value that is fine (e.g. --V 40 with T 2): the run folder exists, nothing else checked
        assert (out / "run").is_dir()
