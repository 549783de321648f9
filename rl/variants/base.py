"""What a variant is: a named bundle of a typed spec, default rewards, TRL settings and a plan of pieces the trainer
calls (rl/variants/README.md shows how to add one)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from rl.sampling import DynamicSampling
from rollouts.groups import RolloutSpec, StandardRollout

if TYPE_CHECKING:
    from rl.config import ExperimentConfig, RewardSpec


@dataclass
class GroupBatch:
    """The gathered generation batch seen by a group transform, shaped (P prompts, G samples)."""

    rewards: torch.Tensor  # (P, G) the target reward column
    correct: torch.Tensor  # (P, G) bool, from the shared grader
    lengths: torch.Tensor  # (P, G) completion tokens
    step: int


GroupTransform = Callable[[GroupBatch], tuple[torch.Tensor, dict[str, float]]]


class PromptHook(Protocol):
    """Rewrites a dataset row before its prompt is encoded, at the trainer's step (curriculum: B(t) in the prompt)."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns it adds to a row (rewards may read them)."""
        ...

    def __call__(self, row: dict[str, Any], step: int) -> dict[str, Any]: ...

    def metrics(self, step: int) -> dict[str, float]: ...


class AdvantageFn(Protocol):
    """(P, G) rewards, (P, G) completion tokens, (P,) valid groups -> (P, G) advantages, on the gathered batch."""

    def __call__(self, rewards: torch.Tensor, lengths: torch.Tensor, valid: torch.Tensor) -> torch.Tensor: ...


class TokenMask(Protocol):
    """(N, T) current-policy log-probs and entropies, (N,) rewards, (N, T) completion mask -> (N, T) bool, True on
    tokens to drop from the loss. With `pois`, the old log-probs are the current policy's too (UloRL POIS); `name`
    names its metric (`brevity/<name>_masked_fraction`)."""

    name: str
    pois: bool

    def __call__(
        self, logps: torch.Tensor, entropies: torch.Tensor, rewards: torch.Tensor, completion_mask: torch.Tensor
    ) -> torch.Tensor: ...


@dataclass
class Plan:
    """The pieces the trainer calls to run a variant, each defaulting to plain GRPO; built once per run.

    rollout: generates the groups; prompt: rewrites a row before it is encoded; group_transform: rewrites the
    `transform_column` reward on the gathered (P, G) batch; sample_filter: dynamic sampling (which groups a step
    keeps, refilled from the dataset); advantage: replaces TRL's group advantage; token_mask: drops tokens from the
    loss; rng: the group transform's random draws, saved in checkpoints (GRPO-λ tie-breaks).
    """

    rollout: RolloutSpec = field(default_factory=StandardRollout)
    prompt: PromptHook | None = None
    group_transform: GroupTransform | None = None
    transform_column: str = "correctness"  # the reward function whose column the transform rewrites
    sample_filter: DynamicSampling | None = None
    advantage: AdvantageFn | None = None  # None: TRL's own, as `scale_rewards` says
    token_mask: TokenMask | None = None
    rng: random.Random | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    paper: str
    Spec: type
    default_rewards: Callable[[Any], list[RewardSpec]]
    trl_defaults: Callable[[Any], dict[str, Any]]
    plan: Callable[[Any], Plan]
    check: Callable[[ExperimentConfig], None] = lambda config: None


def band(values: list[float] | None) -> tuple[float, float] | None:
    """A spec's `solve_rate_band: [low, high]` as the plan's tuple (rl/config.py has checked it)."""
    return None if values is None else (float(values[0]), float(values[-1]))


def reward(name: str, weight: float = 1.0, **params: Any) -> RewardSpec:
    from rl.config import RewardSpec

    return RewardSpec(name=name, weight=weight, params=params)
