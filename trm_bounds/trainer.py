"""A policy-gradient trainer on the exact environment, with the TRM guarantee checked every step.

Each optimizer step (docs/theory.md sections 2, 7, 8):

1. pi_roll = the rollout engine's view of the parameters (`trm_bounds.mismatch`: bf16/fp16 forward,
   MoE router noise, staleness), exact log-prob tree ``(P, V**(t-1), V)`` per level, detached.
   pi_theta_old = the current parameters in float64.
2. Sample ``n_groups`` prompts x ~ P(x) and G responses each from pi_roll (`pair.draw_tokens`, the
   whole batch at once);
   advantages are group-relative (GRPO: ``(R - mean_g) / (std_g + 1e-6)``, the 1e-6 being part of
   GRPO's definition as verl writes it; ``drgrpo``: ``R - mean_g``) or ``R - b`` for a constant b.
3. Mask / weight through ``trm_bounds.masks.sequence_mask`` (the one implementation of every rule)
   on ``log_prob = log pi_theta_old(y_t|c_t)``, ``rollout_log_prob = log pi_roll(y_t|c_t)``; the TRM
   methods take the exact token KL(pi_roll || pi_theta_old) at the sampled contexts (full logits).
4. Loss per token (``rho_t = pi_theta / pi_roll``, differentiable):
     mask methods (TRM, LN-TRM, SER, geometric / token masks, "none"): ``-A * keep_t * rho_t``,
       the paper's masked surrogate L_masked = E_roll[M A sum_t rho_t];
     IS-weighting methods (token IS, sequence TIS/MIS, ...): ``-A * w_t * pi_theta/pi_theta_old``
       with the detached weight w_t of the mask registry (its gradient at theta_old is w_t A grad log pi);
     PPO clipping (a loss, not a mask; bypass mode, ratio against pi_roll as in the paper's Fig. 1):
       ``-min(rho_t A, clip(rho_t, 0.8, 1.28) A)`` (DAPO's clip-higher range).
   Aggregated by ``masks.masked_policy_loss`` (``seq-mean-token-sum``; ``normalize="total"`` divides by
   the whole batch as the paper does, ``"kept"`` by the survivors), one Adam step.
5. Exact checks (`trm_bounds.exact.exact_quantities` of pi_roll against pi_theta_new): J_roll, J_old,
   J_new, L', Error, eps, delta, dkl_seq, dtv_seq, B* (``bound_unified``), ``certified = L' > B*``,
   and ``violation = certified and J_new <= J_roll`` (must never happen: |Error| <= B* is a theorem).

Certified mode (beyond the paper): after the optimizer step, the parameter step is halved up to
``max_backtracks`` times until the certificate holds; if it never does the update is skipped (the
parameters stay pi_theta_old). An applied update is then always certified, so J_new > J_roll exactly.

The training log (docs/formats.md "Training log") is one JSON object per step; `train` returns them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import masks
from .divergences import token_kl
from .exact import exact_J, exact_quantities
from .mismatch import RolloutEngine, parse_mismatch
from .pair import PolicyPair, draw_tokens, token_kl_along, token_logprobs
from .policies import MOE_N_EXPERTS, MOE_ROUTER_SCALE, MOE_TOP_K, POLICIES, make_policy
from .rewards import REWARDS, make_reward

__all__ = [
    "TRAIN_METHODS",
    "ADVANTAGES",
    "TrainMethod",
    "TrainConfig",
    "TrainResult",
    "build_policy",
    "group_advantages",
    "ppo_clip_loss",
    "method_loss",
    "train",
    "summarize",
    "write_run",
    "STEP_KEYS",
]

PPO_CLIP_RANGE = (0.8, 1.28)  # DAPO's clip-higher range [1 - 0.2, 1 + 0.28]


@dataclass(frozen=True)
class TrainMethod:
    """One trainer option: which `masks.METHODS` rule it calls, with which config thresholds, and its loss."""

    mask: str  # key of trm_bounds.masks.METHODS
    params: tuple[tuple[str, str], ...]  # (mask parameter, TrainConfig field it is read from)
    loss: str  # "masked_is" (-A keep rho), "weighted" (-A w pi/pi_old), "ppo_clip"
    exact_kl: bool  # pass the exact token KL from full logits to the mask
    description: str
    fixed: tuple[tuple[str, object], ...] = ()  # constant mask parameters (estimators)


TRAIN_METHODS: dict[str, TrainMethod] = {
    "trm-max": TrainMethod(
        "trm-max",
        (("delta", "max_threshold"),),
        "masked_is",
        True,
        "TRM-Max, exact token KL <= max_threshold",
    ),
    "trm-avg": TrainMethod(
        "trm-avg",
        (("delta_avg", "avg_threshold"),),
        "masked_is",
        True,
        "TRM-Avg, mean exact KL <= avg_threshold",
    ),
    "trm-max+avg": TrainMethod(
        "trm-max+avg",
        (("delta", "max_threshold"), ("delta_avg", "avg_threshold")),
        "masked_is",
        True,
        "TRM-Max and TRM-Avg both, exact token KL",
    ),
    "k2-max": TrainMethod(
        "trm-max",
        (("delta", "max_threshold"),),
        "masked_is",
        False,
        "TRM-Max from samples: max_t k2 <= delta",
        (("estimator", "k2"),),
    ),
    "k3-avg": TrainMethod(
        "trm-avg",
        (("delta_avg", "avg_threshold"),),
        "masked_is",
        False,
        "TRM-Avg from samples: mean_t k3",
        (("estimator", "k3"),),
    ),
    "k2-max+k3-avg": TrainMethod(
        "trm-max+avg",
        (("delta", "max_threshold"), ("delta_avg", "avg_threshold")),
        "masked_is",
        False,
        "both sample-based tests (verl seq_max_k2,seq_mean_k3)",
    ),
    "ln-trm": TrainMethod(
        "ln-trm",
        (("delta_w", "ln_threshold"), ("delta", "max_threshold")),
        "masked_is",
        False,
        "LN-TRM: W / Z(T_i) <= ln_threshold, weights from max_threshold",
    ),
    "ser": TrainMethod("ser", (("delta_ser", "ser_threshold"),), "masked_is", False, "SER: mean |rho - 1|"),
    "geo-mask": TrainMethod(
        "geo-mask", (("low", "geo_low"), ("high", "geo_high")), "masked_is", False, "geometric-mean mask"
    ),
    "token-mask": TrainMethod(
        "token-mask", (("low", "is_low"), ("high", "is_high")), "masked_is", False, "drop tokens, rho outside"
    ),
    "seq-tis": TrainMethod("seq-tis", (("clip", "is_high"),), "weighted", False, "sequence truncated IS"),
    "seq-mis": TrainMethod(
        "seq-mis", (("low", "is_low"), ("high", "is_high")), "weighted", False, "sequence masked IS"
    ),
    "token-is": TrainMethod("token-is", (), "masked_is", False, "plain token IS, no mask"),
    "ppo-clip": TrainMethod("none", (), "ppo_clip", False, "PPO clipping [0.8, 1.28] against pi_roll"),
    "on-policy": TrainMethod("none", (), "masked_is", False, "no mask, rho kept in the loss (= token-is)"),
}
ADVANTAGES = {
    "grpo": "(R - mean_group) / (std_group + 1e-6)",
    "drgrpo": "R - mean_group",
    "baseline": "R - b, b = TrainConfig.baseline (a constant)",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (written to config.json)."""

    method: str = "trm-max"  # key of TRAIN_METHODS
    mismatch: str = (
        "moe"  # rollout-engine mismatch spec (trm_bounds.mismatch), e.g. "moe", "precision=fp16+lag=2"
    )
    policy: str = "moe"  # key of trm_bounds.policies.POLICIES
    reward: str = "match"  # key of trm_bounds.rewards.REWARDS
    P: int = 3  # prompts (uniform prompt law)
    V: int = 4  # vocabulary, EOS included
    T: int = 5  # horizon
    eos: int | None = 0  # absorbing EOS token id (variable length) or None
    n_experts: int = MOE_N_EXPERTS  # MoE policy: experts E (make_policy's default, as exact --policy moe)
    top_k: int = MOE_TOP_K  # MoE policy: experts used per context
    router_scale: float = MOE_ROUTER_SCALE  # MoE policy: router weight scale (smaller = more near-ties)
    steps: int = 60  # optimizer steps
    n_groups: int = 8  # prompts sampled per step
    group_size: int = 8  # G responses per prompt
    advantage: str = "grpo"  # key of ADVANTAGES
    baseline: float = 0.5  # b for advantage "baseline"
    lr: float = 0.03  # Adam learning rate
    loss_norm: str = "total"  # "total" (paper) | "kept" (verl)
    advantage_groups: str = "kept"  # group baselines over "kept" samples (verl PR #6375) | "all"
    max_threshold: float = 0.05  # delta of TRM-Max (and of LN-TRM's weights)
    avg_threshold: float = 0.001  # delta_avg of TRM-Avg
    ln_threshold: float = 0.05  # delta_W of LN-TRM
    ser_threshold: float = 0.05  # delta_SER
    geo_low: float = 0.99  # geometric-mean mask range
    geo_high: float = 1.01
    is_low: float = 0.5  # token mask / sequence MIS range; is_high is also the TIS cap
    is_high: float = 2.0
    certified: bool = False  # backtrack or skip until L' > B*
    max_backtracks: int = 8  # halvings of the step before skipping
    seed: int = 0  # seeds the policy, the sampling and the router noise
    device: str = "cpu"

    def __post_init__(self):
        _choice("method", self.method, TRAIN_METHODS)
        _choice("policy", self.policy, POLICIES)
        _choice("reward", self.reward, REWARDS)
        _choice("advantage", self.advantage, ADVANTAGES)
        _choice("loss_norm", self.loss_norm, masks.NORMALIZE_CHOICES)
        _choice("advantage_groups", self.advantage_groups, ("kept", "all"))
        mm = parse_mismatch(self.mismatch)
        object.__setattr__(self, "mismatch", mm.spec)
        if mm.router_noise_std > 0 and self.policy != "moe":
            raise ValueError(f"mismatch 'moe' needs policy 'moe' (a router), got policy {self.policy!r}")
        ints = (
            "P",
            "V",
            "T",
            "steps",
            "n_groups",
            "group_size",
            "max_backtracks",
            "seed",
            "n_experts",
            "top_k",
        )
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer, got {v!r}")
        for name, lo in (
            ("P", 1),
            ("V", 2),
            ("T", 1),
            ("steps", 1),
            ("n_groups", 1),
            ("group_size", 1),
            ("n_experts", 1),
            ("top_k", 1),
        ):
            if getattr(self, name) < lo:
                raise ValueError(f"{name} must be >= {lo}, got {getattr(self, name)}")
        if self.max_backtracks < 0 or self.seed < 0:
            raise ValueError("max_backtracks and seed must be >= 0")
        if self.P * self.V**self.T > 2**18:
            raise ValueError(
                f"P * V**T = {self.P * self.V**self.T} leaves is too large for an exact check every step"
            )
        if self.eos is not None and (
            isinstance(self.eos, bool) or not isinstance(self.eos, int) or not 0 <= self.eos < self.V
        ):
            raise ValueError(f"eos must be None or a token id in [0, {self.V}), got {self.eos!r}")
        if self.advantage == "grpo" and self.group_size < 2:
            raise ValueError("group_size must be >= 2 for group-relative (grpo) advantages")
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k ({self.top_k}) must be <= n_experts ({self.n_experts})")
        for name in (
            "lr",
            "max_threshold",
            "avg_threshold",
            "ln_threshold",
            "ser_threshold",
            "baseline",
            "router_scale",
        ):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)
        if not self.lr > 0 or not self.router_scale > 0:
            raise ValueError(f"lr and router_scale must be > 0, got {self.lr}, {self.router_scale}")
        for lo, hi in (("geo_low", "geo_high"), ("is_low", "is_high")):
            a, b = float(getattr(self, lo)), float(getattr(self, hi))
            if not (math.isfinite(a) and math.isfinite(b) and 0 < a <= b):
                raise ValueError(f"{lo} and {hi} must satisfy 0 < {lo} <= {hi}, got {a}, {b}")

    @property
    def batch_size(self) -> int:
        """B = n_groups * group_size sequences per step."""
        return self.n_groups * self.group_size

    def to_json(self) -> dict:
        return {**asdict(self), "mismatch_detail": parse_mismatch(self.mismatch).to_json()}


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# --------------------------------------------------------------------------- pieces
def build_policy(cfg: TrainConfig) -> torch.nn.Module:
    """The policy of `cfg` (tabular / tiny transformer / MoE), seeded by cfg.seed, float64: `make_policy`."""
    return make_policy(
        cfg.policy, cfg.P, cfg.V, cfg.T, eos=cfg.eos, seed=cfg.seed,
        n_experts=cfg.n_experts, top_k=cfg.top_k, router_scale=cfg.router_scale,
    )  # fmt: skip


def group_advantages(
    R: torch.Tensor, group_size: int, kind: str = "grpo", baseline: float = 0.5, keep=None
) -> torch.Tensor:
    """Per-sequence advantages A_i from rewards R (B,), B = n_groups * G, groups contiguous.

    grpo:     A_i = (R_i - mean_g R) / (std_g R + 1e-6)   (unbiased std, as verl/DeepSeek GRPO)
    drgrpo:   A_i = R_i - mean_g R
    baseline: A_i = R_i - b
    With ``keep`` (B,) the group statistics use the kept samples only and rejected samples get
    A = 0 (`trm_bounds.masks.group_advantages`; verl PR #6375).
    """
    _choice("advantage", kind, ADVANTAGES)
    if kind != "baseline" and (R.ndim != 1 or R.shape[0] % group_size):
        raise ValueError(f"R must be (n_groups * {group_size},), got {tuple(R.shape)}")
    group_id = torch.arange(R.shape[0]) // group_size
    return masks.group_advantages(R, group_id, keep, kind, baseline=baseline)  # GRPO's eps 1e-6 (verl)


def ppo_clip_loss(
    log_prob: torch.Tensor, rollout_log_prob: torch.Tensor, advantages: torch.Tensor, clip=PPO_CLIP_RANGE
) -> torch.Tensor:
    """Per-token PPO-clip loss against pi_roll (bypass mode), (B, T):

        -min(rho_t A, clip(rho_t, lo, hi) A),  rho_t = exp(log_prob - rollout_log_prob)

    With A < 0 and rho_t > hi the unclipped term rho_t A is the minimum: that token's ratio is not
    clipped (docs/theory.md section 8, the paper's argument against token-level fixes).
    """
    rho = torch.exp(log_prob - rollout_log_prob)
    A = advantages[:, None]
    return -torch.minimum(rho * A, torch.clamp(rho, clip[0], clip[1]) * A)


def method_loss(
    kind: str,
    log_prob: torch.Tensor,
    rollout_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    keep: torch.Tensor,
    weights: torch.Tensor | None = None,
    loss_norm: str = "total",
) -> torch.Tensor:
    """The scalar policy loss of one batch (its gradient is the update direction, negated).

        masked_is: (1/N) sum_i sum_t keep_it (-A_i rho_t),   rho_t = exp(log_prob - rollout_log_prob)
                   (the paper's L_masked = E_roll[M A sum_t rho_t] with N = B for loss_norm "total")
        weighted:  (1/N) sum_i sum_t keep_it (-A_i w_it pi_theta/pi_theta_old)  (w detached, from masks)
        ppo_clip:  (1/N) sum_i sum_t keep_it (-min(rho_t A_i, clip(rho_t, 0.8, 1.28) A_i))

    Args: log_prob (B, T) log pi_theta(y_t|c_t) with its autograd graph (pi_theta_old is its detached
    value); rollout_log_prob (B, T); advantages (B,); response_mask (B, T) 0/1; keep (B, T) 0/1 tokens
    that survive the mask; weights (B, T) for "weighted"; loss_norm "total" | "kept" (masked_policy_loss).
    """
    _choice("kind", kind, ("masked_is", "weighted", "ppo_clip"))
    valid = response_mask > 0
    # padding may hold NaN/-inf log-probs: replace them BEFORE any op (exp(NaN)'s backward is NaN even
    # under a 0 upstream gradient; a torch.where after the op does not stop it)
    zero = torch.zeros((), dtype=log_prob.dtype, device=log_prob.device)
    log_prob = torch.where(valid, log_prob, zero)
    rollout_log_prob = torch.where(valid, rollout_log_prob, zero.to(rollout_log_prob.dtype))
    log_ratio = log_prob - rollout_log_prob  # 0 at padding
    if kind == "ppo_clip":
        loss_mat = ppo_clip_loss(log_ratio, torch.zeros_like(log_ratio), advantages)
    elif kind == "weighted":
        if weights is None:
            raise ValueError("weights are required for kind 'weighted'")
        loss_mat = -advantages[:, None] * weights * torch.exp(log_prob - log_prob.detach())
    else:
        loss_mat = -advantages[:, None] * torch.exp(log_ratio)
    return masks.masked_policy_loss(
        loss_mat, response_mask, keep, loss_agg_mode="seq-mean-token-sum", normalize=loss_norm
    )


def _response_mask(tokens: torch.Tensor, eos: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(response_mask (B, T) float64 of t <= L_i, lengths L_i (B,)): L_i = first EOS position (T if none)."""
    B, T = tokens.shape
    pos = torch.arange(1, T + 1)
    if eos is None:
        L = torch.full((B,), T, dtype=torch.int64)
    else:
        first = torch.where(tokens == eos, pos, T + 1).min(dim=1).values
        L = torch.clamp(first, max=T)
    return (pos[None, :] <= L[:, None]).to(torch.float64), L


def _sample_groups(roll: list, cfg: TrainConfig, gen: torch.Generator) -> dict:
    """n_groups prompts x ~ uniform, then G responses of each from pi_roll; groups contiguous.

    The batch (n_groups G,) is drawn at once: prompt row b = prompts[b // G], then
    `draw_tokens` (one draw per level for every response of every group)."""
    prompts = torch.randint(0, cfg.P, (cfg.n_groups,), generator=gen)
    levels = [x.detach().to("cpu", torch.float64) for x in roll]
    return draw_tokens(levels, prompts.repeat_interleave(cfg.group_size), gen)


def _acceptance_by_length(L: torch.Tensor, keep: torch.Tensor, T: int) -> dict[str, list]:
    """{"length": [1..T present], "n": [...], "accepted": [...]} over the batch."""
    out = {"length": [], "n": [], "accepted": []}
    for ell in range(1, T + 1):
        sel = L == ell
        if sel.any():
            out["length"].append(ell)
            out["n"].append(int(sel.sum()))
            out["accepted"].append(int((keep & sel).sum()))
    return out


# --------------------------------------------------------------------------- the loop
STEP_KEYS = (
    "step", "method", "J_roll", "J_old", "J_new", "surrogate", "error", "delta", "eps", "dkl_seq", "dtv_seq",
    "bound_unified", "certified", "violation", "acceptance", "acceptance_by_length", "log_ppl_gap", "skipped",
    "backtracks", "step_scale", "lag", "loss", "reward_mean", "delta_mismatch",
)  # fmt: skip


@dataclass
class TrainResult:
    """A finished run: config, per-step log (dicts with STEP_KEYS), summary (`summarize`), final policy."""

    config: TrainConfig
    steps: list[dict]
    summary: dict
    policy: torch.nn.Module = field(repr=False)


@contextmanager
def _one_cpu_thread(device):
    """Run the block with torch on one CPU thread (restored after).

    The trainer's tensors are tiny (V**T <= a few thousand leaves): intra-op threads only add
    synchronisation, and on busy cores they made a step 25x slower (measured: 10.6 s vs 0.39 s
    for the same six tiny runs on 2 loaded cores).
    """
    if torch.device(device).type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def train(
    cfg: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    save_pair_every: int = 0,
    progress: bool = False,
    on_step: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Run `cfg.steps` optimizer steps with the exact checks of the module docstring.

    out_dir: if given, writes config.json and steps.jsonl (one line per step, flushed as it goes)
    and, with save_pair_every = K > 0, pairs/step_<step>.npz (pi_roll against pi_theta_new) every K
    steps. Validation happens before anything is written. Runs torch on one CPU thread.
    """
    with _one_cpu_thread(cfg.device):
        return _train(
            cfg, out_dir=out_dir, save_pair_every=save_pair_every, progress=progress, on_step=on_step
        )


def _train(cfg, *, out_dir, save_pair_every, progress, on_step) -> TrainResult:
    if isinstance(save_pair_every, bool) or not isinstance(save_pair_every, int) or save_pair_every < 0:
        raise ValueError(f"save_pair_every must be an integer >= 0, got {save_pair_every!r}")
    if save_pair_every and out_dir is None:
        raise ValueError("save_pair_every needs out_dir")
    policy = build_policy(cfg).to(cfg.device)
    reward = make_reward(cfg.reward, cfg.P, cfg.V, cfg.T, seed=cfg.seed, eos=cfg.eos)
    prompt_probs = torch.full((cfg.P,), 1.0 / cfg.P, dtype=torch.float64)
    reward_flat = reward.reshape(-1)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    engine = RolloutEngine(cfg.mismatch, generator=torch.Generator().manual_seed(cfg.seed + 2))
    engine.observe(policy)
    spec = TRAIN_METHODS[cfg.method]
    mask_params = {p: getattr(cfg, f) for p, f in spec.params} | dict(spec.fixed)
    if cfg.method == "ln-trm":
        mask_params["eps"] = min(1.0, math.sqrt(cfg.max_threshold / 2))  # Pinsker: LN-TRM's eps from delta

    log_file = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
        log_file = (out / "steps.jsonl").open("w")
        if save_pair_every:
            (out / "pairs").mkdir(exist_ok=True)
    steps: list[dict] = []
    try:
        from tqdm.auto import tqdm

        bar = tqdm(range(1, cfg.steps + 1), desc=f"train {cfg.method}", unit="step", disable=not progress)
        tree = None  # the policy's differentiable tree at its current parameters, when still valid
        for step in bar:
            rec, roll, new, tree = _one_step(
                step,
                cfg,
                policy,
                opt,
                engine,
                spec,
                mask_params,
                reward,
                reward_flat,
                prompt_probs,
                gen,
                tree,
            )
            steps.append(rec)
            engine.observe(policy)
            if log_file is not None:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
                if save_pair_every and step % save_pair_every == 0:
                    PolicyPair(roll, new, reward, prompt_probs).save(
                        Path(out_dir) / "pairs" / f"step_{step}.npz"
                    )
            if on_step is not None:
                on_step(rec)
            bar.set_postfix(
                J=f"{rec['J_new']:.3f}", acc=f"{rec['acceptance']:.2f}", cert=int(rec["certified"])
            )
    finally:
        if log_file is not None:
            log_file.close()
    return TrainResult(cfg, steps, summarize(steps), policy)


def _one_step(step, cfg, policy, opt, engine, spec, mask_params, reward, reward_flat, prompt_probs, gen,
              tree=None):  # fmt: skip
    """One optimizer step and its exact checks; returns (log record, roll levels, new levels, tree).

    tree: `policy.log_prob_tree()` with its autograd graph, built at the current parameters (the
    previous step's theta_new) and not touched since, or None; used as this step's differentiable
    pi_theta_old instead of a second identical forward pass. The returned tree is theta_new's
    (None when the step was skipped: restoring the parameters in place invalidates any graph).
    """
    roll = engine.log_prob_tree(policy)  # pi_roll: T levels (P, V**(t-1), V), detached float64
    batch = _sample_groups(roll, cfg, gen)
    prompt, tokens = batch["prompt"], batch["tokens"]  # (B,), (B, T)
    response_mask, L = _response_mask(tokens, cfg.eos)
    R = reward_flat[prompt * cfg.V**cfg.T + batch["index"]]  # (B,) rewards of the sampled leaves

    levels = policy.log_prob_tree() if tree is None else tree  # pi_theta_old, differentiable
    old = [x.detach() for x in levels]
    logp = token_logprobs(levels, prompt, tokens)  # (B, T) log pi_theta(y_t | c_t), with grad
    logp_old = logp.detach()  # log pi_theta_old(y_t | c_t)
    logp_roll = batch["logp"]  # (B, T) log pi_roll(y_t | c_t)
    exact_kl = token_kl_along(roll, old, prompt, tokens) if spec.exact_kl else None
    res = masks.sequence_mask(spec.mask, logp_old, logp_roll, response_mask, exact_kl=exact_kl, **mask_params)
    keep_tok = res.mask  # (B, T) in response_mask's dtype: tokens that enter the loss
    # group baselines over the samples still in the loss (a row with any kept token)
    kept_rows = (keep_tok > 0).any(dim=1) if cfg.advantage_groups == "kept" else None
    A = group_advantages(R, cfg.group_size, cfg.advantage, cfg.baseline, keep=kept_rows)
    loss = method_loss(spec.loss, logp, logp_roll, A, response_mask, keep_tok, res.weights, cfg.loss_norm)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in policy.parameters()]
    before = [p.detach().clone() for p in params]
    opt.step()
    direction = [p.detach() - b for p, b in zip(params, before)]

    scale, backtracks, skipped = 1.0, 0, False
    while True:
        if backtracks == 0:  # with its graph: the next step's pi_theta_old when accepted as is
            tree = policy.log_prob_tree()
            new = [x.detach() for x in tree]
        else:  # a shrunk step: no graph (backtracking is rare but long); the next step rebuilds it
            with torch.no_grad():
                new = [x.detach() for x in policy.log_prob_tree()]
            tree = None
        q = exact_quantities(roll, new, reward, prompt_probs, validate=False)
        certified = q["surrogate"] > q["bounds"]["unified"]
        if not cfg.certified or certified:
            break
        if backtracks == cfg.max_backtracks:  # give up: skip the update, parameters back to theta_old
            skipped, scale = True, 0.0
            with torch.no_grad():
                for p, b in zip(params, before):
                    p.copy_(b)
            new, tree = old, None
            q = exact_quantities(roll, new, reward, prompt_probs, validate=False)
            certified = q["surrogate"] > q["bounds"]["unified"]
            break
        backtracks += 1
        scale *= 0.5
        with torch.no_grad():
            for p, b, d in zip(params, before, direction):
                p.copy_(b + scale * d)

    keep_seq = res.seq_keep.bool()
    nonempty = response_mask.sum(1) > 0
    J_new = q["J_theta"]
    rec = {
        "step": step,
        "method": cfg.method,
        "J_roll": q["J_roll"],
        "J_old": exact_J(old, reward, prompt_probs),
        "J_new": J_new,
        "surrogate": q["surrogate"],
        "error": q["error"],
        "delta": q["delta"],
        "eps": q["eps"],
        "dkl_seq": q["dkl_seq"],
        "dtv_seq": q["dtv_seq"],
        "bound_unified": q["bounds"]["unified"],
        "delta_mismatch": _max_token_kl(roll, old),
        "certified": bool(certified),
        "violation": bool(certified and J_new <= q["J_roll"]),
        "acceptance": float((keep_seq & nonempty).sum() / max(int(nonempty.sum()), 1)),
        "acceptance_by_length": _acceptance_by_length(L, keep_seq, cfg.T),
        "log_ppl_gap": masks.offpolicy_metrics(logp_old, logp_roll, response_mask)["log_ppl_abs_diff"],
        "skipped": skipped,
        "backtracks": backtracks,
        "step_scale": scale,
        "lag": engine.lag,
        "loss": float(loss.detach()),
        "reward_mean": float(R.mean()),
        "token_kept_fraction": float(keep_tok.sum() / response_mask.sum()),
        "bounds": {k: q["bounds"][k] for k in ("pm_kl", "mix_kl", "mix_tv", "coupling", "adaptive_star")},
    }
    return rec, roll, new, tree


def _max_token_kl(roll: list, theta: list) -> float:
    """max_t max_c KL(pi_roll(.|c) || pi_theta(.|c)) over every context of the tree (the global delta
    between the rollout and the policy the mask was computed against; contexts after EOS have KL 0)."""
    V = roll[0].shape[-1]
    flat = lambda levels: torch.cat([x.reshape(-1, V) for x in levels])  # noqa: E731 - every context
    return float(token_kl(flat(roll), flat(theta), check=False).max())  # both trees are log-softmax output


def summarize(steps: list[dict]) -> dict:
    """Counts over a training log: certified steps, violations (certified but J_new <= J_roll),
    skipped / shrunk steps (certified mode), steps where J_new < J_roll, and J at start and end."""
    if not steps:
        raise ValueError("steps must be a non-empty training log")
    applied = [s for s in steps if not s.get("skipped", False)]
    return {
        "steps": len(steps),
        "certified_steps": sum(bool(s["certified"]) for s in steps),
        "violations": sum(bool(s["certified"]) and s["J_new"] <= s["J_roll"] for s in steps),
        "skipped": sum(bool(s.get("skipped", False)) for s in steps),
        "shrunk": sum(s.get("backtracks", 0) > 0 and not s.get("skipped", False) for s in steps),
        "applied_below_roll": sum(s["J_new"] < s["J_roll"] for s in applied),
        "J_first": steps[0]["J_old"],
        "J_last": steps[-1]["J_new"],
        "J_max": max(s["J_new"] for s in steps),
        "acceptance_mean": float(np.mean([s["acceptance"] for s in steps])),
        "log_ppl_gap_mean": float(np.mean([s["log_ppl_gap"] for s in steps])),
    }


def write_run(result: TrainResult, out_dir: str | Path) -> None:
    """Write config.json, steps.jsonl and summary.json of a finished run into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(result.config.to_json(), indent=2) + "\n")
    (out / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in result.steps))
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2) + "\n")
