"""S-GRPO (arXiv 2505.07686): a serial group of one full trace and m early exits, decaying reward, mean-only advantage.

Exits are cut at the token level and the inserted inducer text is masked out of the loss (methods.md §1.2, §1.7).
"""

from __future__ import annotations

from dataclasses import dataclass

from rl.variants.base import GroupBatch, Plan, Variant, reward

INDUCER = "Time is limited, stop thinking and start answering.\n</think>\n\n"


@dataclass
class Spec:
    num_exits: int = 8
    answer_max_tokens: int = 1024
    inducer: str = INDUCER
    answer_format: str = "boxed"


def _decay(batch: GroupBatch):
    from rl.group_transforms import serial_decay_rewards

    return serial_decay_rewards(batch.correct)


def _check(config) -> None:
    from rl.config import ConfigError

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
    plan=lambda s: Plan(
        strategy="serial_exits",
        strategy_kwargs={"num_exits": s.num_exits, "answer_max_tokens": s.answer_max_tokens, "inducer": s.inducer},
        group_transform=_decay,
        advantage="mean_only",
    ),
    check=_check,
)
