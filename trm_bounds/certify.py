"""What a TRM mask certifies about a batch, and what it does not (THEORY.md sections 7, 9, 10 C18).

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

from ._validate import check_divergence, check_tv
from .bounds import BoundInputs, evaluate_bounds
from .masks import trm_mask
from .masks.inputs import as_float_tensor, prepare_inputs

__all__ = ["certify", "save_logprobs", "load_logprobs", "certificate_bound_inputs", "LOGPROB_KEYS"]

LOGPROB_KEYS = ("log_prob", "rollout_log_prob", "response_mask")  # required; "exact_kl" optional
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
        trm_mask(
            lr,
            torch.zeros_like(lr),
            valid,
            mode="max",
            max_threshold=0.0,
            exact_kl=exact_kl,
            return_metrics=False,
        )  # validates exact_kl (shape, NaN, sign)
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


def _to_numpy(x, name: str, floating: bool = True) -> np.ndarray:
    if floating:
        t, _ = as_float_tensor(x, name)  # half -> float32
        return t.cpu().numpy()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def load_logprobs(path) -> dict[str, np.ndarray]:
    """Read a batch written by `save_logprobs` (or dumped from verl/TRL with the same keys)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"logprobs: cannot read {path}: {exc}") from exc
    for key in LOGPROB_KEYS:
        if key not in data:
            raise ValueError(f"logprobs: {path} has no array {key!r} (has {', '.join(data) or 'none'})")
    return {k: data[k] for k in (*LOGPROB_KEYS, "exact_kl") if k in data}


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
    lr, valid, m, _ = prepare_inputs(log_prob, rollout_log_prob, response_mask)
    B, width = lr.shape
    T_bound = width if T is None else T
    if isinstance(T_bound, bool) or not float(T_bound).is_integer() or T_bound < 1:
        raise ValueError(f"T must be an integer >= 1, got {T_bound!r}")
    T_bound = int(T_bound)
    if T_bound < width and bool(valid[:, T_bound:].any()):
        raise ValueError(f"T = {T_bound} is shorter than a response in the batch (padded width {width})")
    for name, v in (("delta", delta), ("delta_avg", delta_avg), ("dkl_seq", dkl_seq)):
        if v is not None:
            check_divergence(name, v)
    for name, v in (("eps", eps), ("dtv_seq", dtv_seq)):
        if v is not None:
            check_tv(name, v)

    mode = {(True, True): "max+avg", (True, False): "max", (False, True): "avg"}.get(
        (delta is not None, delta_avg is not None)
    )
    if mode is None:
        keep = torch.ones(B, dtype=torch.bool)
    else:
        _, keep, _ = trm_mask(
            lr,
            torch.zeros_like(lr),
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
        kl_t = 0.5 * torch.clamp(lr64, -20.0, 20.0) ** 2
        kind = "estimate"
        kl_note = (
            "max over sampled tokens of k2 = (log rho)^2 / 2: a single-sample statistic, NOT the "
            "token KL; it neither bounds nor is bounded by the KL at that context"
        )
    kl_all, kl_acc = _masked_max(kl_t, valid), _masked_max(kl_t, acc_tok)
    tv_half = 0.5 * (torch.exp(torch.clamp(lr64, -20.0, 20.0)) - 1.0).abs()
    tv_mean = float(tv_half[valid].mean()) if bool(valid.any()) else None

    # bound inputs and their provenance
    n_acc_tok = int(acc_tok.sum())
    if exact_kl is not None and kl_acc is not None:
        d_bound = kl_acc
        d_src = (
            f"observed: max exact token KL over the {n_acc_tok} sampled contexts of the accepted "
            "sequences; ASSUMED to hold at every reachable context (TRM checks only sampled ones)"
        )
    elif delta is not None:
        d_bound = float(delta)
        d_src = (
            "assumed: the TRM-Max threshold delta, taken to bound the token KL at every reachable context"
            + ("" if exact_kl is not None else "; the mask tested k2 on sampled tokens, not the token KL")
        )
    elif kl_acc is not None or kl_all is not None:
        d_bound = kl_acc if kl_acc is not None else kl_all
        d_src = (
            f"assumed: max {'exact KL' if exact_kl is not None else 'k2 (an estimate, not a bound)'} over "
            "sampled tokens, used as the global token-KL bound"
        )
    else:
        raise ValueError("response_mask has no valid token and no delta was given: nothing to certify")
    if not math.isfinite(d_bound):
        d_bound = math.inf
    user = "assumed: given by the user; not controlled by TRM"
    inputs = BoundInputs.from_partial(
        T_bound,
        d_bound,
        eps=eps,
        dkl_seq=dkl_seq,
        dtv_seq=dtv_seq,
        source={"delta": d_src, "eps": user, "dkl_seq": user, "dtv_seq": user},
        derived_notes=_NOT_CONTROLLED,
    )
    bounds = evaluate_bounds(inputs)

    acceptance = float(acc_rows.sum()) / n_nonempty if n_nonempty else 1.0
    statistic = "exact_kl" if exact_kl is not None else f"{max_estimator}/{avg_estimator} of log rho"
    guaranteed = []
    if mode in ("max", "max+avg"):
        guaranteed.append(
            f"Every accepted sequence has {'exact token KL' if exact_kl is not None else 'k2'} <= "
            f"{delta:g} at each of its own sampled contexts (a fact about this batch)."
        )
    if mode in ("avg", "max+avg"):
        guaranteed.append(
            f"Every accepted sequence has mean {'exact token KL' if exact_kl is not None else avg_estimator}"
            f" <= {delta_avg:g} over its own tokens (a fact about this batch)."
        )
    if mode is None:
        guaranteed.append("No mask was applied (no delta or delta_avg): every sequence is accepted.")
    guaranteed.append(
        f"IF the token KL(pi_roll || pi_theta) is <= delta = {d_bound:.6g} at EVERY reachable context "
        f"and eps, dkl_seq, dtv_seq, Dbar_t are as listed, THEN |J(theta) - J(roll) - L'(theta)| <= "
        f"B* = {bounds['unified']:.6g} (unified bound, THEORY.md section 5, horizon T = {T_bound})."
    )
    not_guaranteed = [
        f"Acceptance ({acceptance:.1%}) is not evidence that the token KL is <= delta at every reachable "
        "context: the mask sees only sampled contexts, and unsampled ones may violate it "
        "(THEORY.md section 10 C18).",
        "eps, dkl_seq, dtv_seq and Dbar_t are not controlled by TRM (THEORY.md section 9); here they are "
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
    }


def certificate_bound_inputs(cert: dict[str, Any]) -> BoundInputs:
    """Rebuild the `BoundInputs` a certificate reports (Dbar_t constant, as reported)."""
    i = cert["bound"]["inputs"]
    return BoundInputs(
        T=i["T"],
        eps=i["eps"],
        delta=i["delta"],
        dkl_seq=i["dkl_seq"],
        dtv_seq=i["dtv_seq"],
        dbar=np.full(int(i["T"]), float(i["dbar"])),
        sources=i["sources"],
    )
