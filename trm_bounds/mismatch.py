"""The one vocabulary of mismatch mechanisms: how pi_roll comes to differ from pi_theta.

docs/theory.md section 8 names three real sources: backend numerics, MoE routing flips and
staleness. Each mechanism below simulates one of them, has ONE name and ONE strength S (its
meaning, its default), and says how it applies to each of three targets:

- ``tree``: a policy pair on the enumerable tree (`pair.make_pair`, ``trm-bounds exact
  --policy``): pi_theta = the policy, pi_roll = the policy perturbed; levels (P, V**(t-1), V).
- ``chain``: a finite-state pair (`chain.random_chain_pair`): pi_roll = softmax of random
  logits (S, V), pi_theta = softmax of the perturbed logits.
- ``engine``: the trainer's rollout engine (`RolloutEngine`, ``trm-bounds train``):
  pi_roll = the engine's view of the current parameters; mechanisms combine with ``+``.

Registry (`MISMATCH_MECHANISMS`, name -> `MismatchMechanism`; ``trm-bounds exact
--list-mismatch`` prints it):

  name       simulates           strength S (default)                        targets        old spelling
  dense      backend numerics    std of N(0,1) noise on every logit (0.1)    tree, chain    -
  reverse    MoE routing flips   fraction of contexts, logits reversed (0.1) tree, chain    sparse (tree)
  swap       MoE routing flips   fraction of contexts, top-2 swapped (0.1)   tree, chain    sparse (chain)
  precision  backend numerics    rollout dtype, bf16 or fp16 (bf16)          tree, engine   -
  moe        MoE routing flips   std of noise on router logits (0.3)         tree, engine   -
  step       staleness           one exact-gradient step of size S (0.1)     tree           staleness (tree)
  drift      staleness           S x a shared update direction (0.1)         chain          stale (chain)
  lag        staleness           k optimizer steps old, integer (1)          engine         stale (engine)

An old spelling still works, with a DeprecationWarning (API) or one line on stderr (CLI)
naming the new name. A mechanism used on a target it has no meaning for raises ValueError
naming both. Strings: ``"moe"`` (default strength), ``"moe=0.1"`` (name=strength), and for
the engine ``"none"`` or ``"moe=0.1+precision=fp16+lag=2"``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from .divergences import log_softmax
from .policies import absorb_eos, exact_J_tensor

__all__ = [
    "MISMATCH_MECHANISMS",
    "MISMATCH_TARGETS",
    "PRECISION_DTYPES",
    "Mismatch",
    "MismatchMechanism",
    "MechanismView",
    "RolloutEngine",
    "parse_mismatch",
    "resolve_mismatch",
    "mismatch_table",
]

PRECISION_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
MISMATCH_TARGETS = {
    "tree": "a policy pair on the tree (make_pair, exact --policy)",
    "chain": "a finite-state chain pair (random_chain_pair)",
    "engine": "the trainer's rollout engine (RolloutEngine, train --mismatch)",
}


# --------------------------------------------------------------------------- strengths
def _real(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"mismatch {name!r}: strength {value!r} is not a number") from None
    if isinstance(value, bool) or not (math.isfinite(x) and x >= 0):
        raise ValueError(f"mismatch {name!r}: strength must be finite and >= 0, got {value!r}")
    return x


def _fraction(name: str, value) -> float:
    x = _real(name, value)
    if x > 1:
        raise ValueError(f"mismatch {name!r}: strength is a fraction of contexts and must be <= 1, got {x:g}")
    return x


def _steps(name: str, value) -> int:
    x = _real(name, value)
    if not x.is_integer():
        raise ValueError(f"mismatch {name!r}: strength is a number of steps, an integer >= 0, got {value!r}")
    return int(x)


def _dtype(name: str, value) -> str:
    if isinstance(value, str) and value.strip() in PRECISION_DTYPES:
        return value.strip()
    raise ValueError(
        f"mismatch {name!r}: strength must be one of {', '.join(PRECISION_DTYPES)}, got {value!r}"
    )


def _old_dtype(value) -> str | None:
    """make_pair's old numeric precision strength: S < 0.5 -> bf16, S >= 0.5 -> fp16 (None: not a number)."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return ("bf16" if x < 0.5 else "fp16") if math.isfinite(x) and x >= 0 else None


# --------------------------------------------------------------------------- tree: pi_roll from the policy
# Signature: (policy, theta, S, gen, reward, prompt_probs) -> (roll, theta); theta = the policy's
# detached levels (P, V**(t-1), V) float64; gen a torch.Generator seeded by make_pair's seed.
def _tree_dense(policy, theta, s, gen, reward, prompt_probs):
    """pi_roll = softmax(log pi_theta + S * N(0, 1)) at every context."""
    eos = getattr(policy, "eos", None)
    noisy = (x + s * torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in theta)
    return [absorb_eos(log_softmax(z), k, eos) for k, z in enumerate(noisy)], theta


def _tree_reverse(policy, theta, s, gen, reward, prompt_probs):
    """At each context with probability S, pi_roll's log-probs are pi_theta's in reversed token order."""
    eos, roll = getattr(policy, "eos", None), []
    for k, x in enumerate(theta):
        flip = torch.rand(x.shape[:-1], generator=gen, dtype=torch.float64) < s  # (P, V**k)
        roll.append(absorb_eos(torch.where(flip[..., None], x.flip(-1), x), k, eos))
    return roll, theta


def _tree_swap(policy, theta, s, gen, reward, prompt_probs):
    """At each context with probability S, pi_roll swaps pi_theta's two most likely tokens."""
    eos, roll = getattr(policy, "eos", None), []
    for k, x in enumerate(theta):
        flip = torch.rand(x.shape[:-1], generator=gen, dtype=torch.float64) < s  # (P, V**k)
        top2 = torch.topk(x, 2, dim=-1).indices  # (P, V**k, 2)
        swapped = x.scatter(-1, top2, x.gather(-1, top2.flip(-1)))
        roll.append(absorb_eos(torch.where(flip[..., None], swapped, x), k, eos))
    return roll, theta


def _tree_precision(policy, theta, s, gen, reward, prompt_probs):
    """pi_roll = the same policy evaluated with its forward pass in bf16 / fp16."""
    with torch.no_grad():
        return [x.detach() for x in policy.log_prob_tree(compute_dtype=PRECISION_DTYPES[s])], theta


def _tree_moe(policy, theta, s, gen, reward, prompt_probs):
    """pi_roll = the MoE policy with N(0, S^2) noise on its router logits before top-k."""
    if not hasattr(policy, "router_margin"):
        raise ValueError("mismatch 'moe' needs an MoE policy (--policy moe)")
    with torch.no_grad():
        return [x.detach() for x in policy.log_prob_tree(router_noise_std=s, generator=gen)], theta


def _tree_step(policy, theta, s, gen, reward, prompt_probs):
    """pi_roll = the policy; pi_theta = the policy after one ascent step theta + S g / |g|, g = grad J.

    A flat J (g = 0) steps along a random direction instead. The policy's parameters are restored.
    """
    params = [p for p in policy.parameters() if p.requires_grad]
    J = exact_J_tensor(policy.log_prob_tree(), reward, prompt_probs)
    grads = torch.autograd.grad(J, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    if float(norm) == 0.0:  # flat J: step in a random direction instead
        grads = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
    old = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(s * g / norm)
        stepped = [x.detach() for x in policy.log_prob_tree()]
        for p, o in zip(params, old):
            p.copy_(o)
    return theta, stepped


# --------------------------------------------------------------------------- chain: pi_theta's logits
# Signature: (logits (S, V) or (T, S, V) float64, S, rng numpy Generator) -> perturbed logits.
def _chain_dense(logits, s, rng):
    """Backend-like dense noise: every logit moves by S * N(0, 1)."""
    return logits + s * rng.standard_normal(logits.shape)


def _chain_reverse(logits, s, rng):
    """In a fraction S of the states the logits are reversed in token order."""
    flip = rng.random(logits.shape[:-1]) < s
    return np.where(flip[..., None], logits[..., ::-1], logits)


def _chain_swap(logits, s, rng):
    """MoE-like routing flips: in a fraction S of the states the top-2 logits swap."""
    out = logits.copy()
    flip = rng.random(logits.shape[:-1]) < s
    order = np.argsort(-logits, axis=-1)
    i1, i2 = order[..., 0], order[..., 1]
    rows = np.nonzero(flip)
    a, b = out[rows + (i1[rows],)].copy(), out[rows + (i2[rows],)].copy()
    out[rows + (i1[rows],)], out[rows + (i2[rows],)] = b, a
    return out


def _chain_drift(logits, s, rng):
    """Parameter lag: logits_theta = logits_roll + S * G, G = g + 0.5 N(0, 1) per state, g ~ N(0, I_V)
    one direction in token space shared by every state (a low-rank update)."""
    G = rng.standard_normal(logits.shape[-1:])
    G = G + 0.5 * rng.standard_normal(logits.shape)
    return logits + s * G


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class MismatchMechanism:
    """One mechanism: what it simulates, its strength S, and how it applies to each target.

    `tree` / `chain` are the functions above (None: no meaning there); `engine` is the field
    of `Mismatch` that S sets (None: the rollout engine does not simulate it); `old` maps a
    target to this mechanism's old spelling there.
    """

    name: str
    simulates: str  # docs/theory.md section 8: "backend numerics", "MoE routing flips" or "staleness"
    description: str  # what happens, with S the strength
    strength: str  # what S means
    default: object  # S of a bare name
    check: Callable[[str, object], object]  # (name, S) -> validated S, or ValueError
    tree: Callable | None = None
    chain: Callable | None = None
    engine: str | None = None
    old: dict[str, str] = field(default_factory=dict)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t for t in MISMATCH_TARGETS if self.applies_to(t))

    def applies_to(self, target: str) -> bool:
        return {"tree": self.tree, "chain": self.chain, "engine": self.engine}[target] is not None

    @property
    def knob(self) -> str | None:
        """The `Mismatch` field this mechanism sets in the rollout engine (None: not an engine mechanism)."""
        return self.engine


def _mechanisms(*ms: MismatchMechanism) -> dict[str, MismatchMechanism]:
    return {m.name: m for m in ms}


MISMATCH_MECHANISMS: dict[str, MismatchMechanism] = _mechanisms(
    MismatchMechanism(
        "dense", "backend numerics", "every logit moves by S * N(0, 1)",
        "std of the Gaussian noise on the logits", 0.1, _real, tree=_tree_dense, chain=_chain_dense,
    ),
    MismatchMechanism(
        "reverse", "MoE routing flips", "at a fraction S of the contexts the logits are reversed in order",
        "fraction of contexts in [0, 1]", 0.1, _fraction, tree=_tree_reverse, chain=_chain_reverse,
        old={"tree": "sparse"},
    ),
    MismatchMechanism(
        "swap", "MoE routing flips", "at a fraction S of the contexts the two largest logits swap",
        "fraction of contexts in [0, 1]", 0.1, _fraction, tree=_tree_swap, chain=_chain_swap,
        old={"chain": "sparse"},
    ),
    MismatchMechanism(
        "precision", "backend numerics", "the rollout forward pass runs in bf16 or fp16, training in float64",
        "rollout dtype: bf16 (8 mantissa bits, stronger) or fp16 (11 bits)", "bf16", _dtype,
        tree=_tree_precision, engine="precision",
    ),
    MismatchMechanism(
        "moe", "MoE routing flips", "rollout router logits + N(0, S^2) noise: near-tied top-k choices flip",
        "std of the noise on the router logits (needs an MoE policy)", 0.3, _real, tree=_tree_moe,
        engine="router_noise_std",
    ),
    MismatchMechanism(
        "step", "staleness", "pi_theta = pi_roll after one exact-gradient ascent step of size S on J",
        "parameter step length along grad J / |grad J|", 0.1, _real, tree=_tree_step,
        old={"tree": "staleness"},
    ),
    MismatchMechanism(
        "drift", "staleness", "pi_theta's logits = pi_roll's + S * G, G a shared random update direction",
        "multiple of the update direction G", 0.1, _real, chain=_chain_drift, old={"chain": "stale"},
    ),
    MismatchMechanism(
        "lag", "staleness", "rollouts come from the parameters S optimizer steps old (the first S steps: "
        "the initial parameters)", "an integer number of optimizer steps k", 1, _steps, engine="staleness",
        old={"engine": "stale"},
    ),
)  # fmt: skip


def _names_for(target: str) -> list[str]:
    return [n for n, m in MISMATCH_MECHANISMS.items() if m.applies_to(target)]


def _old_names(target: str) -> dict[str, str]:
    return {m.old[target]: n for n, m in MISMATCH_MECHANISMS.items() if target in m.old}


def _mechanism(name: str, target: str) -> tuple[MismatchMechanism, str | None]:
    """(mechanism, note or None) for a name on a target; ValueError naming both when it does not apply."""
    if target not in MISMATCH_TARGETS:
        raise ValueError(f"target must be one of {', '.join(MISMATCH_TARGETS)}, got {target!r}")
    known = ", ".join(_names_for(target) + (["none"] if target == "engine" else []))
    old = _old_names(target)
    if name in old:
        new = old[name]
        return MISMATCH_MECHANISMS[new], f"mismatch {name!r} is the old spelling of {new!r}; use {new!r}"
    mech = MISMATCH_MECHANISMS.get(name)
    if mech is None:
        raise ValueError(
            f"mismatch: unknown mechanism {name!r}; known for {MISMATCH_TARGETS[target]}: {known}"
        )
    if not mech.applies_to(target):
        raise ValueError(
            f"mismatch {name!r} does not apply to {MISMATCH_TARGETS[target]}; "
            f"it applies to {', '.join(mech.targets)}; mechanisms here: {known}"
        )
    return mech, None


def _strength(mech: MismatchMechanism, value) -> tuple[object, str | None]:
    """Validated S (the default for None) and a note for the old numeric precision strength."""
    if value is None:
        return mech.default, None
    if mech.name == "precision" and _old_dtype(value) is not None:
        new = _old_dtype(value)
        return new, f"mismatch 'precision' with numeric strength {value!r} is the old spelling of {new!r}"
    if isinstance(value, str):
        value = value.strip()
    return mech.check(mech.name, value), None


def resolve_mismatch(
    mismatch: str, strength=None, *, target: str
) -> tuple[tuple[tuple[MismatchMechanism, object], ...], tuple[str, ...]]:
    """The mechanisms and validated strengths that `mismatch` names on `target`, and notes.

    Args:
      mismatch: a name (``"moe"``), ``name=S`` (``"moe=0.1"``), or for target ``engine`` several
        joined by ``+`` or ``"none"``. Old spellings are accepted and give a note.
      strength: S for the mechanism(s) named without ``=S``: a number, a string, or for several
        mechanisms their strengths joined by ``+`` (``"0.1+fp16"``); None: each default.
      target: "tree", "chain" or "engine" (MISMATCH_TARGETS).

    Returns:
      ((mechanism, S), ...) in the order given, and one note per old spelling used (the API
      turns them into DeprecationWarnings, the CLI prints them). ValueError names the
      mechanism, the target and the strength that is wrong.
    """
    if not isinstance(mismatch, str) or not mismatch.strip():
        raise ValueError(f"mismatch must be a non-empty mechanism name, got {mismatch!r}")
    parts = [p.strip() for p in mismatch.split("+")]
    if mismatch.strip() == "none":
        if target != "engine":
            raise ValueError(f"mismatch 'none' applies only to {MISMATCH_TARGETS['engine']}")
        if strength is not None:
            raise ValueError(f"strength: mismatch 'none' takes no strength, got {strength!r}")
        return (), ()
    if len(parts) > 1 and target != "engine":
        raise ValueError(f"mismatch {mismatch!r}: one mechanism at a time for {MISMATCH_TARGETS[target]}")
    given = None
    if strength is not None:
        given = [s.strip() for s in strength.split("+")] if isinstance(strength, str) else [strength]
        if len(given) != len(parts):
            raise ValueError(
                f"strength {strength!r}: give one per mechanism of {mismatch!r} ({len(parts)}), joined by '+'"
            )
    out, notes, seen = [], [], set()
    for i, part in enumerate(parts):
        name, eq, value = (x.strip() for x in part.partition("="))
        mech, note = _mechanism(name, target)
        if mech.name in seen:
            raise ValueError(f"mismatch: mechanism {mech.name!r} given twice in {mismatch!r}")
        seen.add(mech.name)
        if eq and given is not None:
            raise ValueError(f"mismatch {part!r}: strength given twice (in {mismatch!r} and as {given[i]!r})")
        s, s_note = _strength(mech, value if eq else None if given is None else given[i])
        out.append((mech, s))
        notes += [n for n in (note, s_note) if n]
    return tuple(out), tuple(notes)


def resolve_one(
    mismatch: str, strength, target: str, stacklevel: int = 3
) -> tuple[MismatchMechanism, object]:
    """The one (mechanism, S) of `resolve_mismatch` for tree / chain; old spellings: DeprecationWarning."""
    ((mech, s),), notes = resolve_mismatch(mismatch, strength, target=target)
    _warn(notes, stacklevel)
    return mech, s


def _warn(notes, stacklevel: int) -> None:
    """Each note as a DeprecationWarning; stacklevel counts from _warn's caller (1 = that caller)."""
    for note in notes:
        warnings.warn(note, DeprecationWarning, stacklevel=stacklevel + 1)


def mismatch_table() -> list[dict]:
    """One row per mechanism (name, simulates, description, strength, default, targets, old spellings)."""
    return [
        {
            "name": m.name,
            "simulates": m.simulates,
            "description": m.description,
            "strength": m.strength,
            "default": m.default,
            "targets": list(m.targets),
            "old_spellings": {t: o for t, o in m.old.items()},
        }
        for m in MISMATCH_MECHANISMS.values()
    ]


class MechanismView(Mapping):
    """Read-only {name: value} of the mechanisms that apply to one target (``pair.MISMATCHES``,
    ``chain.MISMATCHES``): iterates the registry's names; an old spelling still looks up, with a
    DeprecationWarning naming the new one."""

    def __init__(self, target: str, value: Callable[[MismatchMechanism], object]):
        self._target, self._value = target, value

    def __getitem__(self, name):
        try:
            mech, note = _mechanism(name, self._target)
        except (ValueError, TypeError):
            raise KeyError(name) from None
        _warn([note] if note else [], 2)
        return self._value(mech)

    def __contains__(self, name) -> bool:
        return name in _names_for(self._target) or name in _old_names(self._target)

    def __iter__(self) -> Iterator[str]:
        return iter(_names_for(self._target))

    def __len__(self) -> int:
        return len(_names_for(self._target))

    def __repr__(self) -> str:
        return f"MechanismView({self._target!r}, {list(self)})"


# --------------------------------------------------------------------------- engine
@dataclass(frozen=True)
class Mismatch:
    """A combination of the rollout engine's mechanisms with their strengths (all off = no mismatch)."""

    precision: str | None = None  # rollout dtype name, a key of PRECISION_DTYPES, or None (float64)
    router_noise_std: float = 0.0  # std of the Gaussian noise on the rollout's router logits
    staleness: int = 0  # rollout parameters are this many optimizer steps old

    def __post_init__(self):
        if self.precision is not None and self.precision not in PRECISION_DTYPES:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISION_DTYPES)} or None, got {self.precision!r}"
            )
        try:
            std = float(self.router_noise_std)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"router_noise_std must be a number, got {self.router_noise_std!r}") from exc
        if not (std >= 0.0 and std != float("inf")):
            raise ValueError(f"router_noise_std must be finite and >= 0, got {self.router_noise_std!r}")
        object.__setattr__(self, "router_noise_std", std)
        k = self.staleness
        if isinstance(k, bool) or not isinstance(k, int) and not (isinstance(k, float) and k.is_integer()):
            raise ValueError(f"staleness must be an integer >= 0, got {k!r}")
        if int(k) < 0:
            raise ValueError(f"staleness must be an integer >= 0, got {k!r}")
        object.__setattr__(self, "staleness", int(k))

    @property
    def compute_dtype(self) -> torch.dtype | None:
        """torch dtype of the rollout forward pass (None: the policy's own float64)."""
        return None if self.precision is None else PRECISION_DTYPES[self.precision]

    def _values(self) -> dict[str, object]:
        """{engine mechanism name: its strength, or None when off}, in registry order."""
        on = {"precision": self.precision, "router_noise_std": self.router_noise_std or None}
        on["staleness"] = self.staleness or None
        return {n: on[m.engine] for n, m in MISMATCH_MECHANISMS.items() if m.engine is not None}

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the mechanisms switched on, in registry order."""
        return tuple(n for n, v in self._values().items() if v is not None)

    @property
    def spec(self) -> str:
        """Canonical spec string, parseable by `parse_mismatch` (``"none"`` when nothing is on)."""
        fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
        return "+".join(f"{n}={fmt(v)}" for n, v in self._values().items() if v is not None) or "none"

    def to_json(self) -> dict:
        return {
            "spec": self.spec,
            "precision": self.precision,
            "router_noise_std": self.router_noise_std,
            "staleness": self.staleness,
        }


def parse_mismatch(spec: str | Mismatch, strength=None) -> Mismatch:
    """`Mismatch` from ``"none"``, ``"moe"``, ``"moe=0.3+precision=fp16+lag=2"`` or names plus
    `strength` (``parse_mismatch("moe+lag", "0.1+2")``); see `resolve_mismatch` (target engine).

    Old spellings (``stale``) give a DeprecationWarning. Raises ValueError naming `mismatch`
    and the known mechanisms for an unknown name, one that does not apply to the rollout
    engine, a repeated name or a bad strength.
    """
    if isinstance(spec, Mismatch):
        return spec
    chosen, notes = resolve_mismatch(spec, strength, target="engine")
    _warn(notes, 2)
    try:
        return Mismatch(**{mech.engine: s for mech, s in chosen})
    except ValueError as exc:
        raise ValueError(f"mismatch {spec!r}: {exc}") from None


class RolloutEngine:
    """pi_roll: the rollout engine's view of a policy, with the mechanisms of a `Mismatch`.

    Call `observe(policy)` once before the first rollout and after every optimizer step (it
    keeps the last ``staleness + 1`` parameter snapshots), then `log_prob_tree(policy)` for the
    rollout's exact log-probabilities: a list over t = 1..T of float64 tensors of shape
    (P, V**(t-1), V), detached (the rollout engine is not differentiated).
    """

    def __init__(self, mismatch: Mismatch | str, *, generator: torch.Generator | None = None):
        self.mismatch = parse_mismatch(mismatch)
        self.generator = generator
        self._history: deque[dict[str, torch.Tensor]] = deque(maxlen=self.mismatch.staleness + 1)
        self._shadow: torch.nn.Module | None = None  # a copy of the policy holding stale parameters

    def observe(self, policy: torch.nn.Module) -> None:
        """Record the policy's current parameters (a detached copy)."""
        self._history.append({k: v.detach().clone() for k, v in policy.state_dict().items()})

    @property
    def lag(self) -> int:
        """How many optimizer steps old the next rollout's parameters are (<= staleness)."""
        return len(self._history) - 1

    def log_prob_tree(self, policy: torch.nn.Module) -> list[torch.Tensor]:
        """The rollout policy's log-probs per level t: (P, V**(t-1), V) float64, detached."""
        mm = self.mismatch
        if mm.router_noise_std > 0 and not hasattr(policy, "router_margin"):
            raise ValueError(
                f"mismatch 'moe' needs a policy with a router (MoEPolicy), got {type(policy).__name__}"
            )
        source = policy
        if mm.staleness > 0:
            if not self._history:
                raise ValueError("RolloutEngine.observe(policy) must be called before the first rollout")
            if self._shadow is None:
                self._shadow = copy.deepcopy(policy)
            self._shadow.load_state_dict(self._history[0])  # the oldest kept = k steps old
            source = self._shadow
        kwargs = {}
        if mm.compute_dtype is not None:
            kwargs["compute_dtype"] = mm.compute_dtype
        if mm.router_noise_std > 0:
            kwargs["router_noise_std"] = mm.router_noise_std
            kwargs["generator"] = self.generator
        with torch.no_grad():
            levels = source.log_prob_tree(**kwargs)
        return [lv.detach().to(torch.float64) for lv in levels]
