"""Smoke test: experiments/trl_trm_tiny.py trains TRL's GRPOTrainer with TRM on CPU (tiny random
Llama, bf16 rollout vs fp32 training) and its log shows acceptance < 1 under that mismatch."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="trl not installed (pip install -e '.[frameworks]')")

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "trl_trm_tiny.py"


def test_trl_example_trains_with_trm_and_rejects_under_bf16_mismatch(tmp_path):
    spec = importlib.util.spec_from_file_location("trl_trm_tiny", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    log = tmp_path / "log.json"
    assert mod.main(["--steps", "3", "--log", str(log)]) == 0
    history = json.loads(log.read_text())
    assert len(history) == 3
    acc = [h["trm/trm-max/acceptance"] for h in history]
    assert min(acc) < 1.0, acc  # the bf16 rollout mismatch makes TRM-Max reject some samples
    assert all(0.0 <= a <= 1.0 for a in acc)
    assert all(h["sampling/sampling_logp_difference/max"] > 0 for h in history)  # a real mismatch
    assert all(math.isfinite(h["loss"]) for h in history)
    assert all(h["trm/certificate/bound"] >= 0 for h in history)
    assert mod.main(["--steps", "1", "--log", str(log)]) == 2  # never overwrites a log
