"""trm_bounds: verify, measure and apply the error bounds of Trust Region Masking (TRM).

Layers (data flows one way, down this list; a module imports only from its own layer or above):

1. maths: divergences, bounds (+ refined: halved constants), symbolic (sympy), confidence;
2. policies and pairs: policies, pair, mismatch, adversarial (random pairs for tests/evidence);
3. exact quantities: exact (general engine), exact_batch (many tiny pairs), exact_mp (mpmath),
   chain (finite-state chains);
4. applications: masks/, certify, trainer;
5. reports: report (scaling figure), studies/ (error_vs_horizon, training), audit/ (printed,
   tables, search, evidence/, outputs, claim, claims_bounds, claims_practice, claims);
6. jobs (the figure jobs, listed once), figures (`trm-bounds figures`), cli + commands/.

Only the numpy-only bound layer loads with the package: `bounds`, and `refined`, which
registers the ``*_refined`` bounds in ``BOUNDS`` (so ``BOUNDS`` is the same whichever module a
user imports first). Every other public name loads on first use (PEP 562) from the module
named in ``_LAZY``, so ``import trm_bounds.bounds`` pulls in neither torch nor sympy.
``trm_bounds.audit`` is the audit package, callable like the function ``audit(quick=False)``;
``trm_bounds.paper`` is a deprecated alias of the audit wing.
"""

import importlib as _importlib
import warnings as _warnings

__version__ = "0.1.0"

from .bounds import (  # noqa: E402 - after __version__, which submodules may read
    BOUND_INFO,
    BOUNDS,
    PUBLISHED_BOUNDS,
    UNIFIED_OF,
    BoundInfo,
    BoundInputs,
    evaluate_bounds,
    get_bound,
    register_bound,
)
from .refined import REFINED_OF, tight_pair  # noqa: E402 - registers the *_refined bounds

# public name -> module that defines it, loaded on first access; in __all__'s order
_LAZY = {
    **dict.fromkeys(
        (
            "k1",
            "k2",
            "k3",
            "pinsker_tv",
            "token_kl",
            "token_kl_from_logits",
            "token_tv",
            "token_tv_from_logits",
        ),
        "divergences",
    ),
    **dict.fromkeys(("MASK_RULES", "evaluate_pair_file", "exact_J", "exact_quantities"), "exact"),
    **dict.fromkeys(
        ("exact_quantities_streamed", "PairSource", "ArrayPairSource", "SyntheticPairSource"), "exact_stream"
    ),
    **dict.fromkeys(
        ("PolicyPair", "make_pair", "sample_trajectories", "token_kl_along", "token_logprobs"), "pair"
    ),
    **dict.fromkeys(
        ("MoEConfig", "MoEPolicy", "TabularPolicy", "TransformerConfig", "TransformerPolicy"), "policies"
    ),
    **dict.fromkeys(
        (
            "ChainPair",
            "chain_quantities",
            "chain_quantities_batch",
            "chain_to_tree",
            "evaluate_chain_file",
            "tree_to_chain",
        ),
        "chain",
    ),
    **dict.fromkeys(
        (
            "METHODS",
            "MaskResult",
            "masked_policy_loss",
            "offpolicy_metrics",
            "rollout_is_weights",
            "rollout_rejection_mask",
            "sequence_mask",
            "trm_mask",
            "vllm_importance_sampling_ratio",
        ),
        "masks",
    ),
    **dict.fromkeys(
        (
            "MISMATCH_MECHANISMS",
            "Mismatch",
            "RolloutEngine",
            "mismatch_table",
            "parse_mismatch",
            "resolve_mismatch",
        ),
        "mismatch",
    ),
    "make_policy": "policies",
    "sample_certificate": "certify",  # (the name `certify` is the submodule trm_bounds.certify)
    **dict.fromkeys(("TRAIN_METHODS", "TrainConfig", "TrainResult", "train"), "trainer"),
    **dict.fromkeys(
        ("Derivation", "bound_expr", "lambdify_bound", "derivations", "leading_exponents"), "symbolic"
    ),
    **dict.fromkeys(("TableCell", "paper_tables"), "audit.tables"),
    **dict.fromkeys(("parse_printed", "printed_verdict"), "audit.printed"),
    **dict.fromkeys(("Claim", "register_evidence"), "audit.claim"),
    "audit": "audit",  # the package itself, callable like the function (trm_bounds.audit)
}
# deprecated public name -> (module, current name); kept for one release with a warning
_DEPRECATED = {"log_softmax_log1p": ("divergences", "log_softmax")}


def __getattr__(name):
    if name == "audit":  # the package (callable), not the function inside it
        return _importlib.import_module(".audit", __name__)
    if name in _LAZY:
        value = getattr(_importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _DEPRECATED:
        module, new = _DEPRECATED[name]
        _warnings.warn(
            f"trm_bounds.{name} is deprecated and will be removed in the next release; "
            f"use trm_bounds.{module}.{new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_importlib.import_module(f".{module}", __name__), new)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    "__version__",
    # bounds (numpy, loaded with the package)
    "BOUNDS",
    "BOUND_INFO",
    "PUBLISHED_BOUNDS",
    "UNIFIED_OF",
    "BoundInfo",
    "BoundInputs",
    "evaluate_bounds",
    "get_bound",
    "register_bound",
    # divergences, the exact engine, chains, masks, trainer, symbolic, tables, audit (lazy)
    *_LAZY,
    # halved-constant bounds (docs/theory.md section 9)
    "REFINED_OF",
    "log_softmax_log1p",
    "tight_pair",
]
