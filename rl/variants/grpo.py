"""Plain GRPO: the control in every comparison (TRL's GRPOTrainer defaults, 0/1 correctness reward)."""

from __future__ import annotations

from dataclasses import dataclass

from rl.variants.base import Plan, Variant, reward


@dataclass
class Spec:
    answer_format: str = "boxed"


VARIANT = Variant(
    name="grpo",
    paper="baseline",
    Spec=Spec,
    default_rewards=lambda s: [reward("correctness", answer_format=s.answer_format)],
    trl_defaults=lambda s: {},
    plan=lambda s: Plan(),
)
