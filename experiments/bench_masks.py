"""Benchmark: TRM masks plus metrics on (B, T) = (256, 16384) float32 log-probs on CPU.

Measures, in one run and on the same inputs:
- ``trm_mask`` (TRM-Max k2 + TRM-Avg k3, with metrics, verl aliases off and on);
- verl's ``rollout_rejection_mask("seq_max_k2,seq_mean_k3")`` as re-implemented here;
- a plain unfused reference (one pass per quantity, Python loop over rows);
- the log-prob gather that produced the inputs: log_softmax + gather over a vocabulary of
  V = 1024 on a (B, T_chunk) slice, scaled linearly to T (the real gather is larger: V ~ 1e5).
Prints one JSON object with the median seconds and the ratios to the gather and to the reference.

    python experiments/bench_masks.py [--B 256] [--T 16384] [--V 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from trm_bounds.masks import rollout_rejection_mask, trm_mask


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _reference(lp, rlp, m, d_max, d_avg):
    """Unfused: per row, per quantity, the definitions written plainly."""
    keep = []
    for b in range(lp.shape[0]):
        valid = m[b] > 0
        x = torch.clamp(lp[b][valid] - rlp[b][valid], -20.0, 20.0)
        k2 = 0.5 * x * x
        k3 = torch.exp(x) - 1.0 - x
        keep.append(
            bool((k2.max() if x.numel() else 0.0) <= d_max)
            and bool((k3.mean() if x.numel() else 0.0) <= d_avg)
        )
    keep_t = torch.tensor(keep)
    acc = keep_t.float().mean().item()
    return m * keep_t[:, None], acc


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, default=256)
    p.add_argument("--T", type=int, default=16384)
    p.add_argument("--V", type=int, default=1024)
    p.add_argument("--T-chunk", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    rlp = -torch.rand(a.B, a.T, generator=g) * 3.0
    lp = rlp + 0.01 * torch.randn(a.B, a.T, generator=g)
    lengths = torch.randint(1, a.T + 1, (a.B,), generator=g)
    m = (torch.arange(a.T)[None, :] < lengths[:, None]).float()
    d_max, d_avg = 2e-3, 5e-5  # about half the rows of this synthetic batch pass

    t_trm = _time(
        lambda: trm_mask(
            lp, rlp, m, mode="max+avg", max_threshold=d_max, avg_threshold=d_avg, verl_aliases=False
        ),
        a.repeats,
    )
    t_trm_alias = _time(
        lambda: trm_mask(lp, rlp, m, mode="max+avg", max_threshold=d_max, avg_threshold=d_avg), a.repeats
    )
    t_verl = _time(
        lambda: rollout_rejection_mask(lp - rlp, m, "seq_max_k2,seq_mean_k3", f"{d_max},{d_avg}"), a.repeats
    )
    t_ref = _time(lambda: _reference(lp, rlp, m, d_max, d_avg), a.repeats)
    logits = torch.randn(a.B, a.T_chunk, a.V, generator=g)
    labels = torch.randint(0, a.V, (a.B, a.T_chunk), generator=g)
    t_chunk = _time(lambda: torch.log_softmax(logits, -1).gather(-1, labels[..., None]), a.repeats)
    t_gather = t_chunk * a.T / a.T_chunk

    mask, keep, _ = trm_mask(lp, rlp, m, mode="max+avg", max_threshold=d_max, avg_threshold=d_avg)
    ref_mask, _ = _reference(lp, rlp, m, d_max, d_avg)
    out = {
        "B": a.B,
        "T": a.T,
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "seconds": {
            "trm_mask_with_metrics": t_trm,
            "trm_mask_with_metrics_and_verl_aliases": t_trm_alias,
            "verl_rollout_rejection_mask": t_verl,
            "unfused_reference": t_ref,
            f"logprob_gather_V{a.V}_scaled": t_gather,
        },
        "ratio_trm_to_gather": t_trm / t_gather,
        "ratio_trm_with_aliases_to_gather": t_trm_alias / t_gather,
        "ratio_trm_to_reference": t_trm / t_ref,
        "acceptance": float(keep.float().mean()),
        "mask_agrees_with_reference": bool(torch.equal(mask, ref_mask)),
    }
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
