"""Fuzz the public functions: wild numbers, shapes, dtypes, non-finite values, broken files.

Contract (issue 11): a call either raises ValueError/TypeError (naming the argument) or
returns a value without NaN when every input was finite; never another exception.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from _fuzz import finite_in, fuzz_settings, has_nan, special_floats, wild_arrays, wild_scalars
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import trm_bounds
from trm_bounds import bounds as B
from trm_bounds import masks as M

CLEAN = (ValueError, TypeError)

# every public numeric function of trm_bounds.bounds, called with positional wild values
_BOUND_FUNCS = [
    getattr(B, n)
    for n in B.__all__
    if inspect.isfunction(getattr(B, n))
    and n not in ("register_bound", "get_bound", "evaluate_bounds", "unified", "unified_v2")
]


def _call(fn, *args, **kw):
    """fn(*args, **kw), or None when it refused cleanly; any other exception fails the test."""
    try:
        return fn(*args, **kw)
    except CLEAN as exc:
        assert str(exc), f"{fn.__name__}: an empty message"
        return None


@pytest.mark.parametrize("fn", _BOUND_FUNCS, ids=lambda f: f.__name__)
@fuzz_settings
@given(data=st.data())
def test_bound_functions_refuse_or_answer_without_nan(fn, data):
    params = [p for p in inspect.signature(fn).parameters.values() if p.default is p.empty]
    args = []
    for p in params:
        if p.name in ("dbar", "rho", "expected_W"):
            args.append(data.draw(st.one_of(wild_arrays(max_dims=2, max_side=6), wild_scalars), label=p.name))
        elif p.name == "T":
            args.append(data.draw(st.one_of(wild_scalars, st.integers(1, 10**6)), label="T"))
        else:
            args.append(data.draw(st.one_of(wild_scalars, st.floats(0, 1)), label=p.name))
    out = _call(fn, *args)
    if out is not None and finite_in(*args):
        assert not has_nan(out), (fn.__name__, args, out)


@fuzz_settings
@given(
    T=st.one_of(st.integers(1, 2**53), wild_scalars),
    delta=st.one_of(st.floats(0, 10), special_floats),
    eps=st.one_of(st.none(), st.floats(0, 1), special_floats),
    dkl=st.one_of(st.none(), st.floats(0, 1e6), special_floats),
    dtv=st.one_of(st.none(), st.floats(0, 1), special_floats),
)
def test_bound_inputs_and_every_bound(T, delta, eps, dkl, dtv):
    b = _call(B.BoundInputs.from_partial, T, delta, eps, dkl, dtv)
    if b is None:
        return
    out = B.evaluate_bounds(b)  # valid inputs: every registered bound answers
    assert not has_nan(out), (b, out)
    assert all(v >= 0 for v in out.values())
    j = b.to_json()
    assert not has_nan(j) and (isinstance(j["dbar"], float) or len(j["dbar"]) == b.T)


@fuzz_settings
@given(kl=st.one_of(wild_arrays(), wild_scalars), as_torch=st.booleans())
def test_pinsker_both_paths_agree_on_what_they_refuse(kl, as_torch):
    from trm_bounds.divergences import pinsker_tv

    try:
        x = torch.as_tensor(np.asarray(kl, dtype=np.float64)) if as_torch else kl
    except CLEAN:
        return
    out = _call(pinsker_tv, x)
    if out is not None:
        assert not has_nan(out) and (np.asarray(out) <= 1).all()


@fuzz_settings
@given(a=wild_arrays(max_dims=2), b=wild_arrays(max_dims=2), name=st.sampled_from(["token_kl", "token_tv"]))
def test_token_divergences(a, b, name):
    out = _call(getattr(trm_bounds, name), a, b)
    if out is not None:
        assert not has_nan(out)


@fuzz_settings
@given(x=st.one_of(wild_arrays(), wild_scalars), name=st.sampled_from(["k1", "k2", "k3"]))
def test_sample_estimators(x, name):
    out = _call(getattr(trm_bounds, name), x)
    if out is not None and finite_in(x):
        assert not has_nan(out)


# --------------------------------------------------------------------------- masks and certify
def _batch(draw_shape=(3, 5)):
    """(log_prob, rollout_log_prob, response_mask) strategies of one (B, T) shape, any values."""
    vals = st.one_of(st.floats(-30, 0), special_floats)
    return st.tuples(
        arrays(np.float64, draw_shape, elements=vals),
        arrays(np.float64, draw_shape, elements=vals),
        arrays(np.int8, draw_shape, elements=st.sampled_from([0, 1, 1, 2])),
    )


_MASK_PARAMS = {
    "trm-max": {"delta": 0.1},
    "trm-avg": {"delta_avg": 0.1},
    "trm-max+avg": {"delta": 0.1, "delta_avg": 0.1},
    "ln-trm": {"delta_w": 0.1, "delta": 0.1, "eps": 0.1},
    "ser": {"delta_ser": 0.1},
    "geo-mask": {"low": 0.5, "high": 2.0},
    "token-mask": {"low": 0.5, "high": 2.0},
    "icepop": {"low": 0.5, "high": 2.0},
    "token-tis": {"clip": 2.0},
    "seq-tis": {"clip": 2.0},
    "seq-mis": {"high": 2.0},
    "rs-veto": {"tau": 0.1},
}


@fuzz_settings
@given(
    batch=st.sampled_from([(3, 5), (1, 1), (2, 0), (0, 3)]).flatmap(_batch),
    method=st.sampled_from(sorted(M.METHODS)),
    param=st.one_of(st.none(), special_floats),
)
def test_every_mask_method(batch, method, param):
    lp, rlp, m = batch
    params = dict(_MASK_PARAMS.get(method, {}))
    if params and param is not None:
        params[next(iter(params))] = param  # one parameter gets a wild value
    res = _call(M.sequence_mask, method, lp, rlp, m, **params)
    if res is not None and finite_in(*params.values()):
        valid = m > 0
        if not (np.isfinite(lp[valid]).all() and np.isfinite(rlp[valid]).all()):
            return
        assert not has_nan(res.mask)
        if res.weights is not None:
            assert not has_nan(np.where(valid, res.weights, 0.0))


@fuzz_settings
@given(
    batch=_batch(),
    mode=st.sampled_from(["max", "avg", "max+avg", "x"]),
    th=st.one_of(st.none(), special_floats),
)
def test_trm_mask(batch, mode, th):
    lp, rlp, m = batch
    out = _call(M.trm_mask, lp, rlp, m, mode=mode, max_threshold=th, avg_threshold=th)
    if out is not None:
        valid = m > 0
        assert (lp[valid] <= 0).all() and (rlp[valid] <= 0).all()  # log-probs > 0 are refused
        assert not has_nan(out[2])


@fuzz_settings
@given(
    loss=wild_arrays(max_dims=2),
    m=arrays(np.int8, (2, 3), elements=st.sampled_from([0, 1])),
    agg=st.sampled_from([*M.LOSS_AGG_MODES, "x"]),
    norm=st.sampled_from(["total", "kept", "x"]),
    scale=st.one_of(st.none(), wild_scalars),
)
def test_masked_policy_loss(loss, m, agg, norm, scale):
    out = _call(M.masked_policy_loss, loss, m, loss_agg_mode=agg, normalize=norm, loss_scale_factor=scale)
    if out is not None and np.isfinite(np.where(m > 0, np.asarray(loss, dtype=np.float64), 0.0)).all():
        assert math.isfinite(float(out))


@fuzz_settings
@given(batch=_batch((4, 3)), delta=st.one_of(st.none(), special_floats), T=st.one_of(st.none(), wild_scalars))
def test_certify_and_sample_certificate(batch, delta, T):
    from trm_bounds.certify import certify, sample_certificate

    lp, rlp, m = batch
    c = _call(certify, lp, rlp, m, delta=delta, T=T)
    if c is not None:
        assert (m > 0).any(), "an empty batch must be refused"
        assert not has_nan(c["bound"]) and 0.0 <= c["acceptance"]["overall"] <= 1.0
    s = _call(sample_certificate, lp, rlp, m, horizon=T)
    if s is not None:
        assert not has_nan({k: v for k, v in s.items() if k in ("bound", "bounds", "sum_dbar", "dtv_seq")})


# --------------------------------------------------------------------------- loaders
_LOADERS = {
    "pair": lambda p: trm_bounds.PolicyPair.load(p),
    "chain": lambda p: trm_bounds.ChainPair.load(p),
    "logprobs": lambda p: __import__("trm_bounds.certify").certify.load_logprobs(p),
}
_KEYS = {
    "pair": [
        "logp_roll_1",
        "logp_theta_1",
        "logp_roll_2",
        "logp_theta_2",
        "logp_roll_4",
        "reward",
        "prompt_probs",
    ],
    "chain": ["T", "transition", "init_state", "prompt_probs", "logp_roll", "logp_theta", "reward_final"],
    "logprobs": ["log_prob", "rollout_log_prob", "response_mask", "exact_kl", "group_id", "advantages"],
}


@fuzz_settings
@given(
    kind=st.sampled_from(sorted(_LOADERS)),
    data=st.data(),
    raw=st.one_of(st.none(), st.binary(max_size=300)),
    cut=st.floats(0, 1),
)
def test_loaders_refuse_any_broken_file_cleanly(tmp_path_factory, kind, data, raw, cut):
    p = tmp_path_factory.mktemp("fz") / "f.npz"
    if raw is not None:
        p.write_bytes(raw)
    else:
        keys = data.draw(st.lists(st.sampled_from(_KEYS[kind]), unique=True), label="keys")
        np.savez(p, **{k: data.draw(wild_arrays(), label=k) for k in keys})
        if cut < 0.3:  # truncate the archive part-way
            b = p.read_bytes()
            p.write_bytes(b[: int(len(b) * cut / 0.3)])
    try:
        _LOADERS[kind](p)
    except ValueError as exc:
        assert str(exc)
