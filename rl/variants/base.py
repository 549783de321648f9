"""What a variant is: a named bundle of a typed spec, default rewards, TRL settings and a training plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

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


@dataclass
class Plan:
    """How the trainer runs a variant; every field has the plain-GRPO default."""

    strategy: Literal["standard", "serial_exits", "segments"] = "standard"
    strategy_kwargs: dict[str, Any] = field(default_factory=dict)
    group_transform: GroupTransform | None = None
    transform_column: str = "correctness"  # the reward function whose column the transform rewrites
    advantage: Literal["group", "mean_only", "group_center_batch_whiten"] = "group"
    token_weighted_whitening: bool = True
    dynamic_sampling: bool = False
    max_resample_rounds: int = 0  # extra generation rounds per step; <= 0: unlimited (DLER fork's max_num_gen_batches)
    filter_column: str | None = None  # reward column dynamic sampling filters on; None: the weighted total reward
    keep_group: Callable[[torch.Tensor], torch.Tensor] | None = None  # (P, G) filter scores -> (P,) extra keep rule
    solve_rate_band: tuple[float, float] | None = None  # keep only groups whose solve rate is in [low, high]
    dmmpt: dict[str, float] | None = None  # {"tau": .., "sigma": ..} enables UloRL's token mask
    budget_schedule: Any = None  # rewards.schedules schedule: B(step) for prompt text and generation cap
    rng: Any = None  # a random.Random the group transform draws from; saved in checkpoints (GRPO-λ tie-breaks)


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
