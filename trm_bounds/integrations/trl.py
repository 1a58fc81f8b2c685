"""TRM in TRL's GRPO trainer: ``TRMGRPOTrainer`` applies any ``trm_bounds.masks.METHODS`` rule.

After TRL has generated and scored a batch (``_generate_and_score_completions``), the trainer has

    old_log_prob (B, T)      log pi_theta_old(y_t | c_t), the training engine's log-probs
    rollout_log_prob (B, T)  log pi_roll(y_t | c_t): vLLM's ``sampling_per_token_logps`` when TRL
                             used vLLM, else the sampled tokens re-scored under
                             ``torch.autocast(rollout_dtype)`` (a bf16 rollout engine, simulated)
    completion_mask (B, T)

and computes ``res = masks.sequence_mask(method, old_log_prob, rollout_log_prob, completion_mask,
**params)``. The mask and IS weights enter the loss as per-token advantages
``A_it = A_i * w_it`` with w = res.weights (0 on rejected tokens): TRL's per-token loss is
positively homogeneous in A (PPO-clip: min(r A w, clip(r) A w) = w min(r A, clip(r) A) for w >= 0),
so this multiplies each token's loss by w and keeps TRL's denominator: the TRM paper's
"normalise by the whole batch" (``masked_policy_loss(normalize="total")``). Advantages are
recomputed over the kept samples of each prompt group (``masks.group_advantages``) when
``regroup=True``.

Logged each step (TRL's ``_metrics``, so they appear in ``trainer.state.log_history``):
``trm/<method>/acceptance``, ``trm/<method>/token_masked_fraction``, the rule's own metrics,
``trm/certificate/sum_dbar_upper``, ``trm/certificate/dtv_seq_upper``, ``trm/certificate/bound``
(``trm_bounds.certify.sample_certificate`` at 95%, units = prompt groups; an upper confidence
bound, not a proof) and TRL's ``sampling/sampling_logp_difference/{mean,max}``.
"""

from __future__ import annotations

import torch
from trl import GRPOTrainer

from .. import masks
from ..certify import sample_certificate

__all__ = ["TRMGRPOTrainer"]


class TRMGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with a TRM-family mask on the policy loss.

    Args (keyword, besides GRPOTrainer's):
      trm_method: a key of ``trm_bounds.masks.METHODS`` ("trm-max", "trm-avg", "seq-mis", ...).
      trm_params: the rule's parameters, e.g. {"delta": 0.05} for trm-max.
      rollout_dtype: when TRL did not use vLLM, the dtype the rollout log-probs are recomputed in
        (torch.bfloat16 simulates a bf16 inference engine against fp32 training); None = no
        mismatch (rollout = old log-probs).
      regroup: recompute GRPO advantages over the kept samples of each group (default True).
      certificate_confidence: confidence of the logged sample certificate (None: not logged).
    """

    def __init__(
        self,
        *args,
        trm_method: str = "trm-max",
        trm_params: dict | None = None,
        rollout_dtype: torch.dtype | None = torch.bfloat16,
        regroup: bool = True,
        certificate_confidence: float | None = 0.95,
        **kwargs,
    ):
        if trm_method not in masks.METHODS:
            raise ValueError(f"trm_method must be one of {', '.join(masks.METHODS)}; got {trm_method!r}")
        self.trm_method = trm_method
        self.trm_params = dict(trm_params or {})
        self.rollout_dtype = rollout_dtype
        self.regroup = bool(regroup)
        self.certificate_confidence = certificate_confidence
        super().__init__(*args, **kwargs)

    def _token_logps(self, inputs: dict, dtype: torch.dtype | None) -> torch.Tensor:
        """(B, T) log-probs of the sampled completion tokens under the current model (no grad)."""
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        keep = inputs["completion_ids"].size(1)
        with torch.no_grad():
            if dtype is None:
                lp = self._get_per_token_logps_and_entropies(self.model, ids, attn, keep)[0]
            else:
                with torch.autocast(device_type=ids.device.type, dtype=dtype):
                    lp = self._get_per_token_logps_and_entropies(self.model, ids, attn, keep)[0]
        return lp.float()

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mask = out["completion_mask"]
        old = out.get("old_per_token_logps")
        old = self._token_logps(out, None) if old is None else old
        rollout = out.get("sampling_per_token_logps")
        if rollout is None:
            rollout = old if self.rollout_dtype is None else self._token_logps(out, self.rollout_dtype)
        res = masks.sequence_mask(self.trm_method, old.float(), rollout.float(), mask, **self.trm_params)
        A = out["advantages"]
        A = A if A.dim() == 1 else A[:, 0]
        if self.regroup:
            kept_rows = (res.mask > 0).any(dim=1)
            group_id = torch.arange(A.shape[0], device=A.device) // self.num_generations
            A = self._regrouped(A, group_id, kept_rows)
        out["advantages"] = A.unsqueeze(1) * res.weights.to(A.dtype)
        self._log_trm(res.metrics, old.float(), rollout.float(), mask)
        return out

    def _regrouped(self, A: torch.Tensor, group_id: torch.Tensor, kept_rows: torch.Tensor) -> torch.Tensor:
        """GRPO advantages recomputed over kept rows, from the rewards TRL logged for this batch."""
        rewards = getattr(self, "_trm_last_rewards", None)
        if rewards is None or rewards.shape != A.shape:
            return torch.where(kept_rows, A, torch.zeros_like(A))
        kind = "grpo" if self.scale_rewards != "none" else "drgrpo"
        return masks.group_advantages(rewards, group_id, kept_rows, kind).to(A.dtype)

    def _calculate_rewards(self, *args, **kwargs):
        """TRL's per-function rewards (B, n_funcs); their weighted sum is kept for ``regroup``."""
        per_func = super()._calculate_rewards(*args, **kwargs)
        w = self.reward_weights.to(per_func.device).unsqueeze(0)
        self._trm_last_rewards = (per_func * w).nansum(dim=1).float()
        return per_func

    def _log_trm(self, metrics: dict, old: torch.Tensor, rollout: torch.Tensor, mask: torch.Tensor) -> None:
        mode = "train" if self.model.training else "eval"
        log = self._metrics[mode]
        m = self.trm_method
        for key in ("acceptance", "token_masked_fraction", "seq_masked_fraction"):
            log[f"trm/{m}/{key}"].append(float(metrics[f"{m}/{key}"]))
        lr = (old - rollout)[mask.bool()]
        if lr.numel():
            log["sampling/sampling_logp_difference/mean"].append(float(lr.abs().mean()))
            log["sampling/sampling_logp_difference/max"].append(float(lr.abs().max()))
        if self.certificate_confidence is not None and mask.any():
            group_id = torch.arange(mask.shape[0]) // self.num_generations
            cert = sample_certificate(
                old.cpu().double(),
                rollout.cpu().double(),
                mask.cpu(),
                confidence=self.certificate_confidence,
                group_id=group_id,
            )
            log["trm/certificate/sum_dbar_upper"].append(float(cert["sum_dbar"]["upper"]))
            log["trm/certificate/dtv_seq_upper"].append(float(cert["dtv_seq"]["upper"]))
            log["trm/certificate/bound"].append(float(cert["bound"]))
