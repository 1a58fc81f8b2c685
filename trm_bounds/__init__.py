"""trm_bounds: verify, measure and apply the error bounds of Trust Region Masking (TRM).

Layers (data flows one way): policies -> pair -> exact quantities -> bounds -> reports/CLI;
beside them: divergences, symbolic, masks, certify, trainer, paper.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .bounds import (
    BOUNDS,
    PUBLISHED_BOUNDS,
    UNIFIED_OF,
    BoundInputs,
    evaluate_bounds,
    get_bound,
    register_bound,
)
from .divergences import k1, k2, k3, pinsker_tv, token_kl, token_kl_from_logits, token_tv, token_tv_from_logits

__all__ = [
    "__version__",
    "BOUNDS",
    "PUBLISHED_BOUNDS",
    "UNIFIED_OF",
    "BoundInputs",
    "evaluate_bounds",
    "get_bound",
    "register_bound",
    "k1",
    "k2",
    "k3",
    "pinsker_tv",
    "token_kl",
    "token_kl_from_logits",
    "token_tv",
    "token_tv_from_logits",
]

# Optional layers register their public names below as they land (lazy where heavy).

from .masks import (  # noqa: E402
    METHODS,
    MaskResult,
    masked_policy_loss,
    offpolicy_metrics,
    rollout_is_weights,
    rollout_rejection_mask,
    sequence_mask,
    trm_mask,
    vllm_importance_sampling_ratio,
)

__all__ += [
    "METHODS",
    "MaskResult",
    "masked_policy_loss",
    "offpolicy_metrics",
    "rollout_is_weights",
    "rollout_rejection_mask",
    "sequence_mask",
    "trm_mask",
    "vllm_importance_sampling_ratio",
]

# Exact enumerable environment (issue 4): policies -> pair -> exact engine.
from .exact import MASK_RULES, evaluate_pair_file, exact_J, exact_quantities
from .pair import PolicyPair, make_pair, sample_trajectories, token_kl_along, token_logprobs
from .policies import MoEConfig, MoEPolicy, TabularPolicy, TransformerConfig, TransformerPolicy

__all__ += [
    "MASK_RULES",
    "evaluate_pair_file",
    "exact_J",
    "exact_quantities",
    "PolicyPair",
    "make_pair",
    "sample_trajectories",
    "token_kl_along",
    "token_logprobs",
    "MoEConfig",
    "MoEPolicy",
    "TabularPolicy",
    "TransformerConfig",
    "TransformerPolicy",
]

# Symbolic derivations, paper tables and claims audit (issue 3). sympy is slow to import, so these
# names load on first use (PEP 562); a __getattr__ defined above stays in the chain.
_LAZY_ISSUE3 = {
    **dict.fromkeys(
        ("Derivation", "bound_expr", "lambdify_bound", "derivations", "leading_exponents"), "symbolic"
    ),
    **dict.fromkeys(
        ("TableCell", "Claim", "paper_tables", "audit", "register_evidence", "parse_printed", "printed_verdict"),
        "paper",
    ),
}
_getattr_before_issue3 = globals().get("__getattr__")


def __getattr__(name):
    if name in _LAZY_ISSUE3:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY_ISSUE3[name]}", __name__), name)
    if _getattr_before_issue3 is not None:
        return _getattr_before_issue3(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ += list(_LAZY_ISSUE3)

# Finite-state (chain) pairs and their exact long-horizon DP engine (issue 6).
from .chain import (  # noqa: E402
    ChainPair,
    chain_quantities,
    chain_quantities_batch,
    chain_to_tree,
    evaluate_chain_file,
    tree_to_chain,
)

__all__ += [
    "ChainPair",
    "chain_quantities",
    "chain_quantities_batch",
    "chain_to_tree",
    "evaluate_chain_file",
    "tree_to_chain",
]

# The trainer with mechanistic rollout/training mismatch and exact per-step certificates (issue 7).
from .mismatch import MISMATCH_MECHANISMS, Mismatch, RolloutEngine, parse_mismatch  # noqa: E402
from .trainer import TRAIN_METHODS, TrainConfig, TrainResult, train  # noqa: E402

__all__ += [
    "MISMATCH_MECHANISMS",
    "Mismatch",
    "RolloutEngine",
    "parse_mismatch",
    "TRAIN_METHODS",
    "TrainConfig",
    "TrainResult",
    "train",
]
