"""Mechanisms that make pi_roll differ from pi_theta the way real systems do (THEORY.md section 8).

pi_roll is the *rollout engine's view* of the policy's parameters; pi_theta_old is the same
parameters evaluated by the trainer in float64. Three mechanisms, each with a strength knob,
combinable with ``+``:

- ``precision`` (knob: the rollout dtype, ``bf16`` or ``fp16``): the rollout forward pass runs in
  low precision (``policy.log_prob_tree(compute_dtype=torch.bfloat16)``), training in float64.
  Backend discrepancy: same weights, different numerics. bf16 (8 mantissa bits) is the stronger
  knob, fp16 (11 bits) the weaker.
- ``moe`` (knob: ``router_noise_std`` >= 0): the rollout router sees Gaussian noise of this std on
  its logits, which flips near-tied top-k expert choices: rare, large, concentrated token
  divergences. Needs a policy with a router (``MoEPolicy``).
- ``stale`` (knob: ``k``, an integer >= 0): rollouts come from the parameters of k optimizer steps
  ago (saturating at the initial parameters during the first k steps).

Spec strings: ``"none"``, ``"moe"``, ``"moe+precision"``, ``"moe=0.3+precision=fp16+stale=2"``
(``name=value`` sets the knob; a bare name uses its default). ``MISMATCH_MECHANISMS`` is the registry:
name -> (knob, default, description); it is listed in every error message.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass

import torch

__all__ = [
    "MISMATCH_MECHANISMS",
    "PRECISION_DTYPES",
    "Mismatch",
    "MismatchMechanism",
    "RolloutEngine",
    "parse_mismatch",
]

PRECISION_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class MismatchMechanism:
    """One registry entry: the knob's name, its default value and what the mechanism simulates."""

    knob: str  # field of `Mismatch` this mechanism sets
    default: object  # value of the knob for a bare name ("moe" = "moe=<default>")
    description: str


MISMATCH_MECHANISMS: dict[str, MismatchMechanism] = {
    "precision": MismatchMechanism(
        "precision", "bf16", "rollout forward pass in bf16 or fp16, training in float64 (backend discrepancy)"
    ),
    "moe": MismatchMechanism(
        "router_noise_std", 0.3, "rollout router logits + N(0, std^2) noise: near-tied top-k choices flip"
    ),
    "stale": MismatchMechanism("staleness", 1, "rollouts from parameters k optimizer steps old"),
}


@dataclass(frozen=True)
class Mismatch:
    """A combination of mismatch mechanisms with their strengths (all off = no mismatch)."""

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

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the mechanisms switched on, in registry order."""
        on = {
            "precision": self.precision is not None,
            "moe": self.router_noise_std > 0,
            "stale": self.staleness > 0,
        }
        return tuple(n for n in MISMATCH_MECHANISMS if on[n])

    @property
    def spec(self) -> str:
        """Canonical spec string, parseable by `parse_mismatch` (``"none"`` when nothing is on)."""
        vals = {"precision": self.precision, "moe": f"{self.router_noise_std:g}", "stale": self.staleness}
        return "+".join(f"{n}={vals[n]}" for n in self.active) or "none"

    def to_json(self) -> dict:
        return {
            "spec": self.spec,
            "precision": self.precision,
            "router_noise_std": self.router_noise_std,
            "staleness": self.staleness,
        }


def parse_mismatch(spec: str | Mismatch) -> Mismatch:
    """`Mismatch` from a spec string like ``"moe=0.3+precision=fp16+stale=2"`` (see module doc).

    Raises ValueError naming `mismatch` and the known mechanisms for an unknown name, a
    repeated name or a bad knob value.
    """
    if isinstance(spec, Mismatch):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"mismatch must be a non-empty spec string, got {spec!r}")
    if spec.strip() == "none":
        return Mismatch()
    known = ", ".join(["none", *MISMATCH_MECHANISMS])
    kwargs: dict[str, object] = {}
    for part in spec.split("+"):
        name, _, value = part.strip().partition("=")
        name = name.strip()
        if name not in MISMATCH_MECHANISMS:
            raise ValueError(f"mismatch: unknown mechanism {name!r} in {spec!r}; known: {known}")
        mech = MISMATCH_MECHANISMS[name]
        if mech.knob in kwargs:
            raise ValueError(f"mismatch: mechanism {name!r} given twice in {spec!r}")
        if not value:
            kwargs[mech.knob] = mech.default
        elif name == "precision":
            kwargs[mech.knob] = value.strip()
        else:
            try:
                num = float(value)
            except ValueError:
                raise ValueError(f"mismatch: {name}={value!r} is not a number") from None
            kwargs[mech.knob] = num if name == "moe" else (int(num) if num.is_integer() else num)
    try:
        return Mismatch(**kwargs)
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
