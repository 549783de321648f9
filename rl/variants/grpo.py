"""Plain GRPO: the control in every comparison (TRL's GRPOTrainer defaults, 0/1 correctness reward).

Two TRL 1.16 defaults are replaced by DeepSeekMath's GRPO, which the six papers build on: `loss_type: grpo`
(per-sequence 1/|o_i| then mean; TRL's default is "dapo") and the plain k3 KL estimator
(`use_bias_correction_kl: false`; TRL multiplies it by the importance ratio). Both only matter where set: KL needs
`beta` > 0 (default 0).
"""

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
    default_rewards=lambda s: [reward("correctness", answer_format=s.answer_format, truncated_is_wrong=True)],
    trl_defaults=lambda s: {"loss_type": "grpo", "scale_rewards": "group", "use_bias_correction_kl": False},
    plan=lambda s: Plan(),
)
