"""Write docs/examples/bf16_batch.npz: a realistic batch for `trm-bounds certify`.

A small causal transformer (3 layers, vocab 100, width 64, random weights at temperature 1) samples
32 responses of at most 64 tokens (8 prompts x 4 responses, EOS = token 0 ends a response) with its
weights and activations in bfloat16 (the "rollout engine"); the same weights in float32 score the
sampled tokens (the "trainer"). Stored: log_prob (fp32 trainer), rollout_log_prob (bf16 sampler),
response_mask, exact_kl (KL(pi_roll || pi_theta) at each sampled context, from the full rows),
group_id (prompt of each response) and advantages (GRPO: reward minus the group mean, rewards
Bernoulli(1/2) as a placeholder). Command: python experiments/make_example_batch.py [--out PATH].
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trm_bounds.certify import save_logprobs


class _TinyLM(nn.Module):
    def __init__(self, V=100, d=64, layers=3, heads=4, L=80):
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, d), nn.Embedding(L, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, V)

    def forward(self, x):  # (B, L) -> (B, L, V) log-probs of the next token
        L = x.shape[1]
        causal = torch.triu(torch.full((L, L), float("-inf"), dtype=self.head.weight.dtype), 1)
        h = self.emb(x) + self.pos(torch.arange(L))[None]
        return torch.log_softmax(self.head(self.body(h, mask=causal)).float(), -1)


def make_batch(seed: int = 0, prompts: int = 8, per: int = 4, T: int = 64, prompt_len: int = 4) -> dict:
    torch.manual_seed(seed)
    fp32 = _TinyLM().eval()
    bf16 = _TinyLM().eval()
    bf16.load_state_dict(fp32.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    B = prompts * per
    x = torch.randint(1, 100, (prompts, prompt_len)).repeat_interleave(per, 0)  # (B, prompt_len)
    alive = torch.ones(B, dtype=torch.bool)
    mask = torch.zeros(B, T)
    with torch.no_grad():
        for t in range(T):
            lp_roll = bf16(x)[:, -1]  # (B, V) bf16 sampler
            y = torch.multinomial(lp_roll.exp(), 1)[:, 0]
            mask[:, t] = alive.float()
            x = torch.cat([x, y[:, None]], 1)
            alive &= y != 0
        inp = x[:, :-1]
        lr = bf16(inp)[:, prompt_len - 1 :]  # (B, T, V): rows at the response positions
        lt = fp32(inp)[:, prompt_len - 1 :]
        tok = x[:, prompt_len:]
        rollout_log_prob = lr.gather(-1, tok[..., None])[..., 0]
        log_prob = lt.gather(-1, tok[..., None])[..., 0]
        exact_kl = (lr.exp() * (lr - lt)).sum(-1).clamp_min(0.0)
    rng = np.random.default_rng(seed)
    R = rng.integers(0, 2, B).astype(np.float64)
    adv = R - R.reshape(prompts, per).mean(1).repeat(per)
    return {
        "log_prob": log_prob.numpy().astype(np.float32),
        "rollout_log_prob": rollout_log_prob.numpy().astype(np.float32),
        "response_mask": mask.numpy().astype(np.float32),
        "exact_kl": exact_kl.numpy().astype(np.float32),
        "group_id": np.arange(prompts).repeat(per),
        "advantages": adv,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/examples/bf16_batch.npz"))
    args = ap.parse_args(argv)
    d = make_batch()
    save_logprobs(args.out, d["log_prob"], d["rollout_log_prob"], d["response_mask"], exact_kl=d["exact_kl"])
    with np.load(args.out) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez_compressed(args.out, **arrays, group_id=d["group_id"], advantages=d["advantages"])
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
