"""Curriculum token budgets, "Train Long, Think Short" (arXiv 2508.08940): a budget B(t) that decays over training,
stated in the prompt and scored by a triangular length reward, plus correctness and format (methods.md §4).

Format reward as §3: λ_f·(α_think·I_think + α_answer·I_answer), α = 0.5 / 0.5 [default: not stated], as two reward
columns (`think_format`, `answer_tag_format`) weighted λ_f·α each. Prompt: `budget` (R1-zero instructions as a
system turn of the model's chat template) or `budget_raw`, the paper's own plain string for base models. One budget
object per run (`rollouts.budget.StepBudget`) writes B(t) into the prompt and the `budget` column the length reward
reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rl.variants.base import Plan, Variant, reward
from rollouts.budget import StepBudget
from rollouts.groups import StandardRollout

if TYPE_CHECKING:
    from rewards.schedules import Schedule
    from rl.config import ExperimentConfig


@dataclass
class Spec:
    schedule: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "stepwise_exponential",
            "start": 256,
            "end": 87,
            "total_steps": 600,
            "n_drops": 3,
        }
    )
    correctness_weight: float = 0.6
    length_weight: float = 0.3
    format_weight: float = 0.1  # λ_f
    alpha_think: float = 0.5
    alpha_answer: float = 0.5
    shape: str = "triangular"  # or "band" (the paper's ablation)
    cap_generation: bool = False  # also cap max_tokens at 2·B(t); the paper keeps a fixed cap (2·B_0)


def _schedule(spec: Spec) -> Schedule:
    from rewards.schedules import make_schedule

    return make_schedule(dict(spec.schedule))


def _plan(spec: Spec) -> Plan:
    budget = StepBudget(_schedule(spec))
    return Plan(rollout=StandardRollout(cap=budget.cap if spec.cap_generation else None), prompt=budget)


def _check(config: ExperimentConfig) -> None:
    from rl.config import ConfigError

    spec = config.variant
    try:
        b0 = _schedule(spec)(0)
    except (ValueError, TypeError) as e:
        raise ConfigError(config.source, "variant.schedule", str(e)) from None
    if b0 > config.grpo.max_completion_length:
        raise ConfigError(
            config.source,
            "variant.schedule",
            f"the starting budget {b0} exceeds max_completion_length {config.grpo.max_completion_length}",
        )
    if spec.shape not in ("triangular", "band"):
        raise ConfigError(config.source, "variant.shape", f"must be 'triangular' or 'band', got {spec.shape!r}")
    if config.data.template not in ("budget", "budget_raw"):
        raise ConfigError(
            config.source,
            "data.template",
            "curriculum_budget states the budget in the prompt: use 'budget' (chat) or 'budget_raw' (the paper's "
            "plain string)",
        )


VARIANT = Variant(
    name="curriculum_budget",
    paper="arXiv 2508.08940",
    Spec=Spec,
    default_rewards=lambda s: [
        reward("correctness", s.correctness_weight, answer_format="answer_tag"),
        reward(f"budget_{s.shape}", s.length_weight),  # reads B(t) from the `budget` column the plan's prompt sets
        reward("think_format", s.format_weight * s.alpha_think),
        reward("answer_tag_format", s.format_weight * s.alpha_answer),
    ],
    # §3.1 GRPO with a KL term (β not stated: 0.04 [default]) as the GRPO paper's plain k3 estimator.
    trl_defaults=lambda s: {
        "scale_rewards": "group",
        "loss_type": "grpo",
        "beta": 0.04,
        "use_bias_correction_kl": False,
        "num_generations": 8,
    },
    plan=_plan,
    check=_check,
)
