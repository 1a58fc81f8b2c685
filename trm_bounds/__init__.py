"""trm_bounds: verify, measure and apply the error bounds of Trust Region Masking (TRM).

Layers (data flows one way, down this list; a module imports only from its own layer or above):

1. maths: divergences, bounds (+ refined: halved constants), symbolic (sympy);
2. policies and pairs: policies, pair, mismatch, adversarial (random pairs for tests/evidence);
3. exact quantities: exact (general engine), exact_batch (many tiny pairs), exact_mp (mpmath),
   chain (finite-state chains);
4. applications: masks, certify, trainer;
5. reports: report (scaling figure), studies/ (error_vs_horizon, training), audit/ (printed,
   tables, search, evidence/, outputs, claim, claims_bounds, claims_practice, claims);
6. jobs (the figure jobs, listed once), figures (`trm-bounds figures`), cli + commands/.

sympy-backed names (symbolic, the audit) load on first use. `trm_bounds.paper` is a
deprecated alias of the audit wing.
"""

from __future__ import annotations

import importlib

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
from .chain import (
    ChainPair,
    chain_quantities,
    chain_quantities_batch,
    chain_to_tree,
    evaluate_chain_file,
    tree_to_chain,
)
from .divergences import (
    k1,
    k2,
    k3,
    pinsker_tv,
    token_kl,
    token_kl_from_logits,
    token_tv,
    token_tv_from_logits,
)
from .exact import MASK_RULES, evaluate_pair_file, exact_J, exact_quantities
from .masks import (
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
from .mismatch import MISMATCH_MECHANISMS, Mismatch, RolloutEngine, parse_mismatch
from .pair import PolicyPair, make_pair, sample_trajectories, token_kl_along, token_logprobs
from .policies import MoEConfig, MoEPolicy, TabularPolicy, TransformerConfig, TransformerPolicy
from .refined import REFINED_OF, log_softmax_log1p, tight_pair  # registers the *_refined bounds
from .trainer import TRAIN_METHODS, TrainConfig, TrainResult, train

# sympy is slow to import: these names load on first use (PEP 562).
_LAZY = {
    **dict.fromkeys(
        ("Derivation", "bound_expr", "lambdify_bound", "derivations", "leading_exponents"), "symbolic"
    ),
    **dict.fromkeys(("TableCell", "paper_tables"), "audit.tables"),
    **dict.fromkeys(("parse_printed", "printed_verdict"), "audit.printed"),
    **dict.fromkeys(("Claim", "register_evidence"), "audit.claim"),
    "audit": "audit",  # the package itself, callable like the function (trm_bounds.audit)
}


def __getattr__(name):
    if name == "audit":
        return importlib.import_module(".audit", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    # bounds and divergences
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
    # exact enumerable environment
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
    # finite-state chains
    "ChainPair",
    "chain_quantities",
    "chain_quantities_batch",
    "chain_to_tree",
    "evaluate_chain_file",
    "tree_to_chain",
    # masks for real trainers
    "METHODS",
    "MaskResult",
    "masked_policy_loss",
    "offpolicy_metrics",
    "rollout_is_weights",
    "rollout_rejection_mask",
    "sequence_mask",
    "trm_mask",
    "vllm_importance_sampling_ratio",
    # trainer
    "MISMATCH_MECHANISMS",
    "Mismatch",
    "RolloutEngine",
    "parse_mismatch",
    "TRAIN_METHODS",
    "TrainConfig",
    "TrainResult",
    "train",
    # symbolic, tables, audit (lazy)
    *_LAZY,
    # halved-constant bounds (THEORY.md section 9)
    "REFINED_OF",
    "log_softmax_log1p",
    "tight_pair",
]
