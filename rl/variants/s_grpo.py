"""S-GRPO (arXiv 2505.07686): a serial group of one full trace and m early exits, decaying reward, mean-only advantage.

Exits are cut at the token level and the inserted inducer text is masked out of the loss (methods.md §1.2, §1.7).
The advantage is r − mean over the serial group (`Plan.advantage`); a YAML that sets
`scale_rewards` to anything but "none" is refused. Over-sampling (§2.1.2: "to ensure that the serial group contains
early exit samples with correct answers"): dynamic sampling drops serial groups without any correct answer (zero
variance: correct answers get distinct decayed rewards) and refills from new prompts, at most `max_resample_rounds`
extra rounds ([default] 4; the paper states no cap); `require_correct_early_exit` keeps only groups where one of
the m exits C_1..C_m is correct, the stricter reading. The paper states neither the filter nor the over-sampling
ratio; brevity refills on demand instead of generating an over-sized batch up front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rl.advantages import mean_only
from rl.sampling import DynamicSampling
from rl.variants.base import GroupBatch, Plan, Variant, band, reward
from rollouts.groups import SerialExitRollout

if TYPE_CHECKING:
    from torch import Tensor

    from rl.config import ExperimentConfig

INDUCER = "Time is limited, stop thinking and start answering.\n</think>\n\n"


@dataclass
class Spec:
    num_exits: int = 8
    answer_max_tokens: int = 1024
    inducer: str = INDUCER
    answer_format: str = "boxed"
    dynamic_sampling: bool = True
    max_resample_rounds: int = 4
    require_correct_early_exit: bool = False
    solve_rate_band: list[float] | None = None  # [low, high]: keep serial groups solved that often (not in the paper)


def _decay(batch: GroupBatch) -> tuple[Tensor, dict[str, float]]:
    from rl.group_transforms import serial_decay_rewards

    return serial_decay_rewards(batch.correct)


def _exit_correct(scores: Tensor) -> Tensor:
    """(P, G) decayed rewards, exits first and the full trace last -> (P,) True where an exit answered correctly."""
    return (scores[:, :-1] > 0).any(dim=1)


def _plan(s: Spec) -> Plan:
    keep = _exit_correct if s.require_correct_early_exit else None
    sampling = DynamicSampling(s.max_resample_rounds, keep=keep, band=band(s.solve_rate_band))
    return Plan(
        rollout=SerialExitRollout(s.num_exits, s.answer_max_tokens, s.inducer),
        group_transform=_decay,
        sample_filter=sampling if s.dynamic_sampling else None,
        advantage=mean_only,
    )


def _check(config: ExperimentConfig) -> None:
    from rl.config import ConfigError

    if config.grpo.scale_rewards != "none":
        raise ConfigError(
            config.source,
            "scale_rewards",
            f"s_grpo's advantage is r − mean over the serial group (2505.07686 §2.3, no std division): "
            f"scale_rewards must be 'none', got {config.grpo.scale_rewards!r}",
        )
    g = config.grpo.num_generations
    if g != config.variant.num_exits + 1:
        raise ConfigError(
            config.source, "num_generations", f"s_grpo needs num_exits + 1 = {config.variant.num_exits + 1}, got {g}"
        )


VARIANT = Variant(
    name="s_grpo",
    paper="arXiv 2505.07686",
    Spec=Spec,
    # C_0 cut by the length cap is unanswered: reward 0 (methods.md §1.2 step 2).
    default_rewards=lambda s: [reward("correctness", answer_format=s.answer_format, truncated_is_wrong=True)],
    # Eq. 2: mean-only advantage, per-sequence normalisation, no KL term (plain k3 should a β be set).
    trl_defaults=lambda s: {
        "scale_rewards": "none",
        "loss_type": "grpo",
        "beta": 0.0,
        "use_bias_correction_kl": False,
        "num_generations": s.num_exits + 1,
    },
    plan=_plan,
    check=_check,
)
