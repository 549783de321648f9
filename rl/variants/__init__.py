"""The variants, by the name used in YAML, code and logs. A plain dict: no registry magic."""

from rl.variants import curriculum_budget, dler, format_length, grpo, grpo_lambda, s_grpo, ulorl
from rl.variants.base import GroupBatch, Plan, Variant

VARIANTS: dict[str, Variant] = {
    m.VARIANT.name: m.VARIANT for m in (grpo, s_grpo, grpo_lambda, dler, curriculum_budget, ulorl, format_length)
}

__all__ = ["VARIANTS", "GroupBatch", "Plan", "Variant"]
