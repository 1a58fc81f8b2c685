"""Which kind of `.npz` input a file is, for a hint when a command gets the wrong kind.

Three kinds of input file ship with this package (docs/formats.md describes each):
a tabular policy pair, a finite-state chain pair and a batch of log-probs. Each is told apart
by arrays only it has. Numpy-free and import-free: the loaders of every layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

# kind -> (arrays that mark it, how to read it on the command line, in Python)
FILE_KINDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "pair": (
        ("logp_roll_1", "logp_theta_1", "reward"),
        "trm-bounds exact --pair",
        "trm_bounds.PolicyPair.load",
    ),
    "chain": (
        ("transition", "init_state", "reward_final"),
        "trm-bounds exact --chain",
        "trm_bounds.ChainPair.load",
    ),
    "log-prob batch": (
        ("log_prob", "rollout_log_prob", "response_mask"),
        "trm-bounds certify --logprobs",
        "trm_bounds.certify.load_logprobs",
    ),
}


def guess_kind(names: Iterable[str]) -> str | None:
    """The kind whose marker arrays are all among `names` (None if no kind fits)."""
    present = set(names)
    for kind, (markers, _, _) in FILE_KINDS.items():
        if set(markers) <= present:
            return kind
    return None


def wrong_kind_hint(names: Iterable[str], expected: str) -> str:
    """'' or '; this looks like a chain file: use trm-bounds exact --chain (Python: ...)' when
    the arrays `names` mark a kind other than `expected`; for an error message's tail."""
    kind = guess_kind(names)
    if kind is None or kind == expected:
        return ""
    _, cli, py = FILE_KINDS[kind]
    return f"; this looks like a {kind} file: use {cli} (Python: {py})"
