"""GRPO-λ (arXiv 2505.18086): the length penalty applies only to the top-λ groups of the batch by correctness ratio.

Selection runs on the gathered batch, so it does not depend on how groups are split across processes (§2.2, §S9).
Paper defaults when the YAML is silent (§4.1): G = 16, standard GRPO (`loss_type: grpo`, std-normalised group
advantage), no KL (not stated; β = 0), plain k3 if a β is set (`use_bias_correction_kl: false`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rl.variants.base import GroupBatch, Plan, Variant, reward

if TYPE_CHECKING:
    from torch import Tensor

    from rl.config import ExperimentConfig


@dataclass
class Spec:
    lam: float = 0.2
    alpha: float = 0.2
    mode: Literal["top_lambda", "threshold"] = "top_lambda"  # "threshold" is not the paper's rule
    tau: float = 0.5
    seed: int = 0
    answer_format: str = "boxed"


def _plan(spec: Spec) -> Plan:
    rng = random.Random(spec.seed)

    def transform(batch: GroupBatch) -> tuple[Tensor, dict[str, float]]:
        from rl.group_transforms import grpo_lambda_rewards

        return grpo_lambda_rewards(
            batch.correct, batch.lengths, lam=spec.lam, alpha=spec.alpha, mode=spec.mode, tau=spec.tau, generator=rng
        )

    return Plan(group_transform=transform, rng=rng)


def _check(config: ExperimentConfig) -> None:
    from rl.config import ConfigError

    if not 0.0 < config.variant.lam <= 1.0:
        raise ConfigError(config.source, "variant.lam", f"must be in (0, 1], got {config.variant.lam}")


VARIANT = Variant(
    name="grpo_lambda",
    paper="arXiv 2505.18086",
    Spec=Spec,
    default_rewards=lambda s: [reward("correctness", answer_format=s.answer_format, truncated_is_wrong=True)],
    trl_defaults=lambda s: {
        "scale_rewards": "group",
        "loss_type": "grpo",
        "beta": 0.0,
        "use_bias_correction_kl": False,
        "num_generations": 16,
    },
    plan=_plan,
    check=_check,
)
