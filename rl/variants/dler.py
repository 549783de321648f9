"""DLER (arXiv 2510.15110): truncation penalty, group-centred then batch-whitened advantages, clip-higher, dynamic
sampling; optional difficulty-aware caps (DA-DLER). Merging is `brevity merge` (rl/merge.py).

Dynamic sampling as the released fork runs it (NVlabs/DLER `verl-dler/recipe/dapo/dapo_ray_trainer.py`): groups are
filtered on the correctness score before the truncation penalty's stop-properly scaling (`seq_reward` of the
`token_level_scores`), here the weight-0 `correctness` column graded as the fork's deepscaler `RewardMathFn` does
(`</think>` required, answer after the FIRST `</think>`, finish reason ignored); refill rounds are unlimited by
default (`max_resample_rounds: 0`, the fork's `max_num_gen_batches: 0` in DLER's scripts; methods.md's "cap the
rounds" is an option here, not the source's default). Where the fork raises once its cap is hit, brevity trains on
the varying groups it has and logs it. KL: veRL's `low_var_kl` is plain k3 (clamped to ±10 there, unclamped here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rl.advantages import BatchWhitened
from rl.sampling import DynamicSampling
from rl.variants.base import GroupBatch, Plan, Variant, band, reward

if TYPE_CHECKING:
    from torch import Tensor

    from rl.config import ExperimentConfig


@dataclass
class Spec:
    target_length: int = 4000
    stop_properly_scale: float = 0.0  # [paper] truncated = 0; the authors' recipe yaml uses 0.1 (methods.md §3.2)
    dynamic_sampling: bool = True
    max_resample_rounds: int = 0  # <= 0: unlimited [code]; a positive cap is an option
    solve_rate_band: list[float] | None = None  # [low, high]: keep groups solved that often (not in the paper)
    token_weighted: bool = True
    difficulty_aware: bool = False
    tier_threshold: float = 0.5
    easy_cap: int = 2000
    require_think_close: bool = True  # DeepScaleR grading: no </think> is an error; False for non-thinking models
    answer_format: str = "boxed"


def _plan(spec: Spec) -> Plan:
    transform = None
    if spec.difficulty_aware:

        def transform(batch: GroupBatch) -> tuple[Tensor, dict[str, float]]:
            from rl.group_transforms import difficulty_aware_truncation

            return difficulty_aware_truncation(
                batch.rewards,
                batch.correct,
                batch.lengths,
                threshold=spec.tier_threshold,
                easy_cap=spec.easy_cap,
                hard_cap=spec.target_length,
            )

    sampling = DynamicSampling(spec.max_resample_rounds, column="correctness", band=band(spec.solve_rate_band))
    return Plan(
        group_transform=transform,
        transform_column="truncation",
        sample_filter=sampling if spec.dynamic_sampling else None,
        advantage=BatchWhitened(spec.token_weighted),
    )


def _check(config: ExperimentConfig) -> None:
    from rl.config import ConfigError

    spec, grpo = config.variant, config.grpo
    if spec.dynamic_sampling and grpo.num_generations < 2:
        raise ConfigError(
            config.source, "variant.dynamic_sampling", "needs num_generations >= 2 (a group of 1 never varies)"
        )
    if spec.target_length > grpo.max_completion_length:
        raise ConfigError(
            config.source,
            "variant.target_length",
            f"{spec.target_length} exceeds max_completion_length {grpo.max_completion_length}: the cap must allow it",
        )
    if spec.difficulty_aware and spec.easy_cap >= spec.target_length:
        raise ConfigError(config.source, "variant.easy_cap", "must be below target_length (the hard-tier cap)")


VARIANT = Variant(
    name="dler",
    paper="arXiv 2510.15110",
    Spec=Spec,
    default_rewards=lambda s: [
        reward(
            "truncation",
            target_length=s.target_length,
            stop_properly_scale=s.stop_properly_scale,
            require_think_close=s.require_think_close,
            answer_format=s.answer_format,
        ),
        # weight 0: the score dynamic sampling filters on (the fork's unscaled `seq_reward`), logged as accuracy
        reward(
            "correctness",
            0.0,
            answer_format=s.answer_format,
            truncated_is_wrong=False,
            require_think_close=s.require_think_close,
            first_think_close=True,
        ),
    ],
    # Table 4 / §3.7: clip-higher, dual clip c = 10 (TRL delta), token-mean loss, KL loss 5e-4 as veRL's
    # `low_var_kl` (plain k3, no importance ratio: `use_bias_correction_kl` off), truncated kept, G = 16, T = 1.
    trl_defaults=lambda s: {
        "epsilon": 0.2,
        "epsilon_high": 0.28,
        "delta": 10.0,
        "loss_type": "dapo",
        "beta": 5e-4,
        "use_bias_correction_kl": False,
        "mask_truncated_completions": False,
        "num_generations": 16,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_completion_length": s.target_length,
    },
    plan=_plan,
    check=_check,
)
