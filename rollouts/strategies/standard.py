"""Standard parallel GRPO groups: G independent samples per prompt, optionally under a per-prompt token cap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rollouts.strategies.base import call_engine, check_name
from rollouts.types import Engine, Request, Sample, SamplingParams


class StandardStrategy:
    """G samples per prompt in one batched engine call; sample i belongs to prompt i // G."""

    name = "standard"

    def __init__(self, engine: Engine, params: SamplingParams, num_generations: int) -> None:
        if num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {num_generations}")
        self.engine = engine
        self.params = params
        self.num_generations = num_generations

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int] | None = None) -> list[Sample]:
        """`max_tokens[i]` caps prompt i's samples (curriculum budgets, DLER tiers); default `params.max_tokens`."""
        if max_tokens is not None and len(max_tokens) != len(prompts):
            raise ValueError(f"max_tokens has {len(max_tokens)} entries for {len(prompts)} prompts")
        caps = list(max_tokens) if max_tokens is not None else [self.params.max_tokens] * len(prompts)
        requests = [
            Request(list(prompt), replace(self.params, n=self.num_generations, max_tokens=cap))
            for prompt, cap in zip(prompts, caps)
        ]
        outputs = call_engine(self.engine, requests)
        return [
            Sample(
                prompt_index=i,
                prompt_ids=list(prompts[i]),
                completion_ids=list(c.token_ids),
                finish_reason=c.finish_reason,
                loss_mask=[1] * len(c.token_ids),
                logprobs=None if c.logprobs is None else list(c.logprobs),
            )
            for i, completions in enumerate(outputs)
            for c in completions
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_name(self.name, state)
