"""UloRL (arXiv 2507.19766): segment rollouts whose unfinished samples resume next step, pseudo-on-policy ratios
(POIS: old log-probs recomputed with the current weights), and DMMPT masking of well-mastered positive tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rl.losses import Dmmpt
from rl.sampling import DynamicSampling
from rl.variants.base import Plan, Variant, band, reward
from rollouts.groups import SegmentRollout

if TYPE_CHECKING:
    from rl.config import ExperimentConfig


@dataclass
class Spec:
    segment_length: int = 16384
    max_total_tokens: int = 131072
    dmmpt_tau: float = 0.99
    dmmpt_sigma: float = 0.2
    dynamic_sampling: bool = True
    max_resample_rounds: int = 4
    solve_rate_band: list[float] | None = None  # [low, high]: keep groups solved that often (not in the paper)
    answer_format: str = "boxed"


def _plan(s: Spec) -> Plan:
    sampling = DynamicSampling(s.max_resample_rounds, band=band(s.solve_rate_band))
    return Plan(
        rollout=SegmentRollout(s.segment_length, s.max_total_tokens),
        sample_filter=sampling if s.dynamic_sampling else None,
        token_mask=Dmmpt(s.dmmpt_tau, s.dmmpt_sigma),
    )


def _check(config: ExperimentConfig) -> None:
    from rl.config import ConfigError

    spec = config.variant
    if spec.segment_length > spec.max_total_tokens:
        raise ConfigError(config.source, "variant.segment_length", "must not exceed variant.max_total_tokens")
    if spec.dynamic_sampling and config.grpo.num_generations < 2:
        raise ConfigError(config.source, "variant.dynamic_sampling", "needs num_generations >= 2")


VARIANT = Variant(
    name="ulorl",
    paper="arXiv 2507.19766",
    Spec=Spec,
    # Truncated samples (L_max reached, finish "length") are wrong: reward 0 explicitly (§3, "overlong").
    default_rewards=lambda s: [reward("correctness", answer_format=s.answer_format, truncated_is_wrong=True)],
    # DAPO-style: token-level loss, no KL, symmetric clip; 128 × 8 rollouts at T = 0.85, top-p 1 (§4.1).
    trl_defaults=lambda s: {
        "loss_type": "dapo",
        "scale_rewards": "group",
        "beta": 0.0,
        "use_bias_correction_kl": False,
        "epsilon": 0.2,
        "temperature": 0.85,
        "top_p": 1.0,
        "num_generations": 8,
        "max_completion_length": s.segment_length,
    },
    plan=_plan,
    check=_check,
)
