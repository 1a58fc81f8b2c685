"""Parity with the installed TRL (``pip install -e '.[frameworks]'``, trl 1.16.0) on random inputs.

TRL computes its vLLM importance-sampling ratio and metrics inline in
``GRPOTrainer._generate_and_score_completions``; these tests cut those two blocks out of the
installed source and run them verbatim (a changed TRL fails here instead of silently passing).
OPSM is TRL's static ``GRPOTrainer.get_off_policy_mask``. float32/float64 in the default compute
mode and bfloat16 in ``compute_dtype="input"`` match TRL bit for bit (values and dtype).
"""

from __future__ import annotations

import inspect
import math
import textwrap
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from _framework_cases import DTYPES, random_case

from trm_bounds.masks import (
    TRL_IS_MODES,
    off_policy_sequence_mask,
    vllm_importance_sampling_ratio,
    vllm_is_ratio_metrics,
)

grpo = pytest.importorskip(
    "trl.trainer.grpo_trainer", reason="trl not installed (pip install -e '.[frameworks]')"
)
trl_utils = pytest.importorskip("trl.trainer.utils", reason="trl not installed")

N_CASES = 400  # random cases per dtype
HEADER = "if self.use_vllm and self.vllm_importance_sampling_correction:"


def _trl_blocks() -> tuple[str, str]:
    """(ratio block, metrics block): the bodies of the two ``if`` blocks in TRL's source."""
    lines = inspect.getsource(grpo.GRPOTrainer._generate_and_score_completions).splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() == HEADER:
            indent = len(line) - len(line.lstrip())
            body = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                body.append(nxt)
            blocks.append(textwrap.dedent("\n".join(body)))
    ratio = [b for b in blocks if "vllm_importance_sampling_ratio = torch.exp" in b]
    metrics = [b for b in blocks if "sampling/importance_sampling_ratio/min" in b]
    assert len(ratio) == 1 and len(metrics) == 1, "TRL's GRPOTrainer no longer has the blocks these tests run"
    return ratio[0], metrics[0]


RATIO_BLOCK, METRICS_BLOCK = _trl_blocks()


def _trl_ratio(lp, rlp, mask, mode, clip_min, clip_max):
    """TRL's own code: (ratio, metrics) for old = lp, sampling = rlp, completion_mask = mask."""
    me = SimpleNamespace(
        vllm_importance_sampling_mode=mode,
        vllm_importance_sampling_clip_min=clip_min,
        vllm_importance_sampling_clip_max=clip_max,
        _metrics={"train": defaultdict(list)},
        accelerator=SimpleNamespace(gather=lambda x: x.reshape(-1)),
    )
    ns = {
        "self": me, "torch": torch, "math": math, "completion_mask": mask, "tool_mask": None,
        "old_per_token_logps": lp, "sampling_per_token_logps": rlp, "mode": "train",
        "device": lp.device, "nanmin": trl_utils.nanmin, "nanmax": trl_utils.nanmax,
    }  # fmt: skip
    exec(RATIO_BLOCK, ns)
    exec(METRICS_BLOCK, ns)
    metrics = {k: v[0] for k, v in me._metrics["train"].items()}
    return ns["vllm_importance_sampling_ratio"], metrics


def _clips(rng):
    lo = [None, 0.5, float(rng.uniform(0.05, 0.9))][int(rng.integers(0, 3))]
    hi = [None, 3.0, float(rng.uniform(1.1, 10.0))][int(rng.integers(0, 3))]
    if lo is None and hi is None:
        hi = 3.0
    return lo, hi


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_vllm_is_ratio_and_metrics_match_trl(dtype_name):
    rng = np.random.default_rng(7000 + list(DTYPES).index(dtype_name))
    mode_c = "input" if dtype_name == "bfloat16" else "float32"
    for case in range(N_CASES):
        lp, rlp, m = random_case(rng, DTYPES[dtype_name])
        m = m.to(torch.int32)  # TRL's completion_mask is int
        mode = TRL_IS_MODES[case % 4]
        lo, hi = _clips(rng)
        if case % 5 == 0:  # the ratio of one row sits exactly on a clip bound
            row = lp - rlp
            hi = float(torch.exp(row[0, :1].sum() if mode.startswith("sequence") else row[0, 0]))
            if hi == 0 or not math.isfinite(hi) or (lo is not None and lo >= hi):
                lo = None
            hi = hi if hi > 0 and math.isfinite(hi) else 3.0
        want, want_metrics = _trl_ratio(lp, rlp, m, mode, lo, hi)
        got = vllm_importance_sampling_ratio(lp, rlp, m, mode, lo, hi, compute_dtype=mode_c)
        assert got.dtype == want.dtype and got.shape == want.shape, (case, mode)
        assert torch.equal(got, want), (case, mode, lo, hi)
        got_metrics = vllm_is_ratio_metrics(got, m, mode)
        for k, v in got_metrics.items():
            assert v == want_metrics[k] or (math.isnan(v) and math.isnan(want_metrics[k])), (case, k)


def test_nan_policy_ratio_one_is_trl():
    rng = np.random.default_rng(8)
    for case in range(100):
        lp, rlp, m = random_case(rng, torch.float32)
        rlp = rlp.clone()
        rlp[torch.from_numpy(rng.random(rlp.shape) < 0.2)] = math.nan  # tokens vLLM could not score
        mode = TRL_IS_MODES[case % 4]
        want, _ = _trl_ratio(lp, rlp, m, mode, None, 3.0)
        got = vllm_importance_sampling_ratio(lp, rlp, m, mode, None, 3.0, nan_policy="ratio_one")
        assert torch.equal(got, want)
        if (torch.isnan(rlp) & m.bool()).any():
            with pytest.raises(ValueError, match="rollout_log_prob contains NaN"):
                vllm_importance_sampling_ratio(lp, rlp, m, mode, None, 3.0)


def test_minus_inf_padding_gives_no_nan_in_trl_either():
    lp = torch.tensor([[-0.5, -math.inf]])
    rlp = torch.tensor([[-0.4, -math.inf]])
    m = torch.tensor([[1, 0]], dtype=torch.int32)
    for mode in TRL_IS_MODES:
        want, _ = _trl_ratio(lp, rlp, m, mode, None, 3.0)
        got = vllm_importance_sampling_ratio(lp, rlp, m, mode, None, 3.0)
        assert not torch.isnan(want).any() and torch.equal(got, want)


def test_clip_min_must_be_below_clip_max_as_in_trl():
    from trl import GRPOConfig

    with pytest.raises(ValueError, match="vllm_importance_sampling_clip_min"):
        GRPOConfig(
            output_dir="unused",
            use_cpu=True,
            bf16=False,
            vllm_importance_sampling_clip_min=3.0,
            vllm_importance_sampling_clip_max=3.0,
        )
    lp, rlp, m = random_case(np.random.default_rng(0), torch.float32)
    with pytest.raises(ValueError, match="clip_min"):
        vllm_importance_sampling_ratio(lp, rlp, m, "token_mask", 3.0, 3.0)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
def test_off_policy_mask_matches_trl(dtype_name):
    rng = np.random.default_rng(9000 + list(DTYPES).index(dtype_name))
    for case in range(N_CASES):
        lp, rlp, m = random_case(rng, DTYPES[dtype_name])
        m = m.to([torch.float32, torch.int64, torch.bool][case % 3])
        adv = torch.from_numpy(rng.standard_normal((lp.shape[0], 1))).to(lp.dtype)
        avg = ((rlp - lp) * m).sum(1) / m.sum(1).clamp(min=1)
        th = float(avg[0]) if case % 4 == 0 and float(avg[0]) >= 0 else float(rng.uniform(0, 2))
        want = grpo.GRPOTrainer.get_off_policy_mask(adv, lp, rlp, m, th)
        mode_c = "input" if dtype_name == "bfloat16" else "float32"
        got = off_policy_sequence_mask(adv, lp, rlp, m, th, compute_dtype=mode_c)
        assert got.dtype == want.dtype == m.dtype and torch.equal(got, want), case
