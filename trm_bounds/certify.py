"""What a TRM mask certifies about a batch, and what it does not (docs/theory.md sections 7, 9, 10 C18).

From a batch's per-token log-probs (and, when full logits were kept, the exact token KL) the
certificate reports:
- the observed token-max KL (exact, or the k2 statistic clearly labelled an estimate) and TV
  where it is computable, on all sequences and on the accepted ones;
- the acceptance of the TRM mask overall and by response-length bucket;
- the log-perplexity gap (1/N) sum_i |mean_t log pi_theta - mean_t log pi_roll|;
- the unified bound B* of `trm_bounds.bounds`, evaluated on a `BoundInputs` whose ``sources``
  say where every input came from (observed on accepted sequences, assumed, Pinsker, worst case);
- plain statements of what is and is not guaranteed.

The mask only ever looks at sampled contexts: acceptance is not evidence that the token KL is
below delta at every reachable context (C18), and eps, D_KL^seq, D_TV^seq, Dbar_t are not
controlled by TRM (section 9). B* bounds |Error| only under the assumptions listed beside it.

File layout read by ``trm-bounds certify --logprobs FILE.npz`` (written by `save_logprobs`):
``log_prob``, ``rollout_log_prob`` (B, T) float; ``response_mask`` (B, T) 0/1; optional
``exact_kl`` (B, T) exact KL(pi_roll || pi_theta) at each sampled context.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._files import wrong_kind_hint
from ._validate import check_divergence, check_tv, read_npz
from .bounds import BoundInputs, evaluate_bounds
from .confidence import DEFAULT_METHOD, METHODS, upper_confidence_bound
from .masks import SAFETY_BOUND, trm_mask
from .masks.inputs import as_float_tensor, prepare_inputs, split_log_ratio
from .second_order import sequence_statistics

__all__ = [
    "certify",
    "sample_certificate",
    "certificate_targets",
    "save_logprobs",
    "load_logprobs",
    "certificate_bound_inputs",
    "LOGPROB_KEYS",
]

LOGPROB_KEYS = ("log_prob", "rollout_log_prob", "response_mask")  # required; the rest optional
OPTIONAL_KEYS = ("exact_kl", "group_id", "advantages")
_NOT_CONTROLLED = {
    "eps": "valid only if delta holds globally",
    "dkl_seq": "not controlled by TRM",
    "dtv_seq": "not controlled by TRM",
    "dbar": "not controlled by TRM",
}  # what each Pinsker / worst-case input of the certificate's bound rests on


def save_logprobs(path, log_prob, rollout_log_prob, response_mask, exact_kl=None) -> Path:
    """Write a batch (numpy or torch, (B, T) each) to ``path`` (.npz) for ``trm-bounds certify``.

    Inputs are validated first (shapes, NaN, +inf, -inf rollout log-probs at valid positions);
    the file is written to a temporary name and renamed, so nothing is left half-written.
    float16/bfloat16 are stored as float32. Returns the path written.
    """
    lr, valid, _m, _ = prepare_inputs(log_prob, rollout_log_prob, response_mask)
    arrays = {
        "log_prob": _to_numpy(log_prob, "log_prob"),
        "rollout_log_prob": _to_numpy(rollout_log_prob, "rollout_log_prob"),
        "response_mask": _to_numpy(response_mask, "response_mask", floating=False),
    }
    if exact_kl is not None:
        _check_exact_kl(lr, valid, exact_kl)
        arrays["exact_kl"] = _to_numpy(exact_kl, "exact_kl")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_exact_kl(lr: torch.Tensor, valid: torch.Tensor, exact_kl) -> None:
    """ValueError naming exact_kl unless it is (B, T) like the batch, >= 0, not NaN where valid."""
    trm_mask(
        *split_log_ratio(lr), valid, mode="max", max_threshold=0.0, exact_kl=exact_kl, return_metrics=False
    )


def _to_numpy(x, name: str, floating: bool = True) -> np.ndarray:
    if floating:
        t, _ = as_float_tensor(x, name)  # half -> float32
        return t.cpu().numpy()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def load_logprobs(path) -> dict[str, np.ndarray]:
    """Read a batch written by `save_logprobs` (or dumped from verl/TRL with the same keys)."""
    data = read_npz(path, "logprobs")
    for key in LOGPROB_KEYS:
        if key not in data:
            raise ValueError(
                f"logprobs: {path} has no array {key!r} (has {', '.join(data) or 'none'})"
                + wrong_kind_hint(data, "log-prob batch")
            )
    return {k: data[k] for k in (*LOGPROB_KEYS, *OPTIONAL_KEYS) if k in data}


def _length_buckets(lengths: np.ndarray, accepted: np.ndarray) -> list[dict[str, Any]]:
    """Acceptance per power-of-two length bucket [2^j, 2^(j+1) - 1], non-empty rows only."""
    out = []
    j = 0
    top = int(lengths.max(initial=0))
    while 2**j <= top:
        lo, hi = 2**j, 2 ** (j + 1) - 1
        sel = (lengths >= lo) & (lengths <= hi)
        n = int(sel.sum())
        if n:
            k = int(accepted[sel].sum())
            out.append({"lengths": f"{lo}-{hi}", "n": n, "accepted": k, "acceptance": k / n})
        j += 1
    return out


def _log_ppl_gap(lr: torch.Tensor, valid: torch.Tensor, rows: torch.Tensor) -> float | None:
    """(1/N) sum_{i in rows} |mean_t log rho_{i,t}|; None when no row."""
    if not bool(rows.any()):
        return None
    n = valid.sum(dim=-1).clamp_min(1).to(torch.float64)
    gap = (lr.to(torch.float64).sum(dim=-1) / n).abs()
    return float(gap[rows].mean())


def _masked_max(x: torch.Tensor, sel: torch.Tensor) -> float | None:
    return float(x[sel].max()) if bool(sel.any()) else None


def certify(
    log_prob,
    rollout_log_prob,
    response_mask,
    *,
    exact_kl=None,
    delta: float | None = None,
    delta_avg: float | None = None,
    T: int | None = None,
    eps: float | None = None,
    dkl_seq: float | None = None,
    dtv_seq: float | None = None,
    max_estimator: str = "k2",
    avg_estimator: str = "k3",
) -> dict[str, Any]:
    """The certificate of one batch (a JSON-ready dict; see the module docstring).

    Args:
      log_prob, rollout_log_prob, response_mask: (B, T) as in `trm_bounds.masks`.
      exact_kl: optional (B, T) exact token KL(pi_roll || pi_theta) at each sampled context.
      delta: TRM-Max threshold; delta_avg: TRM-Avg threshold. Neither: no mask (all accepted).
      T: horizon for the bound (default: the padded width response_mask.shape[1], the budget).
      eps, dkl_seq, dtv_seq: values to assume instead of the Pinsker / worst-case defaults.

    The bound's delta is, in order of preference: the max exact KL over the accepted sequences'
    sampled contexts ("observed"); else the TRM-Max threshold ("assumed"); else the max k2 over
    the accepted sampled tokens ("assumed", an estimate). eps = min(1, sqrt(delta/2)) (Pinsker),
    dkl_seq = T delta (worst case), dtv_seq = min(1, sqrt(dkl_seq/2)), Dbar_t = eps (worst case),
    unless given. ``bound.unified`` equals ``evaluate_bounds(certificate_bound_inputs(c))["unified"]``.
    """
    lr, valid, B, width, T_bound = _prepare_batch(log_prob, rollout_log_prob, response_mask, T, "T")
    if T_bound < width and bool(valid[:, T_bound:].any()):
        raise ValueError(f"T = {T_bound} is shorter than a response in the batch (padded width {width})")
    for name, v in (("delta", delta), ("delta_avg", delta_avg), ("dkl_seq", dkl_seq)):
        if v is not None:
            check_divergence(name, v)
    for name, v in (("eps", eps), ("dtv_seq", dtv_seq)):
        if v is not None:
            check_tv(name, v)

    if exact_kl is not None:
        _check_exact_kl(lr, valid, exact_kl)  # also when no mask will read it
    mode = {(True, True): "max+avg", (True, False): "max", (False, True): "avg"}.get(
        (delta is not None, delta_avg is not None)
    )
    if mode is None:
        keep = torch.ones(B, dtype=torch.bool)
    else:
        _, keep, _ = trm_mask(
            *split_log_ratio(lr),
            valid,
            mode=mode,
            max_threshold=delta,
            avg_threshold=delta_avg,
            max_estimator=max_estimator,
            avg_estimator=avg_estimator,
            exact_kl=exact_kl,
            return_metrics=False,
        )
    nonempty = valid.any(dim=-1)
    if not bool(nonempty.any()):
        raise ValueError("empty batch: response_mask has no valid token; nothing to certify")
    acc_rows = keep & nonempty
    acc_tok = valid & keep.unsqueeze(-1)
    lengths = valid.sum(dim=-1).numpy()
    n_nonempty = int(nonempty.sum())

    # observed divergences
    lr64 = lr.to(torch.float64)
    if exact_kl is not None:
        kl_t, _ = as_float_tensor(exact_kl, "exact_kl")
        kl_t = torch.where(valid, kl_t.to(torch.float64), 0.0)
        kind = "exact"
        kl_note = "max over sampled contexts of the exact token KL(pi_roll || pi_theta) from full logits"
    else:
        kl_t = 0.5 * torch.clamp(lr64, -_CLAMP, _CLAMP) ** 2
        kind = "estimate"
        kl_note = (
            "max over sampled tokens of k2 = (log rho)^2 / 2: a single-sample statistic, NOT the "
            "token KL; it neither bounds nor is bounded by the KL at that context"
        )
    kl_all, kl_acc = _masked_max(kl_t, valid), _masked_max(kl_t, acc_tok)
    clamped = int((valid & (lr64.abs() > _CLAMP)).sum())
    k2_true_max = _masked_max(0.5 * lr64**2, valid)  # +inf where log_prob = -inf
    tv_half = 0.5 * (torch.exp(torch.clamp(lr64, -_CLAMP, _CLAMP)) - 1.0).abs()
    tv_mean = float(tv_half[valid].mean()) if bool(valid.any()) else None

    # bound inputs and their provenance
    n_tok = int(valid.sum())
    if exact_kl is not None and kl_all is not None:
        d_bound = kl_all
        d_src = (
            f"observed: max exact token KL over all {n_tok} sampled contexts of the batch, accepted or "
            "not (rejecting sequences does not make the policies closer; the smallest delta the batch "
            "does not contradict); ASSUMED to hold at every reachable context (the batch sees only "
            "sampled ones)"
        )
    elif delta is not None:
        d_bound = float(delta)
        d_src = (
            "assumed: the TRM-Max threshold delta, taken to bound the token KL at every reachable context"
            + ("" if exact_kl is not None else "; the mask tested k2 on sampled tokens, not the token KL")
        )
    elif kl_all is not None:
        d_bound = kl_all
        d_src = (
            f"assumed: max {'exact KL' if exact_kl is not None else 'k2 (an estimate, not a bound)'} over "
            "sampled tokens, used as the global token-KL bound"
        )
    else:
        raise ValueError("response_mask has no valid token and no delta was given: nothing to certify")
    if not math.isfinite(d_bound):
        d_bound = math.inf
    user = "assumed: given by the user; not controlled by TRM"
    given = {"delta": d_src, "eps": user, "dkl_seq": user, "dtv_seq": user}
    if dkl_seq is None and exact_kl is not None:
        dkl_seq = float((kl_t.sum(-1))[nonempty].mean())  # E_roll[sum_t KL(c_t)] = D_KL^seq, unbiased
        given["dkl_seq"] = (
            f"estimate: mean over the {n_nonempty} sequences of sum_t exact token KL (unbiased for "
            "D_KL^seq under iid sampling from pi_roll; an estimate, not a bound)"
        )
    inputs = BoundInputs.from_partial(
        T_bound,
        d_bound,
        eps=eps,
        dkl_seq=dkl_seq,
        dtv_seq=dtv_seq,
        source=given,
        derived_notes=_NOT_CONTROLLED,
    )
    bounds = evaluate_bounds(inputs)

    acceptance = float(acc_rows.sum()) / n_nonempty
    statistic = "exact_kl" if exact_kl is not None else f"{max_estimator}/{avg_estimator} of log rho"
    guaranteed = []
    n_acc = int(acc_rows.sum())
    if mode is not None and n_acc == 0:
        guaranteed.append("No sequence was accepted: the mask guarantees nothing about this batch.")
    elif mode in ("max", "max+avg"):
        guaranteed.append(
            f"Every accepted sequence has {'exact token KL' if exact_kl is not None else 'k2'} <= "
            f"{delta:g} at each of its own sampled contexts (a fact about this batch)."
        )
    if mode in ("avg", "max+avg") and n_acc > 0:
        guaranteed.append(
            f"Every accepted sequence has mean {'exact token KL' if exact_kl is not None else avg_estimator}"
            f" <= {delta_avg:g} over its own tokens (a fact about this batch)."
        )
    if mode is None:
        guaranteed.append("No mask was applied (no delta or delta_avg): every sequence is accepted.")
    guaranteed.append(
        f"CONDITIONAL: IF the token KL(pi_roll || pi_theta) is <= delta = {d_bound:.6g} at EVERY "
        "reachable context "
        f"and eps, dkl_seq, dtv_seq, Dbar_t are as listed, THEN |J(theta) - J(roll) - L'(theta)| <= "
        f"B* = {bounds['unified']:.6g} (unified bound, docs/theory.md section 5, horizon T = {T_bound})."
    )
    not_guaranteed = [
        f"Acceptance ({acceptance:.1%}) is not evidence that the token KL is <= delta at every reachable "
        "context: the mask sees only sampled contexts, and unsampled ones may violate it "
        "(docs/theory.md section 10, C18).",
        "eps, dkl_seq, dtv_seq and Dbar_t are not controlled by TRM (docs/theory.md section 9); here they are "
        "Pinsker / worst-case consequences of delta (or user assumptions), not measurements.",
        "B* is an upper bound on |Error|, not its value; it says nothing about the reward itself.",
    ]
    if exact_kl is None:
        not_guaranteed.append(
            "Without exact_kl the mask tests sample statistics (k2, k3) of the sampled tokens; "
            "k2 <= delta on those tokens does not imply token KL <= delta at those contexts."
        )
    return {
        "batch": {
            "n_sequences": B,
            "n_nonempty": n_nonempty,
            "n_tokens": int(valid.sum()),
            "padded_width": width,
            "max_length": int(lengths.max(initial=0)),
        },
        "mask": {
            "mode": mode or "none",
            "delta": delta,
            "delta_avg": delta_avg,
            "statistic": statistic,
        },
        "acceptance": {
            "overall": acceptance,
            "n_accepted": int(acc_rows.sum()),
            "by_length": _length_buckets(lengths, acc_rows.numpy()),
        },
        "observed": {
            "token_max_kl": {"all": kl_all, "accepted": kl_acc, "kind": kind, "note": kl_note},
            "token_max_tv": {
                "all": None if kl_all is None or kind != "exact" else min(1.0, math.sqrt(kl_all / 2.0)),
                "accepted": None if kl_acc is None or kind != "exact" else min(1.0, math.sqrt(kl_acc / 2.0)),
                "kind": "pinsker upper bound from the exact KL" if kind == "exact" else "not computable",
                "note": "token TV needs full distributions; from exact KL only Pinsker's min(1, sqrt(KL/2))",
            },
            "token_mean_tv_estimate": tv_mean,
            "token_mean_tv_note": "mean over sampled tokens of |rho_t - 1| / 2, unbiased for the mean token "
            "TV over contexts visited by pi_roll (E_roll|rho - 1| = 2 TV); an estimate, not a bound",
            "log_ppl_gap": {
                "all": _log_ppl_gap(lr, valid, nonempty),
                "accepted": _log_ppl_gap(lr, valid, acc_rows),
            },
        },
        "bound": {
            "inputs": {
                "T": inputs.T,
                "eps": inputs.eps,
                "delta": inputs.delta,
                "dkl_seq": inputs.dkl_seq,
                "dtv_seq": inputs.dtv_seq,
                "dbar": inputs.eps,
                "sources": dict(inputs.sources),
            },
            "unified": bounds["unified"],
            "all": bounds,
        },
        "guaranteed": guaranteed,
        "not_guaranteed": not_guaranteed,
        "warnings": _warnings(mode, acceptance, clamped, kl_all, k2_true_max, exact_kl is None),
    }


def _prepare_batch(log_prob, rollout_log_prob, response_mask, T, name: str):
    """Validated (log_ratio (B, T), valid (B, T) bool, B, width, horizon); horizon = T or the width."""
    lr, valid, _m, _ = prepare_inputs(log_prob, rollout_log_prob, response_mask)
    _check_log_probs(log_prob, rollout_log_prob, valid)
    B, width = lr.shape
    T = width if T is None else T
    if isinstance(T, bool) or not float(T).is_integer() or T < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {T!r}")
    return lr, valid, B, width, int(T)


_CLAMP = SAFETY_BOUND  # verl's clamp on log rho before k2/k3 (the mask contract of trm_bounds.masks)


def _check_log_probs(log_prob, rollout_log_prob, valid: torch.Tensor) -> None:
    """A log-probability is <= 0: ValueError naming the array when one at a valid position is > 0."""
    for name, x in (("log_prob", log_prob), ("rollout_log_prob", rollout_log_prob)):
        t, _ = as_float_tensor(x, name)
        bad = valid & (t > 0)
        if bool(bad.any()):
            raise ValueError(
                f"{name} has log-probabilities > 0 at {int(bad.sum())} valid positions "
                f"(max {float(t[bad].max()):g}); pass log-probs of the sampled tokens, not logits"
            )


def _warnings(mode, acceptance, clamped, k2_clamped_max, k2_true_max, k2_used) -> list[str]:
    """Plain warnings about the batch and the mask (empty list when there is nothing to say)."""
    out = []
    if mode is not None and acceptance == 0.0:
        out.append("acceptance is 0: every sequence is rejected; the masked update is empty")
    elif mode is not None and acceptance < 0.1:
        out.append(f"acceptance is {acceptance:.1%} (< 10%): the mask discards almost the whole batch")
    if clamped:
        out.append(
            f"{clamped} sampled log-ratios exceed +-{_CLAMP:g} and were clamped (verl's safety bound) "
            "for k2/k3: "
            f"max k2 after the clamp {k2_clamped_max if k2_used else 'n/a'}, true max k2 {k2_true_max:g}"
        )
    return out


def certificate_bound_inputs(cert: dict[str, Any]) -> BoundInputs:
    """Rebuild the `BoundInputs` a certificate reports (Dbar_t constant, as reported)."""
    i = cert["bound"]["inputs"]
    return BoundInputs(
        T=i["T"],
        eps=i["eps"],
        delta=i["delta"],
        dkl_seq=i["dkl_seq"],
        dtv_seq=i["dtv_seq"],
        dbar=float(i["dbar"]),  # Dbar_t = this for every t (a uniform view, as certify built it)
        sources=i["sources"],
    )


# --------------------------------------------------------------------------- sample certificate
def sample_certificate(
    log_prob,
    rollout_log_prob,
    response_mask,
    *,
    confidence: float = 0.95,
    group_id=None,
    horizon: int | None = None,
    method: str = DEFAULT_METHOD,
) -> dict[str, Any]:
    """A certificate from the batch alone: (1 - alpha) upper confidence bounds on sum_t Dbar_t and
    D_TV^seq and the certified bounds on |Error| built from them (docs/certify.md proves each).

        S_i = sum_t (1 - rho_t)_+ over the response mask,  E_roll[S] = sum_t Dbar_t,  S in [0, T_max]
        D_i = (1 - prod_t rho_t)_+,                        E_roll[D] = D_TV^seq,        D in [0, 1]
        linear_dbar = 4 U_S (|R| <= 1),  linear_dbar_refined = 2 U_S (max R - min R <= 1)

    Args:
      log_prob, rollout_log_prob: (B, T) sampled-token log-probs under pi_theta and pi_roll
        (log_prob may be -inf: rho = 0; neither may be > 0 at a valid position).
      response_mask: (B, T) 0/1. Rows without a valid token are not units (padding rows).
      confidence: 1 - alpha in (0, 1).
      group_id: optional (B,) ids; the responses sharing an id form one iid unit whose value is
        their mean (GRPO groups: responses to one prompt are not independent of each other).
      horizon: T_max, the largest possible response length fixed before sampling (the
        generation budget); default the padded width response_mask.shape[1].
      method: confidence bound, one of `trm_bounds.confidence.METHODS`.

    Returns:
      JSON-ready dict (docs/formats.md "Sample certificate"): confidence, units, method,
      sum_dbar / dtv_seq {"estimate", "upper", "range", "by_method"}, bounds {linear_dbar,
      linear_dbar_refined}, bound (the smallest), bound_name, second_order {"estimate",
      "interval", "kind"}, per_token_mean (estimate of the mean (1 - rho)_+ per token),
      horizon, n_sequences, n_tokens, assumptions, statement.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    lr, valid, B, width, T_max = _prepare_batch(log_prob, rollout_log_prob, response_mask, horizon, "horizon")
    lengths = valid.sum(-1).numpy()
    if lengths.max(initial=0) > T_max:
        raise ValueError(f"horizon = {T_max} is shorter than a response in the batch ({int(lengths.max())})")
    stats = sequence_statistics(lr.to(torch.float64).numpy(), valid.numpy())
    rows = lengths > 0
    if not rows.any():
        raise ValueError("empty batch: response_mask has no valid token; nothing to certify")
    units = _unit_means(stats, rows, group_id, B)
    n = len(units["S"])
    if method == "bernstein" and n < 2:
        raise ValueError(f"method 'bernstein' needs at least 2 units, got {n}")
    alpha = 1.0 - float(confidence)

    def entry(x, hi, what):
        by = {
            m: float(upper_confidence_bound(x, confidence, hi=hi, method=m))
            for m in METHODS
            if not (m == "bernstein" and n < 2)
        }
        return {
            "estimate": float(x.mean()),
            "upper": by[method],
            "range": [0.0, float(hi)],
            "by_method": by,
            "is": what,
        }

    sum_dbar = entry(units["S"], float(T_max), "sum_t Dbar_t = E_roll[sum_t (1 - rho_t)_+]")
    dtv_seq = entry(units["D"], 1.0, "D_TV^seq = E_roll[(1 - prod_t rho_t)_+]")
    U = sum_dbar["upper"]
    bounds = {"linear_dbar": 4.0 * U, "linear_dbar_refined": 2.0 * U}
    Z = units["Z"]
    z_est = float(Z.mean())
    half = _normal_quantile(confidence) * float(Z.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    n_tok = int(lengths.sum())
    return {
        "confidence": float(confidence),
        "alpha": alpha,
        "units": n,
        "unit": "prompt group" if group_id is not None else "sequence",
        "method": method,
        "n_sequences": int(rows.sum()),
        "n_tokens": n_tok,
        "horizon": T_max,
        "sum_dbar": sum_dbar,
        "dtv_seq": dtv_seq,
        "bounds": bounds,
        "bound": bounds["linear_dbar_refined"],
        "bound_name": "linear_dbar_refined",
        "per_token_mean": float(stats["S"][rows].sum() / n_tok),
        "second_order": {
            "estimate": z_est,
            "interval": [max(0.0, z_est - half), z_est + half] if math.isfinite(z_est) else [z_est, z_est],
            "kind": (
                "estimate of E_roll[Z] with an approximate (CLT, normal) interval: NOT a guarantee "
                "(|rho - 1| is unbounded above, so no finite-sample bound exists without a ratio cap)"
            ),
            "max_rho": float(np.exp(np.max(np.where(valid.numpy(), lr.to(torch.float64).numpy(), -np.inf)))),
        },
        "assumptions": [
            "units (sequences, or prompt groups with group_id) are iid draws from pi_roll, in an order "
            "that does not depend on their values (betting permutes them with a fixed seed anyway)",
            f"every response has at most horizon = {T_max} tokens, fixed before sampling "
            f"(S_i in [0, {T_max}])",
            "after a response ends both policies stay in an absorbing end state (positions outside the "
            "mask have rho = 1), so variable lengths change nothing in the identities",
            "linear_dbar_refined = 2 U needs rewards with max R - min R <= 1 (e.g. R in [0, 1]); "
            "linear_dbar = 4 U needs |R| <= 1 (e.g. R in [-1, 1])",
            "the log-probs are those of the policies as sampled: pi_roll the sampler, pi_theta the trainer",
            f"each upper holds with probability >= {confidence:g} on its own; the sum_dbar and dtv_seq "
            f"uppers hold together with probability >= {1 - 2 * alpha:g} (union bound)",
        ],
        "statement": (
            f"with probability >= {confidence:.0%} over this batch, |J(theta) - J(roll) - L'(theta)| <= "
            f"{bounds['linear_dbar_refined']:.4g} (= 2 x the upper bound on sum_t Dbar_t; "
            "rewards of range <= 1)"
        ),
    }


def _unit_means(stats: dict[str, np.ndarray], rows: np.ndarray, group_id, B: int) -> dict[str, np.ndarray]:
    """Per-unit values (mean over the unit's non-empty responses) of S, D, Z: (n_units,) each."""
    if group_id is None:
        return {k: stats[k][rows] for k in ("S", "D", "Z")}
    g = np.asarray(group_id.cpu() if isinstance(group_id, torch.Tensor) else group_id)
    if g.shape != (B,):
        raise ValueError(f"group_id must have shape ({B},), got {g.shape}")
    if g.dtype.kind not in "iub":
        raise ValueError(f"group_id must hold integers, got dtype {g.dtype}")
    _, inv = np.unique(g[rows], return_inverse=True)
    count = np.bincount(inv)
    return {k: np.bincount(inv, weights=stats[k][rows]) / count for k in ("S", "D", "Z")}


def _normal_quantile(p: float) -> float:
    """Phi^-1(p) (scipy), for the approximate second-order interval."""
    from scipy.stats import norm

    return float(norm.ppf(p))


def certificate_targets(sample_cert: dict[str, Any], target: float = 0.1) -> dict[str, Any]:
    """What would make the certified bound X = 2 U_S fall below `target` (ignoring sampling slack).

    X ~ 2 T m, m the mean (1 - rho)_+ per token: needed per-token mean m* = target / (2 T) at
    this horizon T; the longest horizon at today's per-token mean m^ is floor(target / (2 m^)).
    Both are point estimates from this batch, not guarantees.
    """
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise ValueError(f"target must be a finite number > 0, got {target!r}")
    T = sample_cert["horizon"]
    m_hat = sample_cert["per_token_mean"]
    return {
        "target": float(target),
        "per_token_mean_needed": target / (2.0 * T),
        "per_token_mean_now": m_hat,
        "longest_T_now": math.inf if m_hat == 0 else int(target // (2.0 * m_hat)),
        "met": sample_cert["bound"] <= target,
    }
