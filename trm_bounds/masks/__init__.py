"""Sequence masks on (B, T) per-token log-probs: TRM and its relatives, verl/TRL compatible.

Conventions (verl's; docs/formats.md "Sequence masks", ECOSYSTEM.md section 4):
- ``log_prob``, ``rollout_log_prob``: (B, T) log pi_theta(y_t | c_t) and log pi_roll(y_t | c_t) of the
  sampled tokens; ``response_mask``: (B, T) of 0/1 (any dtype), zeros after the end of each response.
- ``log_ratio = log_prob - rollout_log_prob = log rho_t`` with ``rho_t = pi_theta / pi_roll``.
- Sample estimators of KL(pi_roll || pi_theta) at c_t (docs/theory.md section 7):
  ``k1 = -log rho``, ``k2 = 1/2 (log rho)^2``, ``k3 = rho - 1 - log rho``.
- Masks come back in ``response_mask``'s dtype; numpy in gives numpy out.

One concept per module; every public name is re-exported here:
- ``inputs``: input checking and dtype rules shared by every function (and by `trm_bounds.certify`).
- ``verl``: exact re-implementations of verl (``rollout_rejection_mask``, ``rollout_is_weights``,
  ``offpolicy_metrics``, ``rollout_correction`` with verl's ``RolloutCorrectionConfig`` presets);
  their clamp (``SAFETY_BOUND``) and ``+ 1e-8`` in masked means are part of
  the compatibility contract, so masks match bit for bit and metrics to float rounding.
- ``trl``: TRL's ``vllm_importance_sampling_ratio`` (with its metrics) and ``off_policy_sequence_mask``.
- ``compute_dtype="float32"`` (default, accurate) or ``"input"`` (the framework's own bf16
  arithmetic, bit for bit) on every framework twin; see ``inputs.COMPUTE_DTYPES``.
- ``estimators``: the per-token estimators k1/k2/k3/|log rho| and per-sequence aggregates.
- ``trm``: ``trm_mask``, the paper's TRM-Max / TRM-Avg / both, from k2/k3 or exact token KL.
- ``registry``: ``sequence_mask(method, ...)`` over ``METHODS`` (TRM variants, LN-TRM, SER,
  geometric mask, token mask, IcePop, sequence TIS/MIS, token IS).
- ``advantages``: ``group_advantages``, group baselines over the kept samples only.
- ``loss``: ``masked_policy_loss`` with verl's four aggregation modes and ``normalize="total"|"kept"``.
Data flows inputs -> estimators / verl -> trm -> registry; trl and loss use inputs only.
"""

from __future__ import annotations

from .advantages import ADVANTAGE_KINDS, group_advantages
from .estimators import sequence_stat, token_divergence
from .inputs import COMPUTE_DTYPES
from .loss import LOSS_AGG_MODES, NORMALIZE_CHOICES, masked_policy_loss
from .registry import METHODS, MaskResult, sequence_mask
from .trl import (
    NAN_POLICIES,
    TRL_IS_MODES,
    off_policy_sequence_mask,
    vllm_importance_sampling_ratio,
    vllm_is_ratio_metrics,
)
from .trm import AVG_ESTIMATORS, MAX_ESTIMATORS, TRM_MODES, trm_mask
from .verl import (
    SAFETY_BOUND,
    VERL_PRESETS,
    VERL_RS_OPTIONS,
    offpolicy_metrics,
    rollout_correction,
    rollout_is_weights,
    rollout_rejection_mask,
    verl_preset,
)

__all__ = [
    "SAFETY_BOUND",
    "VERL_RS_OPTIONS",
    "VERL_PRESETS",
    "COMPUTE_DTYPES",
    "TRL_IS_MODES",
    "NAN_POLICIES",
    "TRM_MODES",
    "MAX_ESTIMATORS",
    "AVG_ESTIMATORS",
    "LOSS_AGG_MODES",
    "NORMALIZE_CHOICES",
    "METHODS",
    "MaskResult",
    "token_divergence",
    "sequence_stat",
    "rollout_rejection_mask",
    "rollout_is_weights",
    "offpolicy_metrics",
    "verl_preset",
    "rollout_correction",
    "vllm_importance_sampling_ratio",
    "vllm_is_ratio_metrics",
    "off_policy_sequence_mask",
    "trm_mask",
    "sequence_mask",
    "masked_policy_loss",
    "ADVANTAGE_KINDS",
    "group_advantages",
]
