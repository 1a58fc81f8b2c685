"""Input checking for the sequence masks: (B, T) arrays in, validated torch tensors out.

One set of rules for every function of `trm_bounds.masks` (and for `trm_bounds.certify`):
- numpy or torch in; ``to_output`` gives numpy back when numpy came in. Inputs are detached
  (masks are not differentiable).
- ``compute_dtype`` (``COMPUTE_DTYPES``): "float32" (the default) computes float16/bfloat16 inputs
  in float32, float32 stays float32 (what trainers have) and float64 stays float64: accurate
  decisions. "input" computes in the inputs' own dtype with the framework's own arithmetic, as verl
  and TRL do: bfloat16 in, bfloat16 arithmetic, bit for bit with the framework (its k3 can even be
  negative in bf16), weights returned in the framework's dtype. Use it to reproduce a framework's
  logged numbers; use the default to decide which samples to keep.
- ``response_mask`` holds only 0/1 (any dtype, bool included).
- NaN or +inf at a valid position (``response_mask = 1``) raises ``ValueError`` naming the argument;
  values at padding are ignored (padding may hold anything). ``-inf`` in ``rollout_log_prob`` at a
  valid position is refused (the rollout cannot sample a token of probability 0, and
  ``-inf - -inf`` would be NaN); ``-inf`` in ``log_prob`` means pi_theta gives the sampled token
  probability 0, log rho = -inf (the verl-compatible code clamps it to -SAFETY_BOUND).
- ``log_prob`` and ``rollout_log_prob`` are log-probabilities: a value > 0 at a valid position (a
  probability above 1, e.g. logits passed by mistake) raises ``ValueError`` naming the argument.
  No tolerance: log-softmax never rounds above 0 in any float format.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .._validate import check_nonneg_finite

__all__ = [
    "as_tensor",
    "as_float_tensor",
    "check_same_shape_2d",
    "valid_positions",
    "first_index",
    "check_values",
    "check_log_probs",
    "split_log_ratio",
    "check_choice",
    "check_threshold",
    "COMPUTE_DTYPES",
    "check_compute_dtype",
    "compute_dtype",
    "to_output",
    "prepare_inputs",
]


def as_tensor(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    """(detached tensor, was_numpy); anything numpy can read becomes a tensor without a copy
    (a read-only array, e.g. from a loaded file or np.broadcast_to, is copied: torch cannot share it)."""
    if isinstance(x, torch.Tensor):
        return x.detach(), False
    try:
        a = np.ascontiguousarray(np.asarray(x))
        return torch.from_numpy(a if a.flags.writeable else a.copy()), True
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from exc


COMPUTE_DTYPES: dict[str, str] = {
    "float32": "half precision computed in float32, float32/float64 kept (accurate; the default)",
    "input": "the inputs' own dtype and the framework's arithmetic (bit for bit with verl/TRL in bf16)",
}


def check_compute_dtype(compute_dtype: Any) -> str:
    """`compute_dtype` is one of COMPUTE_DTYPES (ValueError naming it otherwise)."""
    check_choice("compute_dtype", compute_dtype, tuple(COMPUTE_DTYPES))
    return compute_dtype


def as_float_tensor(x: Any, name: str, compute_dtype: str = "float32") -> tuple[torch.Tensor, bool]:
    """(floating tensor, was_numpy); float16/bfloat16 promoted to float32 unless compute_dtype="input"."""
    t, was_numpy = as_tensor(x, name)
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point array, got dtype {t.dtype}")
    if compute_dtype != "input" and t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t, was_numpy


def check_same_shape_2d(ref: torch.Tensor, ref_name: str, **others: torch.Tensor) -> None:
    """`ref` is (B, T) and every keyword tensor has its shape; the error names both arguments."""
    if ref.ndim != 2:
        raise ValueError(f"{ref_name} must have shape (B, T), got {tuple(ref.shape)}")
    for name, t in others.items():
        if tuple(t.shape) != tuple(ref.shape):
            raise ValueError(f"{name} has shape {tuple(t.shape)} but {ref_name} has {tuple(ref.shape)}")


def valid_positions(mask: torch.Tensor) -> torch.Tensor:
    """Boolean (B, T) of valid positions (mask = 1); refuses NaN and anything but 0/1."""
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() and torch.isnan(mask).any():
        raise ValueError("response_mask contains NaN")
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError("response_mask must hold only 0 and 1")
    return mask != 0


def first_index(bad: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True entry of `bad` (for error messages)."""
    return tuple(int(i) for i in torch.nonzero(bad)[0])


def check_values(name: str, t: torch.Tensor, valid: torch.Tensor, *, allow_neg_inf: bool) -> None:
    """NaN / +inf (and -inf unless allowed) at valid positions raise ValueError naming `name`."""
    bad = torch.isnan(t) & valid
    if bad.any():
        raise ValueError(f"{name} contains NaN at a valid position {first_index(bad)}")
    bad = (t == math.inf) & valid
    if bad.any():
        raise ValueError(f"{name} contains +inf at a valid position {first_index(bad)}")
    if not allow_neg_inf:
        bad = (t == -math.inf) & valid
        if bad.any():
            raise ValueError(
                f"{name} contains -inf at a valid position {first_index(bad)}: a sampled token "
                "cannot have rollout probability 0"
            )


def check_log_probs(name: str, t: torch.Tensor, valid: torch.Tensor) -> None:
    """A log-probability is <= 0: ValueError naming `name` when one at a valid position is > 0."""
    bad = (t > 0) & valid
    if bad.any():
        raise ValueError(
            f"{name} has log-probabilities > 0 (probabilities above 1) at {int(bad.sum())} valid "
            f"positions, first {first_index(bad)} (max {float(t[bad].max()):g}); pass the log-probs of the "
            "sampled tokens, not logits"
        )


def split_log_ratio(log_ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_prob, rollout_log_prob), both <= 0, whose difference is exactly `log_ratio`.

        log_prob = min(log rho, 0),  rollout_log_prob = -max(log rho, 0)

    (one of the two is 0, so the subtraction is exact): how code that holds only log rho calls
    a mask, which refuses log-probabilities > 0.
    """
    return log_ratio.clamp(max=0.0), -log_ratio.clamp(min=0.0)


def check_choice(name: str, value: Any, choices: Iterable) -> None:
    """ValueError listing the choices unless `value` is one of them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_threshold(name: str, value: Any) -> float:
    """A required threshold: finite and >= 0 (None raises '<name> is required')."""
    if value is None:
        raise ValueError(f"{name} is required")
    return float(check_nonneg_finite(name, value))


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def to_output(t: torch.Tensor, was_numpy: bool):
    """numpy when the caller gave numpy, else the tensor itself."""
    return t.cpu().numpy() if was_numpy else t


def prepare_inputs(log_prob, rollout_log_prob, response_mask, compute_dtype: str = "float32"):
    """Validate a (log_prob, rollout_log_prob, response_mask) triple, each (B, T).

        log_ratio = log_prob - rollout_log_prob = log rho  at valid positions, 0 at padding

    Returns (log_ratio (B, T) in the promoted float dtype (see ``compute_dtype``), valid (B, T)
    bool, response_mask as a tensor in its own dtype, was_numpy of log_prob).
    """
    check_compute_dtype(compute_dtype)
    lp, was_numpy = as_float_tensor(log_prob, "log_prob", compute_dtype)
    rlp, _ = as_float_tensor(rollout_log_prob, "rollout_log_prob", compute_dtype)
    m, _ = as_tensor(response_mask, "response_mask")
    check_same_shape_2d(lp, "log_prob", rollout_log_prob=rlp, response_mask=m)
    valid = valid_positions(m)
    check_values("log_prob", lp, valid, allow_neg_inf=True)
    check_values("rollout_log_prob", rlp, valid, allow_neg_inf=False)
    check_log_probs("log_prob", lp, valid)
    check_log_probs("rollout_log_prob", rlp, valid)
    dtype = torch.promote_types(lp.dtype, rlp.dtype)
    lr = torch.where(valid, lp.to(dtype) - rlp.to(dtype), torch.zeros((), dtype=dtype))
    return lr, valid, m, was_numpy
