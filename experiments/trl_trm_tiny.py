"""TRM inside TRL's GRPOTrainer on CPU: a tiny random causal LM, a bf16-vs-fp32 rollout mismatch.

Everything is built in code (no download): a character-level tokenizer, a 2-layer Llama with
random weights, prompts of random letters, reward = fraction of 'a' in the completion. The
rollout engine is simulated by re-scoring the sampled tokens under bfloat16 autocast while the
trainer runs in float32 (``TRMGRPOTrainer(rollout_dtype=torch.bfloat16)``), so
log rho = log pi_fp32 - log pi_bf16 != 0 and a tight TRM-Max threshold rejects some samples.

    PYTHONPATH=. python experiments/trl_trm_tiny.py --steps 3 --delta 2e-7 [--log FILE.json]

Prints one JSON line per logged step (TRL's log_history: loss, trm/<method>/acceptance,
trm/certificate/*, sampling/sampling_logp_difference/*); writes nothing in the clone unless
``--log`` names a file. Needs ``pip install -e '.[frameworks]'``.
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import tempfile
from pathlib import Path


def char_tokenizer():
    """A character-level PreTrainedTokenizerFast built in code: a-z, space, <pad>, <bos>, <eos>."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", " ", *string.ascii_lowercase])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def tiny_model(tokenizer, seed: int):
    """A 2-layer Llama (hidden 32) with random weights, float32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def reward_a(completions, **kwargs):
    """Fraction of 'a' in each completion (a reward the random model can move)."""
    return [c.count("a") / max(len(c), 1) for c in completions]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--method", default="trm-max", help="a key of trm_bounds.masks.METHODS")
    p.add_argument(
        "--delta", type=float, default=2e-7, help="TRM-Max threshold on max_t k2 (|log rho| <= 6.3e-4)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", type=Path, default=None, help="write the log history here (JSON)")
    args = p.parse_args(argv)
    if args.log is not None and args.log.exists():
        print(f"error: {args.log} exists; not overwriting", file=sys.stderr)
        return 2

    import numpy as np
    import torch
    from datasets import Dataset
    from trl import GRPOConfig

    from trm_bounds.integrations.trl import TRMGRPOTrainer

    torch.set_num_threads(1)
    tokenizer = char_tokenizer()
    model = tiny_model(tokenizer, args.seed)
    rng = np.random.default_rng(args.seed)
    prompts = ["".join(rng.choice(list("abcde "), 6)) for _ in range(32)]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = GRPOConfig(
            output_dir=tmp, use_cpu=True, bf16=False, max_steps=args.steps, learning_rate=1e-3,
            per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
            logging_steps=1, report_to="none", save_strategy="no", seed=args.seed,
            temperature=1.0, beta=0.0, dataloader_num_workers=0,
        )  # fmt: skip
        params = {"delta": args.delta} if args.method == "trm-max" else {}
        data = Dataset.from_dict({"prompt": prompts})
        trainer = TRMGRPOTrainer(
            model=model, reward_funcs=reward_a, args=cfg, train_dataset=data, processing_class=tokenizer,
            trm_method=args.method, trm_params=params, rollout_dtype=torch.bfloat16,
        )  # fmt: skip
        trainer.train()
        history = [h for h in trainer.state.log_history if "loss" in h]
    for h in history:
        print(json.dumps(h))
    if args.log is not None:
        args.log.write_text(json.dumps(history, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
