"""Format-length surrogate rewards (arXiv 2505.19439): no reference answers; a valid boxed answer plus a
rise-then-fall length reward (methods.md §6). A dataset without an answer column trains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rl.variants.base import Plan, Variant, reward

if TYPE_CHECKING:
    from rl.config import ExperimentConfig


@dataclass
class Spec:
    max_tokens: int = 3072  # L_max = max response length [paper §3.1, code length_reward_func_v3]
    peak: float = 0.5
    shape: str = "rise_fall"  # or "polyline" (the paper's ablation)
    format_weight: float = 1.0
    length_weight: float = 1.0


def _check(config: ExperimentConfig) -> None:
    from rl.config import ConfigError

    spec = config.variant
    if spec.shape not in ("rise_fall", "polyline"):
        raise ConfigError(config.source, "variant.shape", f"must be 'rise_fall' or 'polyline', got {spec.shape!r}")
    if spec.max_tokens > config.grpo.max_completion_length:
        raise ConfigError(config.source, "variant.max_tokens", "exceeds max_completion_length")


VARIANT = Variant(
    name="format_length",
    paper="arXiv 2505.19439",
    Spec=Spec,
    default_rewards=lambda s: [
        reward("answer_format", s.format_weight),
        reward(
            f"{s.shape}_length",
            s.length_weight,
            max_tokens=s.max_tokens,
            **({"p": s.peak} if s.shape == "rise_fall" else {}),
        ),
    ],
    # [code] run_grpo_math_7b.sh: veRL token-mean loss, KL loss 1e-3 as `low_var_kl` (plain k3, no importance ratio),
    # G = 8, T = 0.6, std-normalised group advantage.
    trl_defaults=lambda s: {
        "loss_type": "dapo",
        "scale_rewards": "group",
        "beta": 1e-3,
        "use_bias_correction_kl": False,
        "num_generations": 8,
        "temperature": 0.6,
        "max_completion_length": s.max_tokens,
    },
    plan=lambda s: Plan(),
    check=_check,
)
