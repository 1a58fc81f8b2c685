"""Bad and edge inputs against every entry point, classified; prints the issue-11 count table.

    python experiments/fuzz_report.py            # the table (surface x outcome)
    python experiments/fuzz_report.py -v         # and one line per input

Outcomes:
  clean error    API: ValueError/TypeError; CLI: exit 2 with one stderr line, no traceback,
                 no file written;
  correct value  the call returned and the value passes the case's check (a known value, a
                 property, or for the CLI: exit 0 with no NaN in JSON from finite input);
  silent wrong   it returned, but the check fails (or it returned where it must refuse);
  traceback      any other exception (CLI: exit 1, a traceback, or an escaped exception);
  blow-up        over TIME_LIMIT seconds, or the process peak memory grew by > MEM_LIMIT.

Every input is listed in `cases()` below (one line each), so the table can be re-run.
Runs in-process on one torch thread; about a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    str(_REPO),
    str(_REPO / "tests"),
]  # this checkout (not an installed copy) and its test helpers
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRM_BOUNDS_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)
TIME_LIMIT = 60.0
MEM_LIMIT = 2 * 2**30
OUTCOMES = ("clean error", "correct value", "silent wrong", "traceback", "blow-up")
REFUSE = None  # expectation: the input must be refused
BROKEN = ("truncated", "npy_as_npz", "empty_file", "text", "pickled", "dir", "empty_npz")  # every reader


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout


# --------------------------------------------------------------------------- input files
def make_files(d: Path) -> dict[str, Path]:
    """Valid and broken files of every kind the CLI reads, in `d`."""
    from _fuzz import chain_fields, pair_arrays, write_examples  # tests/_fuzz.py: the valid examples

    f: dict[str, Path] = write_examples(d)
    arr = pair_arrays()

    def npz(name, **a):
        f[name] = d / f"{name}.npz"
        np.savez(f[name], **a)

    npz(
        "pair_gap",
        **{k: v for k, v in arr.items() if not k.endswith("_3")},
        logp_roll_4=arr["logp_roll_3"],
        logp_theta_4=arr["logp_theta_3"],
    )
    npz("pair_level0", **arr, logp_roll_0=arr["logp_roll_1"])
    npz("pair_nan", **{**arr, "reward": np.full_like(arr["reward"], np.nan)})
    npz("pair_badshape", **{**arr, "reward": arr["reward"][:, :3]})
    npz("pair_strings", **{**arr, "reward": np.array(["a"] * arr["reward"].size)})
    npz("pair_complex", **{**arr, "reward": arr["reward"].astype(complex)})
    npz("pair_unnorm", **{**arr, "logp_roll_1": arr["logp_roll_1"] + 1.0})
    npz("pair_posinf", **{**arr, "logp_theta_2": np.full_like(arr["logp_theta_2"], np.inf)})
    npz("pair_missing", **{k: v for k, v in arr.items() if k != "prompt_probs"})
    npz("empty_npz")
    fields = chain_fields()
    npz("chain_badT", **{**fields, "T": np.array([3, 4])})
    npz("chain_Tfloat", **{**fields, "T": np.float64(2.5)})
    npz("chain_T0", **{**fields, "T": np.int64(0)})
    npz("chain_Thuge", **{**fields, "T": np.int64(10**12)})
    npz("chain_badtrans", **{**fields, "transition": np.array([[0, 5], [1, 0]])})
    npz("chain_nan", **{**fields, "logp_theta": np.full((2, 2), np.nan)})
    with np.load(f["logprobs"]) as z:
        lp, rlp, m = z["log_prob"], z["rollout_log_prob"], z["response_mask"]
    npz("lp_positive", log_prob=lp + 3.0, rollout_log_prob=rlp, response_mask=m)
    npz("lp_empty", log_prob=lp, rollout_log_prob=rlp, response_mask=np.zeros_like(m))
    npz("lp_zero_rows", log_prob=lp[:0], rollout_log_prob=rlp[:0], response_mask=m[:0])
    npz("lp_nan", log_prob=np.where(m > 0, np.nan, lp), rollout_log_prob=rlp, response_mask=m)
    npz("lp_rollinf", log_prob=lp, rollout_log_prob=np.where(m > 0, -np.inf, rlp), response_mask=m)
    npz("lp_shape", log_prob=lp[:, :3], rollout_log_prob=rlp, response_mask=m)
    npz("lp_1d", log_prob=lp[0], rollout_log_prob=rlp[0], response_mask=m[0])
    npz("lp_int", log_prob=lp.astype(int), rollout_log_prob=rlp.astype(int), response_mask=m)
    npz("lp_mask2", log_prob=lp, rollout_log_prob=rlp, response_mask=m * 2)
    npz("lp_missing", log_prob=lp, response_mask=m)
    npz("lp_adv_nan", log_prob=lp, rollout_log_prob=rlp, response_mask=m, advantages=np.full(8, np.nan))
    npz("lp_adv_shape", log_prob=lp, rollout_log_prob=rlp, response_mask=m, advantages=np.ones(3))
    npz("lp_group_float", log_prob=lp, rollout_log_prob=rlp, response_mask=m, group_id=np.linspace(0, 1, 8))
    npz("lp_kl_neg", log_prob=lp, rollout_log_prob=rlp, response_mask=m, exact_kl=-np.ones_like(lp))
    raw = f["pair"].read_bytes()
    for name, data in (
        ("truncated", raw[: len(raw) // 2]),
        ("empty_file", b""),
        ("text", b"not a numpy file\n"),
        ("pickled", None),
    ):
        f[name] = d / f"{name}.npz"
        if data is None:
            np.savez(f[name], obj=np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            f[name].write_bytes(data)
    f["npy_as_npz"] = d / "npy_as_npz.npz"
    with open(f["npy_as_npz"], "wb") as fh:
        np.save(fh, np.ones(3))
    for name, a in (
        ("dbar_ok", np.full(16, 0.01)),
        ("dbar_nan", np.array([0.1, np.nan])),
        ("dbar_big", np.full(16, 2.0)),
        ("dbar_2d", np.full((2, 16), 0.01)),
        ("dbar_short", np.full(3, 0.01)),
        ("dbar_empty", np.zeros(0)),
        ("dbar_str", np.array(["x"] * 16)),
    ):
        f[name] = d / f"{name}.npy"
        np.save(f[name], a)
    f["dbar_npz"] = d / "dbar_npz.npy"
    with open(f["dbar_npz"], "wb") as fh:
        np.savez(fh, dbar=np.ones(3))
    f["dbar_trunc"] = d / "dbar_trunc.npy"
    f["dbar_trunc"].write_bytes(f["dbar_ok"].read_bytes()[:-40])
    f["dir"] = d / "a_dir"
    f["dir"].mkdir()
    f["ro"] = d / "read_only"
    f["ro"].mkdir()
    f["ro"].chmod(0o555)
    return f


# --------------------------------------------------------------------------- checks
def _no_nan(obj) -> bool:
    if isinstance(obj, float):
        return not math.isnan(obj)
    if isinstance(obj, dict):
        return all(_no_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_nan(v) for v in obj)
    return True


def json_ok(out: str) -> bool:
    """exit-0 output: JSON without NaN (json.loads maps NaN to float nan), or plain text without 'nan'."""
    try:
        return _no_nan(json.loads(out))
    except ValueError:
        return "nan" not in out.lower().split()


def approx(want, rel=1e-12):
    return lambda v: np.allclose(np.asarray(v, dtype=np.float64), want, rtol=rel, atol=0)


def finite(v) -> bool:
    return bool(
        np.all(np.isfinite(np.asarray(v if not torch.is_tensor(v) else v.detach(), dtype=np.float64)))
    )


# --------------------------------------------------------------------------- cases
def cases(f: dict[str, Path], out: Path):
    """(surface, label, thunk or CLI argv, expectation) for every input tried.

    expectation: REFUSE (must be a clean error) or a predicate on the value / the stdout.
    """
    import trm_bounds as tb
    from trm_bounds import bounds as B
    from trm_bounds import masks as M
    from trm_bounds.certify import certify, load_logprobs, sample_certificate
    from trm_bounds.chain import ChainPair, evaluate_chain_file
    from trm_bounds.divergences import pinsker_kl_lower, pinsker_tv, token_kl, token_tv
    from trm_bounds.pair import PolicyPair

    big = np.iinfo(np.int64).max
    lp = np.array([[-0.5, -1.0, -0.2]])
    rlp = np.array([[-0.6, -0.9, -0.3]])
    m1 = np.ones((1, 3))
    c = []

    def api(surface, label, fn, expect=REFUSE):
        c.append((surface, label, fn, expect))

    def cli(label, *argv, expect=json_ok):
        c.append((f"cli:{argv[0]}", label, [str(a) for a in argv], expect))

    def refuse_files(command, option, keys, *more_keys, extra=()):
        """`command [extra] option FILE` must be refused for each named file."""
        for key in (*keys, *" ".join(more_keys).split()):
            cli(f"{option} {key}", command, *extra, option, f[key], expect=REFUSE)

    # ---- bounds API (trm_bounds.bounds, __all__)
    api("api:bounds", "coupling_cap_position(0.0)", lambda: B.coupling_cap_position(0.0), lambda v: v == big)
    api(
        "api:bounds",
        "coupling_cap_position(1e-300)",
        lambda: B.coupling_cap_position(1e-300),
        lambda v: v == big,
    )
    api("api:bounds", "coupling_cap_position(0.3)", lambda: B.coupling_cap_position(0.3), lambda v: v == 5)
    api("api:bounds", "coupling_cap_position(nan)", lambda: B.coupling_cap_position(float("nan")))
    api(
        "api:bounds",
        "adaptive_worst_case_sum(10, 0.0)",
        lambda: B.adaptive_worst_case_sum(10, 0.0),
        approx(0.0),
    )
    api(
        "api:bounds",
        "adaptive_worst_case_sum(10, inf)",
        lambda: B.adaptive_worst_case_sum(10, math.inf),
        approx(10.0),
    )
    api(
        "api:bounds",
        "adaptive_crossover(0, 0)",
        lambda: B.adaptive_crossover(0.0, 0.0),
        lambda v: v == math.inf,
    )
    api(
        "api:bounds",
        "adaptive_crossover(0.1, inf)",
        lambda: B.adaptive_crossover(0.1, math.inf),
        lambda v: v == math.inf,
    )
    api(
        "api:bounds",
        "ln_trm_score([1,1,inf])",
        lambda: B.ln_trm_score([1, 1, math.inf], 0.1, 0.1),
        lambda v: finite(v),
    )
    api(
        "api:bounds",
        "ln_trm_score([inf,1,1])",
        lambda: B.ln_trm_score([math.inf, 1, 1], 0.1, 0.1),
        lambda v: v == math.inf,
    )
    api("api:bounds", "ln_trm_score([nan])", lambda: B.ln_trm_score([math.nan, 1.0], 0.1, 0.1))
    api("api:bounds", "ln_trm_score(scalar)", lambda: B.ln_trm_score(1.0, 0.1, 0.1))
    api("api:bounds", "pm_kl(2**63, 1e-4)", lambda: B.pm_kl(2**63, 1e-4))
    api("api:bounds", "pm_kl(1e20, 1e-4)", lambda: B.pm_kl(1e20, 1e-4))
    api("api:bounds", "pm_kl(inf, 1e-4)", lambda: B.pm_kl(math.inf, 1e-4))
    api("api:bounds", "pm_kl(nan, 1e-4)", lambda: B.pm_kl(math.nan, 1e-4))
    api("api:bounds", "pm_kl(0, 1e-4)", lambda: B.pm_kl(0, 1e-4))
    api("api:bounds", "pm_kl(2.5, 1e-4)", lambda: B.pm_kl(2.5, 1e-4))
    api("api:bounds", "pm_kl(10, -1)", lambda: B.pm_kl(10, -1.0))
    api("api:bounds", "pm_kl(10, inf)", lambda: B.pm_kl(10, math.inf), approx(36.0))
    api("api:bounds", "pm_kl(None, 0.1)", lambda: B.pm_kl(None, 0.1))
    api("api:bounds", "pm_kl('10', 0.1)", lambda: B.pm_kl("10", 0.1))
    api("api:bounds", "pm_kl(2**53, 1e-30)", lambda: B.pm_kl(2**53, 1e-30), finite)
    api("api:bounds", "pm_kl(10, 1e-320)", lambda: B.pm_kl(10, 1e-320), finite)
    api("api:bounds", "pm_kl(10, 1e308)", lambda: B.pm_kl(10, 1e308), approx(36.0))
    api(
        "api:bounds",
        "pm_kl(requires_grad T)",
        lambda: B.pm_kl(torch.tensor(10.0, requires_grad=True), 1e-4),
        approx(B.pm_kl(10, 1e-4)),
    )
    api(
        "api:bounds",
        "pm_kl(requires_grad delta)",
        lambda: B.pm_kl(10, torch.tensor(1e-4, dtype=torch.float64, requires_grad=True)),
        approx(B.pm_kl(10, 1e-4)),
    )
    api("api:bounds", "coupling(10, 1.5)", lambda: B.coupling(10, 1.5))
    api("api:bounds", "coupling(10, 1e-300)", lambda: B.coupling(10, 1e-300), finite)
    api("api:bounds", "classical_kl(1, inf)", lambda: B.classical_kl(1, math.inf), approx(0.0))
    api("api:bounds", "mix_tv(10, 0.1, nan)", lambda: B.mix_tv(10, 0.1, math.nan))
    api("api:bounds", "adaptive_star([], .1, .1)", lambda: B.adaptive_star([], 0.1, 0.1))
    api("api:bounds", "adaptive_star([[nan]])", lambda: B.adaptive_star([[math.nan]], 0.1, 0.1))
    api("api:bounds", "adaptive_star(dbar>1)", lambda: B.adaptive_star([0.5, 1.5], 0.1, 0.1))
    api(
        "api:bounds",
        "adaptive_star(uniform 1e9)",
        lambda: B.adaptive_star(B.uniform_dbar(10**9, 1e-3), 1e-3, 1e-4),
        finite,
    )
    api(
        "api:bounds", "linear_dbar(uniform 2**53)", lambda: B.linear_dbar(B.uniform_dbar(2**53, 1e-9)), finite
    )
    api("api:bounds", "ln_trm_weights(0, ..)", lambda: B.ln_trm_weights(0, 0.1, 0.1))
    api("api:bounds", "ln_trm_weights(v9)", lambda: B.ln_trm_weights(4, 0.1, 0.1, version="v9"))
    api("api:bounds", "ln_trm_weights(1e12)", lambda: B.ln_trm_weights(10**12, 0.1, 0.1))
    api(
        "api:bounds",
        "from_partial(T=array([10]))",
        lambda: B.BoundInputs.from_partial(np.array([10]), 1e-3),
        lambda b: b.T == 10,
    )
    api(
        "api:bounds",
        "from_partial(T=array([10, 11]))",
        lambda: B.BoundInputs.from_partial(np.array([10, 11]), 1e-3),
    )
    api(
        "api:bounds",
        "from_partial(delta=array([1e-3]))",
        lambda: B.BoundInputs.from_partial(10, np.array([1e-3])),
        lambda b: b.delta == 1e-3,
    )
    api(
        "api:bounds",
        "from_partial(T=1e9)",
        lambda: B.BoundInputs.from_partial(10**9, 1e-9),
        lambda b: b.dbar.shape == (10**9,),
    )
    api(
        "api:bounds",
        "from_partial(dbar wrong length)",
        lambda: B.BoundInputs.from_partial(10, 1e-3, dbar=np.ones(3)),
    )
    api("api:bounds", "from_partial(eps=2)", lambda: B.BoundInputs.from_partial(10, 1e-3, eps=2.0))
    api(
        "api:bounds",
        "from_partial(source bad)",
        lambda: B.BoundInputs.from_partial(10, 1e-3, source={"x": "given"}),
    )
    api(
        "api:bounds",
        "from_partial(T=torch grad)",
        lambda: B.BoundInputs.from_partial(torch.tensor(10.0, requires_grad=True), 1e-3),
        lambda b: b.T == 10,
    )
    bi = B.BoundInputs.from_partial(16, 1e-3)
    api(
        "api:bounds",
        "evaluate_bounds(names='pm_kl')",
        lambda: B.evaluate_bounds(bi, names="pm_kl"),
        lambda d: list(d) == ["pm_kl"],
    )
    api("api:bounds", "evaluate_bounds(names=['nope'])", lambda: B.evaluate_bounds(bi, names=["nope"]))
    api("api:bounds", "evaluate_bounds(names=[1])", lambda: B.evaluate_bounds(bi, names=[1]))
    api("api:bounds", "evaluate_bounds(dict)", lambda: B.evaluate_bounds({"T": 3}))
    api(
        "api:bounds",
        "evaluate_bounds(T=1e15)",
        lambda: B.evaluate_bounds(B.BoundInputs.from_partial(10**15, 1e-20)),
        lambda d: _no_nan(d),
    )
    api(
        "api:bounds",
        "to_json(T=1e9)",
        lambda: B.BoundInputs.from_partial(10**9, 1e-9).to_json(),
        lambda j: isinstance(j["dbar"], float),
    )
    api("api:bounds", "get_bound('p')", lambda: B.get_bound("p"))
    api("api:bounds", "register_bound('pm_kl')", lambda: B.register_bound("pm_kl", lambda b: 0.0))

    # ---- divergences
    api("api:divergences", "pinsker_tv(tensor(-1.))", lambda: pinsker_tv(torch.tensor(-1.0)))
    api("api:divergences", "pinsker_tv(tensor(nan))", lambda: pinsker_tv(torch.tensor(math.nan)))
    api("api:divergences", "pinsker_tv(tensor(inf))", lambda: pinsker_tv(torch.tensor(math.inf)), approx(1.0))
    api("api:divergences", "pinsker_tv(-1.)", lambda: pinsker_tv(-1.0))
    api("api:divergences", "pinsker_kl_lower(tensor(2.))", lambda: pinsker_kl_lower(torch.tensor(2.0)))
    api("api:divergences", "token_kl(nan)", lambda: token_kl(np.array([math.nan, 0.0]), np.log([0.5, 0.5])))
    api(
        "api:divergences",
        "token_kl(disjoint)",
        lambda: token_kl(np.array([0.0, -math.inf]), np.array([-math.inf, 0.0])),
        lambda v: v == math.inf,
    )
    api(
        "api:divergences",
        "token_tv(disjoint)",
        lambda: token_tv(np.array([0.0, -math.inf]), np.array([-math.inf, 0.0])),
        approx(1.0),
    )
    api("api:divergences", "token_kl(shape)", lambda: token_kl(np.zeros(2), np.zeros(3)))
    api(
        "api:divergences", "token_kl(+inf)", lambda: token_kl(np.array([math.inf, 0.0]), np.array([0.0, 0.0]))
    )
    api(
        "api:divergences",
        "token_kl_from_logits(huge)",
        lambda: tb.token_kl_from_logits(np.array([1e308, 0.0]), np.array([0.0, 1e308])),
        lambda v: v == math.inf or finite(v),
    )
    api("api:divergences", "k3(nan)", lambda: tb.k3(np.array([math.nan])))
    api("api:divergences", "k3(-inf)", lambda: tb.k3(np.array([-math.inf])), lambda v: v[0] == math.inf)

    # ---- masks
    api(
        "api:masks",
        "trm_mask(T=0)",
        lambda: M.trm_mask(np.zeros((2, 0)), np.zeros((2, 0)), np.zeros((2, 0)), max_threshold=0.1),
        lambda r: r[1].all(),
    )
    api("api:masks", "trm_mask(log_prob>0)", lambda: M.trm_mask(lp + 1.0, rlp, m1, max_threshold=0.1))
    api("api:masks", "trm_mask(rollout>0)", lambda: M.trm_mask(lp, rlp + 1.0, m1, max_threshold=0.1))
    api("api:masks", "trm_mask(nan valid)", lambda: M.trm_mask(lp * np.nan, rlp, m1, max_threshold=0.1))
    api(
        "api:masks",
        "trm_mask(nan padded)",
        lambda: M.trm_mask(
            np.array([[-0.5, np.nan]]), np.array([[-0.4, 1.0]]), np.array([[1, 0]]), max_threshold=0.1
        ),
        lambda r: bool(r[1][0]),
    )
    api("api:masks", "trm_mask(threshold inf)", lambda: M.trm_mask(lp, rlp, m1, max_threshold=math.inf))
    api("api:masks", "trm_mask(threshold -1)", lambda: M.trm_mask(lp, rlp, m1, max_threshold=-1.0))
    api("api:masks", "trm_mask(no threshold)", lambda: M.trm_mask(lp, rlp, m1))
    api("api:masks", "trm_mask(mode bogus)", lambda: M.trm_mask(lp, rlp, m1, mode="x", max_threshold=0.1))
    api("api:masks", "trm_mask(1-D)", lambda: M.trm_mask(lp[0], rlp[0], m1[0], max_threshold=0.1))
    api("api:masks", "trm_mask(mask=2)", lambda: M.trm_mask(lp, rlp, m1 * 2, max_threshold=0.1))
    api("api:masks", "trm_mask(int log_prob)", lambda: M.trm_mask(lp.astype(int), rlp, m1, max_threshold=0.1))
    api("api:masks", "trm_mask(str)", lambda: M.trm_mask("x", rlp, m1, max_threshold=0.1))
    api("api:masks", "trm_mask(exact_kl<0)", lambda: M.trm_mask(lp, rlp, m1, max_threshold=0.1, exact_kl=-m1))
    api(
        "api:masks",
        "trm_mask(-inf log_prob)",
        lambda: M.trm_mask(
            np.array([[-math.inf, -0.1]]), np.array([[-0.1, -0.1]]), np.ones((1, 2)), max_threshold=0.1
        ),
        lambda r: not r[1][0],
    )
    api(
        "api:masks",
        "sequence_mask(ln-trm, T=1)",
        lambda: M.sequence_mask("ln-trm", lp[:, :1], rlp[:, :1], m1[:, :1], delta_w=0.1, delta=0.1),
        lambda r: finite(r.weights if r.weights is not None else 0),
    )
    api("api:masks", "sequence_mask(bogus)", lambda: M.sequence_mask("bogus", lp, rlp, m1))
    api(
        "api:masks",
        "sequence_mask(seq-tis clip=nan)",
        lambda: M.sequence_mask("seq-tis", lp, rlp, m1, clip=math.nan),
    )
    api(
        "api:masks",
        "masked_policy_loss(scale=inf)",
        lambda: M.masked_policy_loss(
            np.ones((2, 2)),
            np.ones((2, 2)),
            loss_agg_mode="seq-mean-token-sum-norm",
            loss_scale_factor=math.inf,
        ),
    )
    api(
        "api:masks",
        "masked_policy_loss(scale=0)",
        lambda: M.masked_policy_loss(
            np.ones((2, 2)), np.ones((2, 2)), loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=0.0
        ),
    )
    api(
        "api:masks",
        "masked_policy_loss(scale='x')",
        lambda: M.masked_policy_loss(
            np.ones((2, 2)), np.ones((2, 2)), loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor="x"
        ),
    )
    api("api:masks", "masked_policy_loss(NaN padded, grad)", _nan_padded_grad, lambda g: finite(g))
    api(
        "api:masks",
        "masked_policy_loss(bad mode)",
        lambda: M.masked_policy_loss(np.ones((2, 2)), np.ones((2, 2)), loss_agg_mode="x"),
    )
    api(
        "api:masks",
        "masked_policy_loss(int loss)",
        lambda: M.masked_policy_loss(np.ones((2, 2), int), np.ones((2, 2))),
        approx(1.0),
    )
    api(
        "api:masks",
        "rollout_rejection_mask(empty)",
        lambda: M.rollout_rejection_mask(np.zeros((1, 2)), np.zeros((1, 2)), "seq_max_k2", 0.1),
    )
    api(
        "api:masks",
        "rollout_rejection_mask(bad spec)",
        lambda: M.rollout_rejection_mask(lp - rlp, m1, "x", 0.1),
    )
    api(
        "api:masks",
        "rollout_is_weights(nan thresh)",
        lambda: M.rollout_is_weights(lp - rlp, m1, rollout_is_threshold=math.nan),
    )
    api(
        "api:masks",
        "vllm_is_ratio(bad mode)",
        lambda: M.vllm_importance_sampling_ratio(lp, rlp, m1, "geometric"),
    )
    api("api:masks", "offpolicy_metrics(all padded)", lambda: M.offpolicy_metrics(lp, rlp, 0 * m1))
    api("api:masks", "offpolicy_metrics(ok)", lambda: M.offpolicy_metrics(lp, rlp, m1), lambda d: _no_nan(d))

    # ---- certify
    api("api:certify", "certify(empty batch)", lambda: certify(lp, rlp, 0 * m1, delta=0.1))
    api("api:certify", "certify(B=0)", lambda: certify(lp[:0], rlp[:0], m1[:0], delta=0.1))
    api("api:certify", "certify(log_prob>0)", lambda: certify(lp + 1.0, rlp, m1, delta=0.1))
    api("api:certify", "certify(T=0.5)", lambda: certify(lp, rlp, m1, T=0.5))
    api("api:certify", "certify(T=2 < width)", lambda: certify(lp, rlp, m1, T=2))
    api("api:certify", "certify(T=1e20)", lambda: certify(lp, rlp, m1, T=1e20))
    api("api:certify", "certify(ok)", lambda: certify(lp, rlp, m1, delta=0.1), lambda d: _no_nan(d))
    api("api:certify", "sample_certificate(empty)", lambda: sample_certificate(lp, rlp, 0 * m1))
    api(
        "api:certify",
        "sample_certificate(confidence=1)",
        lambda: sample_certificate(lp, rlp, m1, confidence=1.0),
    )
    api(
        "api:certify",
        "sample_certificate(confidence=nan)",
        lambda: sample_certificate(lp, rlp, m1, confidence=math.nan),
    )
    api("api:certify", "sample_certificate(method=x)", lambda: sample_certificate(lp, rlp, m1, method="x"))
    api(
        "api:certify",
        "sample_certificate(horizon=inf)",
        lambda: sample_certificate(lp, rlp, m1, horizon=math.inf),
    )
    api(
        "api:certify",
        "sample_certificate(ok)",
        lambda: sample_certificate(np.vstack([lp, lp]), np.vstack([rlp, rlp]), np.vstack([m1, m1])),
        lambda d: _no_nan(d),
    )

    # ---- loaders (pair, chain, logprobs)
    for key in BROKEN:
        api("api:loaders", f"PolicyPair.load({key})", lambda k=key: PolicyPair.load(f[k]))
        api("api:loaders", f"ChainPair.load({key})", lambda k=key: ChainPair.load(f[k]))
        api("api:loaders", f"load_logprobs({key})", lambda k=key: load_logprobs(f[k]))
    api("api:loaders", "PolicyPair.load(missing)", lambda: PolicyPair.load(f["dir"] / "nope.npz"))
    api("api:loaders", "PolicyPair.load(pair_gap)", lambda: PolicyPair.load(f["pair_gap"]))
    api("api:loaders", "PolicyPair.load(level0)", lambda: PolicyPair.load(f["pair_level0"]))
    api("api:loaders", "PolicyPair.load(ok)", lambda: PolicyPair.load(f["pair"]), lambda p: p.T == 3)
    api(
        "api:loaders",
        "evaluate_pair_file(device=bogus)",
        lambda: tb.evaluate_pair_file(f["pair"], device="bogus"),
    )
    api(
        "api:loaders",
        "evaluate_pair_file(device=cuda)",
        lambda: (
            tb.evaluate_pair_file(f["pair"], device="cuda")
            if not torch.cuda.is_available()
            else (_ for _ in ()).throw(ValueError("has cuda"))
        ),
    )
    api("api:loaders", "evaluate_chain_file(T=1e9)", lambda: evaluate_chain_file(f["chain"], T=10**9))
    api("api:loaders", "evaluate_chain_file(T=0)", lambda: evaluate_chain_file(f["chain"], T=0))
    api("api:loaders", "evaluate_chain_file(device=x)", lambda: evaluate_chain_file(f["chain"], device="x"))
    api(
        "api:loaders",
        "exact_J(device=bogus)",
        lambda: tb.exact_J([np.log(np.full((1, 1, 2), 0.5))], np.zeros((1, 2)), np.ones(1), device="bogus"),
    )
    api(
        "api:loaders",
        "make_policy(V=2, T=26)",
        lambda: __import__("trm_bounds.policies").policies.make_policy("tabular", 1, 2, 26),
    )

    # ---- CLI: bounds
    cli("--T 4096 --delta 1e-4", "bounds", "--T", 4096, "--delta", 1e-4)
    cli("--T 1e7", "bounds", "--T", "1e7", "--delta", 1e-4, expect=lambda o: json_ok(o) and len(o) < 10_000)
    cli("--T 1e9", "bounds", "--T", "1e9", "--delta", 1e-4, expect=lambda o: json_ok(o) and len(o) < 10_000)
    for bad in ("inf", "nan", "1e20", "-1", "0", "2.5", "abc", "9007199254740993", "1e400", "0x10"):
        cli(f"--T {bad}", "bounds", "--T", bad, "--delta", 1e-4, expect=REFUSE)
    for bad in ("-1", "nan"):
        cli(f"--delta {bad}", "bounds", "--T", 10, "--delta", bad, expect=REFUSE)
    cli("--delta inf", "bounds", "--T", 10, "--delta", "inf")
    cli("--eps 2", "bounds", "--T", 10, "--delta", 0.1, "--eps", 2, expect=REFUSE)
    cli("--eps nan", "bounds", "--T", 10, "--delta", 0.1, "--eps", "nan", expect=REFUSE)
    cli("--dtv-seq 1.5", "bounds", "--T", 10, "--delta", 0.1, "--dtv-seq", 1.5, expect=REFUSE)
    cli("--dkl-seq -1", "bounds", "--T", 10, "--delta", 0.1, "--dkl-seq", -1, expect=REFUSE)
    cli("--delta 1e-320", "bounds", "--T", 10, "--delta", 1e-320)
    cli("--T 9007199254740992 --delta 1e-30", "bounds", "--T", 2**53, "--delta", 1e-30)
    cli("--dbar ok", "bounds", "--T", 16, "--delta", 1e-3, "--dbar", f["dbar_ok"])
    refuse_files(
        "bounds",
        "--dbar",
        ("truncated", "text", "empty_file", "dir"),
        "dbar_nan dbar_big dbar_2d dbar_short dbar_empty dbar_str dbar_npz dbar_trunc",
        extra=("--T", 16, "--delta", 1e-3),
    )
    cli(
        "--dbar missing", "bounds", "--T", 16, "--delta", 1e-3, "--dbar", f["dir"] / "nope.npy", expect=REFUSE
    )
    cli("no --delta", "bounds", "--T", 16, expect=REFUSE)

    # ---- CLI: exact
    cli("--pair ok", "exact", "--pair", f["pair"])
    refuse_files(
        "exact",
        "--pair",
        BROKEN,
        "pair_gap pair_level0 pair_nan pair_badshape pair_strings",
        "pair_complex pair_unnorm pair_posinf pair_missing chain logprobs",
    )
    cli("--chain ok", "exact", "--chain", f["chain"])
    cli("--chain --T 100", "exact", "--chain", f["chain"], "--T", 100)
    refuse_files(
        "exact",
        "--chain",
        ("truncated", "npy_as_npz", "empty_file", "pickled"),
        "chain_badT chain_Tfloat chain_T0 chain_Thuge chain_badtrans chain_nan pair",
    )
    for flag in (
        ("--mask", "max", "--mask-delta", 0.1),
        ("--mask-delta", 0.1),
        ("--baseline", 0.5),
        ("--future-tv",),
        ("--V", 3),
        ("--save-pair", out / "x.npz"),
    ):
        cli(f"--chain {' '.join(map(str, flag))}", "exact", "--chain", f["chain"], *flag, expect=REFUSE)
    cli("--chain --T 1000000000", "exact", "--chain", f["chain"], "--T", 10**9, expect=REFUSE)
    cli("--chain --T 0", "exact", "--chain", f["chain"], "--T", 0, expect=REFUSE)
    cli("--chain --T 1e9 (text)", "exact", "--chain", f["chain"], "--T", "1e9", expect=REFUSE)
    cli("--pair --T 3", "exact", "--pair", f["pair"], "--T", 3, expect=REFUSE)
    cli("--pair --mask-delta only", "exact", "--pair", f["pair"], "--mask-delta", 0.1, expect=REFUSE)
    cli("--pair --mask max (no delta)", "exact", "--pair", f["pair"], "--mask", "max", expect=REFUSE)
    cli(
        "--pair --mask max --mask-delta nan",
        "exact",
        "--pair",
        f["pair"],
        "--mask",
        "max",
        "--mask-delta",
        "nan",
        expect=REFUSE,
    )
    cli(
        "--pair --mask max --mask-delta 0.1",
        "exact",
        "--pair",
        f["pair"],
        "--mask",
        "max",
        "--mask-delta",
        0.1,
    )
    cli("--pair --baseline nan", "exact", "--pair", f["pair"], "--baseline", "nan", expect=REFUSE)
    cli("--pair --baseline inf", "exact", "--pair", f["pair"], "--baseline", "inf", expect=REFUSE)
    cli("--pair --future-tv", "exact", "--pair", f["pair"], "--future-tv")
    cli(
        "--pair --device cuda",
        "exact",
        "--pair",
        f["pair"],
        "--device",
        "cuda",
        expect=REFUSE if not torch.cuda.is_available() else json_ok,
    )
    cli("--pair --device bogus", "exact", "--pair", f["pair"], "--device", "bogus", expect=REFUSE)
    cli("--pair --device cuda:99", "exact", "--pair", f["pair"], "--device", "cuda:99", expect=REFUSE)
    cli("--pair missing", "exact", "--pair", f["dir"] / "nope.npz", expect=REFUSE)
    cli("--pair --save-pair", "exact", "--pair", f["pair"], "--save-pair", out / "y.npz", expect=REFUSE)
    cli("--policy tabular", "exact", "--policy", "tabular", "--T", 3)
    cli("--policy tabular --V 2 --T 26", "exact", "--policy", "tabular", "--V", 2, "--T", 26, expect=REFUSE)
    cli(
        "--policy tabular --V 1000 --T 3",
        "exact",
        "--policy",
        "tabular",
        "--V",
        1000,
        "--T",
        3,
        expect=REFUSE,
    )
    cli("--policy tabular --V 1", "exact", "--policy", "tabular", "--V", 1, expect=REFUSE)
    cli("--policy tabular --T 0", "exact", "--policy", "tabular", "--T", 0, expect=REFUSE)
    cli("--policy tabular --P 0", "exact", "--policy", "tabular", "--P", 0, expect=REFUSE)
    cli("--policy tabular --eos 5", "exact", "--policy", "tabular", "--eos", 5, expect=REFUSE)
    cli("--policy tabular --strength nan", "exact", "--policy", "tabular", "--strength", "nan", expect=REFUSE)
    cli("--policy tabular --strength -1", "exact", "--policy", "tabular", "--strength", "-1", expect=REFUSE)
    cli("--policy tabular --strength inf", "exact", "--policy", "tabular", "--strength", "inf", expect=REFUSE)
    cli(
        "--policy tabular --mismatch bogus",
        "exact",
        "--policy",
        "tabular",
        "--mismatch",
        "bogus",
        expect=REFUSE,
    )
    cli(
        "--policy --save-pair under a file",
        "exact",
        "--policy",
        "tabular",
        "--T",
        3,
        "--save-pair",
        f["file"] / "x.npz",
        expect=REFUSE,
    )
    cli(
        "--policy --save-pair read-only",
        "exact",
        "--policy",
        "tabular",
        "--T",
        3,
        "--save-pair",
        f["ro"] / "x.npz",
        expect=REFUSE if os.geteuid() != 0 else json_ok,
    )
    cli(
        "--policy --save-pair missing dir",
        "exact",
        "--policy",
        "tabular",
        "--T",
        3,
        "--save-pair",
        out / "no" / "x.npz",
        expect=REFUSE,
    )
    cli(
        "--policy --save-pair a dir",
        "exact",
        "--policy",
        "tabular",
        "--T",
        3,
        "--save-pair",
        f["dir"],
        expect=REFUSE,
    )
    cli("no source", "exact", expect=REFUSE)

    # ---- CLI: certify
    cli("--logprobs ok", "certify", "--logprobs", f["logprobs"], "--json")
    cli("--logprobs ok (text)", "certify", "--logprobs", f["logprobs"])
    refuse_files(
        "certify",
        "--logprobs",
        BROKEN,
        "lp_positive lp_empty lp_zero_rows lp_nan lp_rollinf",
        "lp_shape lp_1d lp_int lp_mask2 lp_missing lp_adv_nan lp_adv_shape lp_group_float lp_kl_neg pair",
    )
    for flag in (
        ("--confidence", 1.0),
        ("--confidence", "nan"),
        ("--confidence", 0),
        ("--target", 0),
        ("--target", "nan"),
        ("--delta", -1),
        ("--delta", "nan"),
        ("--T", 2),
        ("--T", "inf"),
        ("--T", 0.5),
        ("--eps", 2),
        ("--dtv-seq", "nan"),
        ("--method", "x"),
    ):
        cli(
            f"{' '.join(map(str, flag))}",
            "certify",
            "--logprobs",
            f["logprobs"],
            *flag,
            "--json",
            expect=REFUSE,
        )
    cli("--delta inf", "certify", "--logprobs", f["logprobs"], "--delta", "inf", "--json")
    cli("--T 1e15", "certify", "--logprobs", f["logprobs"], "--T", "1e15", "--json")

    # ---- CLI: train
    cli(
        "--out under a file",
        "train",
        "--out",
        f["file"] / "run",
        "--steps",
        1,
        "--no-progress",
        expect=REFUSE,
    )
    cli("--out a file", "train", "--out", f["file"], "--steps", 1, "--no-progress", expect=REFUSE)
    cli(
        "--out read-only",
        "train",
        "--out",
        f["ro"] / "run",
        "--steps",
        1,
        "--no-progress",
        expect=REFUSE if os.geteuid() != 0 else json_ok,
    )
    for flag in (
        ("--steps", -1),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--method", "x"),
        ("--T", 0),
        ("--V", 1),
        ("--policy", "x"),
        ("--reward", "x"),
        ("--advantage", "x"),
        ("--loss-norm", "x"),
        ("--max-threshold", "nan"),
        ("--group-size", 0),
        ("--n-groups", 0),
        ("--T", 30),
        ("--mismatch", "bogus"),
        ("--save-pair-every", -1),
    ):
        cli(" ".join(map(str, flag)), "train", "--out", out / "t_bad", *flag, "--no-progress", expect=REFUSE)
    cli("--steps 2 (ok)", "train", "--out", out / "t_ok", "--steps", 2, "--no-progress", "--T", 3)

    # ---- CLI: table, audit, plot-scaling, figures (inputs and output paths only)
    cli("table --out a file", "table", "--out", f["file"], expect=REFUSE)
    cli("table --out under a file", "table", "--out", f["file"] / "d", expect=REFUSE)
    cli(
        "table --out read-only",
        "table",
        "--out",
        f["ro"] / "d",
        expect=REFUSE if os.geteuid() != 0 else json_ok,
    )
    cli("audit --out a file", "audit", "--out", f["file"], expect=REFUSE)
    cli("audit --out under a file", "audit", "--out", f["file"] / "d", expect=REFUSE)
    cli("plot-scaling --out a file", "plot-scaling", "--out", f["file"], expect=REFUSE)
    cli("plot-scaling --out under a file", "plot-scaling", "--out", f["file"] / "d", expect=REFUSE)
    cli("plot-scaling --T-max inf", "plot-scaling", "--out", out / "ps", "--T-max", "inf", expect=REFUSE)
    cli("plot-scaling --T-max nan", "plot-scaling", "--out", out / "ps", "--T-max", "nan", expect=REFUSE)
    cli("plot-scaling --T-max 1e20", "plot-scaling", "--out", out / "ps", "--T-max", "1e20", expect=REFUSE)
    cli("plot-scaling --points 1", "plot-scaling", "--out", out / "ps", "--points", 1, expect=REFUSE)
    cli("plot-scaling --points 1e9", "plot-scaling", "--out", out / "ps", "--points", 10**9, expect=REFUSE)
    cli(
        "figures --only bogus",
        "figures",
        "--out",
        out / "fig",
        "--only",
        "bogus",
        "--no-progress",
        expect=REFUSE,
    )
    cli("unknown command", "nope", expect=REFUSE)
    cli("bounds --bogus", "bounds", "--T", 4, "--delta", 0.1, "--bogus", expect=REFUSE)
    return c


def _nan_padded_grad():
    """Gradient wrt log_prob of the trainer's loss when padding holds NaN log-probs."""
    from trm_bounds.trainer import method_loss

    lp = torch.tensor([[-1.0, math.nan]], dtype=torch.float64, requires_grad=True)
    rlp = torch.tensor([[-1.1, -math.inf]], dtype=torch.float64)
    m = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    for kind in ("masked_is", "weighted", "ppo_clip"):
        loss = method_loss(kind, lp, rlp, torch.ones(1, dtype=torch.float64), m, m, torch.ones_like(m))
        loss.backward()
    return lp.grad


# --------------------------------------------------------------------------- running
def _run_one(surface, fn, expect, workdir: Path) -> tuple[str, str]:
    from trm_bounds.cli import main

    before_files = set(workdir.rglob("*"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    t0 = time.perf_counter()
    try:
        if callable(fn):
            try:
                value = fn()
            except (ValueError, TypeError) as exc:
                return "clean error", f"{type(exc).__name__}: {exc}"[:160]
            except (_Timeout, MemoryError) as exc:
                return "blow-up", type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - classified, not hidden
                return "traceback", f"{type(exc).__name__}: {exc}"[:160]
            if expect is REFUSE:
                return "silent wrong", f"returned {value!r}"[:160]
            ok = bool(expect(value))
            return ("correct value" if ok else "silent wrong"), f"{value!r}"[:160]
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(fn)
        except (_Timeout, MemoryError) as exc:
            return "blow-up", type(exc).__name__
        except BaseException as exc:  # noqa: BLE001 - an escaped exception is a traceback
            return "traceback", f"{type(exc).__name__}: {exc}"[:160]
        e = err.getvalue()
        new = set(workdir.rglob("*")) - before_files
        if "Traceback" in e or rc not in (0, 2):
            return "traceback", f"rc={rc} {e.strip()[-160:]}"
        if rc == 2:
            lines = [x for x in e.splitlines() if x.strip() and ": note:" not in x]
            if len(lines) != 1 or new:
                return "traceback", f"rc=2 but {len(lines)} lines / wrote {sorted(map(str, new))[:2]}"
            return "clean error", lines[0][:160]
        if expect is REFUSE:
            return "silent wrong", f"rc=0 {out.getvalue()[:100]!r}"
        ok = bool(expect(out.getvalue()))
        return ("correct value" if ok else "silent wrong"), f"rc=0 ({len(out.getvalue())} chars)"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        dt = time.perf_counter() - t0
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
        if dt > TIME_LIMIT or grew > MEM_LIMIT:
            print(f"  (over budget: {dt:.0f} s, +{grew / 2**30:.1f} GiB)", file=sys.stderr)


def run_all(verbose: bool = False) -> Counter:
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "in").mkdir()
        work = d / "out"
        work.mkdir()
        files = make_files(d / "in")
        cwd = os.getcwd()
        os.chdir(work)  # commands with default output folders write here, never into the clone
        try:
            for surface, label, fn, expect in cases(files, work):
                t0 = time.perf_counter()
                rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                outcome, detail = _run_one(surface, fn, expect, work)
                dt = time.perf_counter() - t0
                grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
                if dt > TIME_LIMIT or grew > MEM_LIMIT:
                    outcome, detail = "blow-up", f"{dt:.0f} s, +{grew / 2**30:.1f} GiB; {detail}"
                counts[(surface, outcome)] += 1
                if verbose or outcome in ("silent wrong", "traceback", "blow-up"):
                    print(f"{outcome:13s} {surface:16s} {label:40s} {dt:5.1f}s  {detail}")
        finally:
            os.chdir(cwd)
            files["ro"].chmod(0o755)
    return counts


def table(counts: Counter) -> str:
    surfaces = sorted({s for s, _ in counts})
    w = max(len(s) for s in surfaces)
    lines = [f"{'surface':{w}s} | " + " | ".join(OUTCOMES) + " | total"]
    lines.append("-" * len(lines[0]))
    for s in surfaces + ["TOTAL"]:
        row = [
            sum(v for (s2, o2), v in counts.items() if (s == "TOTAL" or s2 == s) and o2 == o)
            for o in OUTCOMES
        ]
        lines.append(
            f"{s:{w}s} | " + " | ".join(f"{n:{len(o)}d}" for n, o in zip(row, OUTCOMES)) + f" | {sum(row)}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    c = run_all(verbose="-v" in sys.argv)
    print(table(c))
    bad = sum(v for (_, o), v in c.items() if o in ("silent wrong", "traceback", "blow-up"))
    sys.exit(1 if bad else 0)
