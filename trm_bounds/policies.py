"""Policies over an enumerable tree: log-probs of every context, level by level.

Every policy is a ``torch.nn.Module`` with attributes ``P`` (prompts), ``V`` (vocabulary),
``T`` (horizon), ``eos`` (token id or None) and

    log_prob_tree(*, compute_dtype=None, router_noise_std=0.0, generator=None) -> list[Tensor]

returning levels t = 1..T, level t of shape ``(P, V**(t-1), V)``, float64,
differentiable w.r.t. the parameters. Row k of level t is the context whose tokens
y_1..y_{t-1} are the base-V digits of k (y_1 most significant): the docs/formats.md layout.

- ``compute_dtype`` (e.g. ``torch.bfloat16``): the network's forward pass up to the logits
  runs in that dtype (parameters cast on the fly), like a low-precision rollout engine; the
  final log-softmax is taken in float64, so every row is still a distribution.
- ``eos``: after an EOS token both policies emit EOS with probability 1 (absorbing), so a
  variable-length response lives inside the fixed-horizon formulas (docs/theory.md section 1).
- ``router_noise_std`` (MoEPolicy only): Gaussian noise on the router logits before top-k,
  the way a rollout engine's routing flips are simulated (docs/theory.md section 8).

Policies: TabularPolicy (free logits per context), TransformerPolicy (tiny causal
transformer, config `TransformerConfig`), MoEPolicy (top-k mixture of experts, config
`MoEConfig`, ``router_margin()`` exposes near-ties). `make_policy(kind, P, V, T, ...)` is the
one builder of a policy by its POLICIES name (``exact --policy`` and the trainer both use it);
`exact_J_tensor` is J of a tree of levels, differentiable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ._resources import check_memory, format_bytes
from .divergences import log_softmax

__all__ = [
    "TabularPolicy",
    "TransformerConfig",
    "TransformerPolicy",
    "MoEConfig",
    "MoEPolicy",
    "POLICIES",
    "context_tokens",
    "after_eos",
    "absorb_eos",
    "make_policy",
    "exact_J_tensor",
    "MOE_N_EXPERTS",
    "MOE_TOP_K",
    "MOE_ROUTER_SCALE",
]

MAX_LEAVES = 2**23  # largest P * V**T a policy builds (work guard: ~30 s and ~1.3 GiB measured on 2 cores)
BYTES_PER_LEAF = 160  # measured peak of build + pair + exact engine per leaf (126 B at 2**23), rounded up


def _check_tree_size(P: int, V: int, T: int, eos: int | None) -> None:
    for name, v in (("P", P), ("V", V), ("T", T)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if V < 2:
        raise ValueError(f"V must be >= 2 for a policy to have a choice, got {V}")
    if P * V**T > MAX_LEAVES:
        raise ValueError(
            f"T: P * V**T = {P * V**T} leaves exceeds {MAX_LEAVES} = 2**23 (a tree this size takes minutes "
            f"and about {format_bytes(BYTES_PER_LEAF * P * V**T)}); use a smaller P, V or T"
        )
    check_memory("T", BYTES_PER_LEAF * P * V**T, f"the exact tree of P * V**T = {P * V**T} leaves")
    if eos is not None and (not isinstance(eos, int) or not 0 <= eos < V):
        raise ValueError(f"eos must be None or a token id in [0, {V}), got {eos!r}")


def context_tokens(V: int, n: int, device="cpu") -> torch.Tensor:
    """(V**n, n) int64: row k = base-V digits of k, most significant first (y_1..y_n)."""
    tok = torch.zeros((1, 0), dtype=torch.int64, device=device)
    for _ in range(n):
        m = tok.shape[0]
        tok = torch.cat((tok.repeat_interleave(V, 0), torch.arange(V, device=device).repeat(m)[:, None]), 1)
    return tok


def after_eos(k: int, V: int, eos: int, device="cpu") -> torch.Tensor:
    """(V**k,) bool: does the context y_1..y_k of each row of level t = k+1 contain `eos`?"""
    done = torch.zeros(1, dtype=torch.bool, device=device)
    is_eos = torch.arange(V, device=device) == eos
    for _ in range(k):
        done = (done[:, None] | is_eos[None, :]).reshape(-1)  # child row = parent * V + v
    return done


def absorb_eos(logp: torch.Tensor, k: int, eos: int | None) -> torch.Tensor:
    """Level t = k+1 log-probs (P, V**k, V) with rows after an EOS set to 'EOS w.p. 1'."""
    if eos is None or k == 0:
        return logp
    done, absorbed = _eos_rows(k, logp.shape[-1], eos, logp.device, logp.dtype)
    return torch.where(done, absorbed, logp)


@lru_cache(maxsize=256)
def _eos_rows(k: int, V: int, eos: int, device: torch.device, dtype: torch.dtype):
    """(after_eos as (1, V**k, 1), the absorbed row (V,) = log onehot(eos)): made once per
    level shape, read-only (every policy forward of a training step asks for the same ones)."""
    done = after_eos(k, V, eos, device)[None, :, None]
    absorbed = torch.full((V,), -math.inf, dtype=dtype, device=device)
    absorbed[eos] = 0.0
    return done, absorbed


def _finish(logits: torch.Tensor, k: int, eos: int | None) -> torch.Tensor:
    """float64 log-softmax of level-k logits, then EOS absorption."""
    return absorb_eos(log_softmax(logits.to(torch.float64)), k, eos)


def _split_levels(logits: torch.Tensor, P: int, V: int, T: int, eos: int | None) -> list[torch.Tensor]:
    """Logits of every context, level-major ((sum_t P V**(t-1), V): level 1's P rows, then level
    2's P V rows, ...), -> levels t = 1..T of (P, V**(t-1), V) float64 log-probs with EOS
    absorption: `_finish` of each level, with one log-softmax over all rows."""
    lp = log_softmax(logits.to(torch.float64))
    out, start = [], 0
    for k in range(T):
        n = P * V**k
        out.append(absorb_eos(lp[start : start + n].reshape(P, V**k, V), k, eos))
        start += n
    return out


# --------------------------------------------------------------------------- tabular
class TabularPolicy(nn.Module):
    """Free logits per context: pi(.|c) = softmax(z_c), z level t of shape (P, V**(t-1), V).

    Args:
      P, V, T: prompts, vocabulary, horizon. eos: absorbing EOS token id or None.
      init_std: logits ~ N(0, init_std^2) (near-deterministic policies: large init_std).
      seed: seeds the initial logits. logits: optional list of T initial logit arrays.
    """

    def __init__(
        self,
        P: int,
        V: int,
        T: int,
        *,
        eos: int | None = None,
        init_std: float = 1.0,
        seed: int = 0,
        logits=None,
    ):
        super().__init__()
        _check_tree_size(P, V, T, eos)
        self.P, self.V, self.T, self.eos = P, V, T, eos
        if logits is None:
            gen = torch.Generator().manual_seed(int(seed))
            logits = [
                init_std * torch.randn((P, V**k, V), generator=gen, dtype=torch.float64) for k in range(T)
            ]
        else:
            if len(logits) != T:
                raise ValueError(f"logits must have T = {T} levels, got {len(logits)}")
            logits = [torch.as_tensor(z, dtype=torch.float64) for z in logits]
            for k, z in enumerate(logits):
                if tuple(z.shape) != (P, V**k, V):
                    raise ValueError(f"logits[{k}] must have shape {(P, V**k, V)}, got {tuple(z.shape)}")
                if not torch.isfinite(z).all():
                    raise ValueError(f"logits[{k}] must be finite")
        self.logits = nn.ParameterList([nn.Parameter(z.clone()) for z in logits])

    def log_prob_tree(
        self, *, compute_dtype=None, router_noise_std: float = 0.0, generator=None
    ) -> list[torch.Tensor]:
        """Levels t = 1..T: (P, V**(t-1), V) float64 log-probs (logits rounded to compute_dtype)."""
        out = []
        for k, z in enumerate(self.logits):
            if compute_dtype is not None:
                z = z.to(compute_dtype)
            out.append(_finish(z, k, self.eos))
        return out


# --------------------------------------------------------------------------- transformer
@dataclass(frozen=True)
class TransformerConfig:
    """A tiny pre-LayerNorm causal transformer over (prompt, y_1, ..., y_{T-1})."""

    P: int  # number of prompts (each prompt is one input token of its own embedding table)
    V: int  # vocabulary size of the response
    T: int  # horizon (response length)
    d_model: int = 16  # residual width
    n_heads: int = 2  # attention heads (d_model % n_heads == 0)
    n_layers: int = 1  # transformer blocks
    d_ff: int = 32  # hidden width of the MLP
    eos: int | None = None  # absorbing EOS token id, or None
    init_std: float = 0.5  # N(0, init_std^2 / fan_in) weights; larger = sharper policies
    seed: int = 0  # seeds the initial parameters

    def __post_init__(self):
        _check_tree_size(self.P, self.V, self.T, self.eos)
        for name in ("d_model", "n_heads", "n_layers", "d_ff"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not (math.isfinite(self.init_std) and self.init_std > 0):
            raise ValueError(f"init_std must be finite and > 0, got {self.init_std}")


class TransformerPolicy(nn.Module):
    """pi(y_t | x, y_<t) = softmax(head(h_t)), h from a causal transformer; all contexts at once.

    The tree is read off one batched forward pass over the V**(T-1) sequences
    (x, y_1..y_{T-1}): position j's output is the next-token law of the prefix of length j,
    and the causal mask makes it independent of the later (padding) tokens.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.P, self.V, self.T, self.eos = c.P, c.V, c.T, c.eos
        gen = torch.Generator().manual_seed(c.seed)
        w = lambda *shape: nn.Parameter(
            c.init_std * torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(shape[-1])
        )
        zeros = lambda *shape: nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        ones = lambda *shape: nn.Parameter(torch.ones(shape, dtype=torch.float64))
        d = c.d_model
        self.prompt_emb = nn.Parameter(torch.randn((c.P, d), generator=gen, dtype=torch.float64))
        self.tok_emb = nn.Parameter(torch.randn((c.V, d), generator=gen, dtype=torch.float64))
        self.pos_emb = nn.Parameter(0.5 * torch.randn((c.T, d), generator=gen, dtype=torch.float64))
        self.blocks = nn.ModuleList()
        for _ in range(c.n_layers):
            blk = nn.Module()
            blk.ln1_w, blk.ln1_b, blk.ln2_w, blk.ln2_b = ones(d), zeros(d), ones(d), zeros(d)
            blk.qkv_w, blk.qkv_b = w(3 * d, d), zeros(3 * d)
            blk.out_w, blk.out_b = w(d, d), zeros(d)
            blk.ff1_w, blk.ff1_b = w(c.d_ff, d), zeros(c.d_ff)
            blk.ff2_w, blk.ff2_b = w(d, c.d_ff), zeros(d)
            self.blocks.append(blk)
        self.lnf_w, self.lnf_b = ones(d), zeros(d)
        self.head_w, self.head_b = nn.Parameter(3.0 * w(c.V, d).data), zeros(c.V)
        self.register_buffer("tokens", context_tokens(c.V, c.T - 1), persistent=False)  # (V**(T-1), T-1)

    def _logits(self, dt: torch.dtype) -> torch.Tensor:
        """(P, V**(T-1), T, V) logits in dtype dt.

        [p, n, j] = next-token logits after x_p, y_1..y_j of sequence n.
        """
        c = self.config
        cast = lambda p: p.to(dt)
        N = self.tokens.shape[0]
        x = torch.cat(
            (
                cast(self.prompt_emb)[:, None, None, :].expand(c.P, N, 1, c.d_model),
                cast(self.tok_emb)[self.tokens][None].expand(c.P, N, c.T - 1, c.d_model),
            ),
            2,
        ) + cast(self.pos_emb)  # (P, N, T, d)
        x = x.reshape(c.P * N, c.T, c.d_model)
        hd = c.d_model // c.n_heads
        for blk in self.blocks:
            h = F.layer_norm(x, (c.d_model,), cast(blk.ln1_w), cast(blk.ln1_b))
            q, k, v = F.linear(h, cast(blk.qkv_w), cast(blk.qkv_b)).split(c.d_model, -1)
            q, k, v = (z.reshape(z.shape[0], c.T, c.n_heads, hd).transpose(1, 2) for z in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, hd)
            x = x + F.linear(a.transpose(1, 2).reshape(x.shape), cast(blk.out_w), cast(blk.out_b))
            h = F.layer_norm(x, (c.d_model,), cast(blk.ln2_w), cast(blk.ln2_b))
            x = x + F.linear(
                F.gelu(F.linear(h, cast(blk.ff1_w), cast(blk.ff1_b))), cast(blk.ff2_w), cast(blk.ff2_b)
            )
        x = F.layer_norm(x, (c.d_model,), cast(self.lnf_w), cast(self.lnf_b))
        return F.linear(x, cast(self.head_w), cast(self.head_b)).reshape(c.P, N, c.T, c.V)

    def log_prob_tree(
        self, *, compute_dtype=None, router_noise_std: float = 0.0, generator=None
    ) -> list[torch.Tensor]:
        """Levels t = 1..T: (P, V**(t-1), V) float64 log-probs."""
        logits = self._logits(compute_dtype or torch.float64)
        V, T = self.V, self.T
        # level t: contexts k = y_1..y_{t-1}; sequence k * V**(T-t) carries them (zeros after)
        return [_finish(logits[:, :: V ** (T - t), t - 1, :], t - 1, self.eos) for t in range(1, T + 1)]


# --------------------------------------------------------------------------- mixture of experts
@dataclass(frozen=True)
class MoEConfig:
    """A tiny top-k mixture-of-experts policy over a bag-of-(position, token) context encoding."""

    P: int  # number of prompts
    V: int  # vocabulary size
    T: int  # horizon
    d_model: int = 8  # context encoding width
    n_experts: int = 4  # experts E
    top_k: int = 1  # experts used per context (1 <= top_k <= n_experts)
    d_hidden: int = 16  # hidden width of each expert MLP
    eos: int | None = None  # absorbing EOS token id, or None
    init_std: float = 1.0  # scale of the initial weights (larger = sharper experts)
    router_scale: float = 1.0  # scale of the router weights (smaller = more near-ties)
    seed: int = 0  # seeds the initial parameters

    def __post_init__(self):
        _check_tree_size(self.P, self.V, self.T, self.eos)
        for name in ("d_model", "n_experts", "top_k", "d_hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k ({self.top_k}) must be <= n_experts ({self.n_experts})")
        for name in ("init_std", "router_scale"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")


class MoEPolicy(nn.Module):
    """pi(.|c) = softmax( sum_{e in topk(r(c))} gate_e(c) * expert_e(h(c)) ).

    h(c) = tanh(prompt_emb[x] + sum_{j<t} tok_emb[j, y_j]) (d_model,), built level by level;
    router logits r(c) = W_r h(c) (E,); gates = softmax of r over the top-k experts;
    expert_e(h) = W2_e tanh(W1_e h + b1_e) + b2_e (V logits). With router noise, the noisy
    router logits choose the experts and give the gates, as in a rollout engine whose
    numerics flip near-tied choices; `router_margin()` gives r_(k) - r_(k+1) per context.
    """

    def __init__(self, config: MoEConfig):
        super().__init__()
        self.config = c = config
        self.P, self.V, self.T, self.eos = c.P, c.V, c.T, c.eos
        gen = torch.Generator().manual_seed(c.seed)
        rn = lambda *s: torch.randn(s, generator=gen, dtype=torch.float64)
        d, E, H = c.d_model, c.n_experts, c.d_hidden
        self.prompt_emb = nn.Parameter(rn(c.P, d))
        self.tok_emb = nn.Parameter(rn(max(c.T - 1, 1), c.V, d) / math.sqrt(max(c.T - 1, 1)))
        self.router = nn.Parameter(c.router_scale * rn(E, d) / math.sqrt(d))
        self.w1 = nn.Parameter(c.init_std * rn(E, d, H) / math.sqrt(d))
        self.b1 = nn.Parameter(0.1 * rn(E, H))
        self.w2 = nn.Parameter(3.0 * c.init_std * rn(E, H, c.V) / math.sqrt(H))
        self.b2 = nn.Parameter(torch.zeros((E, c.V), dtype=torch.float64))

    def _encodings(self, dt) -> list[torch.Tensor]:
        """h(c) per level: level t of shape (P, V**(t-1), d), in dtype dt."""
        pre = self.prompt_emb.to(dt)[:, None, :]  # (P, 1, d)
        tok = self.tok_emb.to(dt)
        hs = [torch.tanh(pre)]
        for k in range(self.T - 1):
            pre = (pre[:, :, None, :] + tok[k][None, None]).reshape(
                self.P, -1, pre.shape[-1]
            )  # (P, V**(k+1), d)
            hs.append(torch.tanh(pre))
        return hs

    def router_logits(self, dt=torch.float64) -> list[torch.Tensor]:
        """Router logits per level: (P, V**(t-1), E)."""
        return [h @ self.router.to(dt).T for h in self._encodings(dt)]

    def router_margin(self) -> list[torch.Tensor]:
        """Top-k margin per context and level: r_(k) - r_(k+1) of the sorted router logits,
        (P, V**(t-1)) float64; +inf when top_k = n_experts (no choice to flip)."""
        out = []
        with torch.no_grad():
            for r in self.router_logits():
                if self.config.top_k == self.config.n_experts:
                    out.append(torch.full(r.shape[:-1], math.inf, dtype=torch.float64))
                    continue
                s = torch.sort(r, -1, descending=True).values
                out.append(s[..., self.config.top_k - 1] - s[..., self.config.top_k])
        return out

    def log_prob_tree(
        self, *, compute_dtype=None, router_noise_std: float = 0.0, generator=None
    ) -> list[torch.Tensor]:
        """Levels t = 1..T: (P, V**(t-1), V) float64 log-probs; router noise before top-k.

        Every context of every level in one pass (n = P sum_t V**(t-1) contexts, level-major):
          r = W_r h (+ noise)                       (n, E) router logits; top-k -> idx, gates (n, k)
          a = [W1_1 h, ..., W1_E h]                 (n, E, H) one matrix product for all experts
          u_j = tanh(a[idx_j] + b1[idx_j])          (n k, H) hidden of the chosen experts only
          y = u_j [W2_1, ..., W2_E]                 (n k, E, V) one product, then the block of
                                                    expert idx_j: y_j = W2[idx_j] u_j + b2[idx_j]
          z = sum_j gate_j y_j                      (n, V) logits
        The same function as computing every expert and gathering the chosen ones, with k/E of
        the tanh (rounding differs from that order in the last bits).
        """
        if not (math.isfinite(router_noise_std) and router_noise_std >= 0):
            raise ValueError(f"router_noise_std must be finite and >= 0, got {router_noise_std}")
        dt = compute_dtype or torch.float64
        c = self.config
        E, K, H, V = c.n_experts, c.top_k, c.d_hidden, c.V
        w1, b1, w2, b2, wr = (p.to(dt) for p in (self.w1, self.b1, self.w2, self.b2, self.router))
        hs = self._encodings(dt)
        h = torch.cat([x.reshape(-1, x.shape[-1]) for x in hs])  # (n, d): level-major, then (P, V**k)
        n, d = h.shape
        r = h @ wr.T  # (n, E)
        if router_noise_std > 0:  # drawn level by level (the stream of a per-level forward pass)
            noise = [
                torch.randn((x.shape[0] * x.shape[1], E), generator=generator, dtype=torch.float64)
                for x in hs
            ]
            r = r + router_noise_std * torch.cat(noise).to(dt)
        top, idx = torch.topk(r, K, -1)  # (n, K)
        gate = torch.softmax(top, -1)
        a = h @ w1.transpose(0, 1).reshape(d, E * H)  # (n, E*H): W1_e h of every expert
        chosen = idx.reshape(-1)  # (n K,) expert of each (context, j)
        rows = torch.arange(n * K, device=h.device)
        slot = torch.div(rows, K, rounding_mode="floor") * E + chosen  # rows of a as (n E, H)
        u = torch.tanh(a.reshape(n * E, H)[slot] + b1[chosen])  # (n K, H) chosen experts only
        y = (u @ w2.transpose(0, 1).reshape(H, E * V)).reshape(n * K, E, V)[rows, chosen] + b2[chosen]
        z = (gate.reshape(n * K, 1) * y).reshape(n, K, V).sum(1)  # (n, V)
        return _split_levels(z, self.P, V, self.T, self.eos)


POLICIES = {
    "tabular": "TabularPolicy: free logits per context",
    "transformer": "TransformerPolicy: tiny causal transformer (TransformerConfig)",
    "moe": "MoEPolicy: top-k mixture of experts with a router (MoEConfig)",
}


# --------------------------------------------------------------------------- the one builder
MOE_N_EXPERTS = 8  # make_policy's MoE: experts E (exact --policy moe and train --policy moe)
MOE_TOP_K = 2  # experts used per context
MOE_ROUTER_SCALE = 2.0  # router weight scale (smaller = more near-ties, more routing flips)


def make_policy(
    kind: str,
    P: int,
    V: int,
    T: int,
    *,
    eos: int | None = None,
    seed: int = 0,
    n_experts: int = MOE_N_EXPERTS,
    top_k: int = MOE_TOP_K,
    router_scale: float = MOE_ROUTER_SCALE,
) -> nn.Module:
    """The policy named `kind` (a key of POLICIES) on P prompts, vocabulary V, horizon T; float64.

    tabular: TabularPolicy(P, V, T, eos, seed); transformer: TransformerPolicy with the default
    TransformerConfig; moe: MoEPolicy with `n_experts`, `top_k`, `router_scale` (the MoE
    arguments are ignored by the other kinds). The same arguments give the same parameters,
    whichever command asks (``exact --policy``, ``train``).
    """
    if kind not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {kind!r}")
    if kind == "tabular":
        return TabularPolicy(P, V, T, eos=eos, seed=seed)
    if kind == "transformer":
        return TransformerPolicy(TransformerConfig(P=P, V=V, T=T, eos=eos, seed=seed))
    moe = MoEConfig(
        P=P, V=V, T=T, eos=eos, seed=seed, n_experts=n_experts, top_k=top_k, router_scale=router_scale
    )
    return MoEPolicy(moe)


def exact_J_tensor(levels: list[torch.Tensor], reward, prompt_probs) -> torch.Tensor:
    """J(pi) = sum_{x,y} P(x) prod_t pi(y_t|c_t) R(x,y) as a differentiable 0-d tensor.

    levels: T tensors (P, V**(t-1), V) of log-probs; reward (P, V**T); prompt_probs (P,).
    Forward level by level: d_{t+1}(c, v) = d_t(c) pi(v|c), shape (P, V**t).
    """
    d = torch.as_tensor(prompt_probs, dtype=torch.float64, device=levels[0].device)[:, None]  # d_1: (P, 1)
    for x in levels:
        d = (d[:, :, None] * torch.exp(x)).reshape(d.shape[0], -1)  # (P, V**t)
    R = torch.as_tensor(reward, dtype=torch.float64, device=d.device)
    return (d * R).sum()
