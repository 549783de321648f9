"""Every strategy on the REAL transformers engine with the tiny random model (greedy or seeded), not only the fake."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest
import torch

from rollouts.strategies import SegmentStrategy, SerialExitStrategy, StandardStrategy
from rollouts.types import Completion, Engine, Request, SamplingParams
from tests.rollouts.test_serial_exits import check_group

hf_engine = pytest.importorskip("rollouts.hf_engine")


class Counting:
    """Wraps an engine and records each `generate` call's requests."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.eos_token_ids = engine.eos_token_ids
        self.max_model_len = engine.max_model_len
        self.calls: list[list[Request]] = []

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        return self.engine.generate(requests)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.engine.load_weights(weights)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def engine(tiny_model_path: str, tokenizer) -> Engine:
    torch.manual_seed(0)
    return hf_engine.HFEngine(tiny_model_path, tokenizer=tokenizer, device="cpu")


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    return [tokenizer.encode(text) for text in ("What is 2 + 3?", "Name a prime number larger than ten.")]


def test_standard_on_hf_engine(engine: Engine, prompts: list[list[int]]) -> None:
    params = SamplingParams(temperature=1.0, seed=0, max_tokens=8)
    samples = StandardStrategy(engine, params, num_generations=2).generate(prompts, max_tokens=[3, 6])
    assert [s.prompt_index for s in samples] == [0, 0, 1, 1]
    for s in samples:
        assert 1 <= len(s.completion_ids) <= (3, 6)[s.prompt_index]


def test_serial_exits_on_hf_engine(engine: Engine, tokenizer, prompts: list[list[int]]) -> None:
    counting = Counting(engine)
    params = SamplingParams(temperature=1.0, seed=0, max_tokens=16)  # seeded: varied tokens
    strategy = SerialExitStrategy(counting, tokenizer, params, num_exits=4, answer_max_tokens=5, seed=0)
    samples = strategy.generate(prompts)
    assert len(counting.calls) == 2 and len(counting.calls[1]) == 8  # all exits of both prompts in one call
    assert strategy.group_sizes == [5, 5]
    inducer = tokenizer.encode("Time is limited, stop thinking and start answering.\n</think>\n\n")
    assert strategy.inducer_ids == inducer
    for i in range(2):
        group = samples[5 * i : 5 * i + 5]
        full = group[-1]
        n = strategy.thinking_length(Completion(full.completion_ids, full.finish_reason))
        check_group(group, inducer, m=4, n=n)
        assert len({s.extras["exit_position"] for s in group[:-1]}) == 4
        for s in group[:-1]:
            answer = s.completion_ids[s.extras["exit_position"] + len(inducer) :]
            assert 1 <= len(answer) <= 5
    # each continuation is what the engine produces from (prompt, trace[:P] + inducer) on its own (seeded)
    exits = [s for s in samples if not s.extras["is_full_trace"]]
    for s, request in zip(exits, counting.calls[1]):
        prefix = s.completion_ids[: s.extras["exit_position"] + len(inducer)]
        assert list(request.prefix_ids) == prefix and list(request.prompt_ids) == s.prompt_ids
    [[alone]] = engine.generate([counting.calls[1][1]])
    assert exits[1].completion_ids[len(counting.calls[1][1].prefix_ids) :] == alone.token_ids


def test_segments_on_hf_engine(engine: Engine, prompts: list[list[int]]) -> None:
    def make(params: SamplingParams) -> SegmentStrategy:
        return SegmentStrategy(engine, params, num_generations=2, segment_length=4, max_total_tokens=10)

    # seeded sampling: the pool survives a save/restore mid-generation and replays exactly
    seeded = SamplingParams(temperature=1.0, seed=0, max_tokens=999)
    strategy = make(seeded)
    assert strategy.generate(prompts) == [] and strategy.pending == 4
    state = strategy.state_dict()
    released = strategy.generate([]) + strategy.generate([])
    assert strategy.pending == 0 and len(released) == 4
    resumed = make(seeded)
    resumed.load_state_dict(state)
    assert resumed.generate([]) + resumed.generate([]) == released
    for s in released:
        assert len(s.completion_ids) <= 10
        assert s.extras["segment_ids"] == ([0] * 4 + [1] * 4 + [2] * 2)[: len(s.completion_ids)]
        if s.finish_reason == "length":  # the random model rarely emits EOS; when it does, the sample is shorter
            assert len(s.completion_ids) == 10 and s.extras["staleness"] == 2

    # greedy: segmented decoding equals one uninterrupted call
    greedy = SamplingParams(temperature=0.0, max_tokens=999)
    strategy = make(greedy)
    released = strategy.generate(prompts) + strategy.generate([]) + strategy.generate([])
    released.sort(key=lambda s: s.prompt_index)  # stable: an early EOS could release prompt 1 first
    direct = engine.generate([Request(p, SamplingParams(n=2, temperature=0.0, max_tokens=10)) for p in prompts])
    assert [s.completion_ids for s in released] == [c.token_ids for cs in direct for c in cs]
