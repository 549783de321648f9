"""StandardStrategy: G samples per prompt, per-prompt token caps."""

from __future__ import annotations

import pytest

from rollouts.strategies import StandardStrategy
from rollouts.types import SamplingParams
from tests.rollouts.scripted_engine import Script, ScriptedEngine, logprob_of


def test_groups_in_prompt_order() -> None:
    script = Script(lambda p, j: 3 + j)
    engine = ScriptedEngine(script)
    strategy = StandardStrategy(engine, SamplingParams(max_tokens=50), num_generations=3)
    prompts = [[1, 2], [3, 4, 5]]
    samples = strategy.generate(prompts)
    assert len(engine.calls) == 1 and len(samples) == 6
    for i, s in enumerate(samples):
        assert s.prompt_index == i // 3 and s.prompt_ids == prompts[i // 3]
        assert len(s.completion_ids) == script.total_len(prompts[i // 3], i % 3)
        assert s.loss_mask == [1] * len(s.completion_ids)
        assert s.logprobs is None, "no behaviour log-probs unless asked for (TRL recomputes what it needs)"
    assert strategy.state_dict() == {"name": "standard"}


def test_per_prompt_max_tokens() -> None:
    engine = ScriptedEngine(Script(lambda p, j: None))
    strategy = StandardStrategy(engine, SamplingParams(max_tokens=50), num_generations=2)
    samples = strategy.generate([[1], [2], [3]], max_tokens=[3, 7, 50])
    assert [len(s.completion_ids) for s in samples] == [3, 3, 7, 7, 50, 50]
    assert all(s.finish_reason == "length" and s.logprobs is None for s in samples)
    with pytest.raises(ValueError, match="max_tokens"):
        strategy.generate([[1]], max_tokens=[3, 4])


def test_behaviour_logprobs_when_asked_for() -> None:
    strategy = StandardStrategy(ScriptedEngine(Script(lambda p, j: 3)), SamplingParams(logprobs=True), 2)
    for s in strategy.generate([[1, 2]]):
        assert s.logprobs == [logprob_of(i, t) for i, t in enumerate(s.completion_ids)]
