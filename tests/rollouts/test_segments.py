"""SegmentStrategy (UloRL): carry-over, group release, segment ids, caps and pool save/restore."""

from __future__ import annotations

import json
import math

import pytest

from rollouts.strategies import SegmentStrategy
from rollouts.types import Request, SamplingParams
from tests.rollouts.scripted_engine import EOS, Script, ScriptedEngine, logprob_of

PARAMS = SamplingParams(temperature=0.0, max_tokens=999)
# think for 1 / 6 / 13 tokens, close, one answer token, EOS -> total lengths 4 / 9 / 16
SCRIPT = Script(lambda p, j: (1, 6, 13)[j] + sum(p) % 3, answer_len=1)


def make(engine: ScriptedEngine, **kwargs: object) -> SegmentStrategy:
    kwargs = {"num_generations": 3, "segment_length": 4, "max_total_tokens": 100, **kwargs}
    return SegmentStrategy(engine, PARAMS, **kwargs)  # type: ignore[arg-type]


def test_carry_over_release_and_segment_ids() -> None:
    engine = ScriptedEngine(SCRIPT)
    strategy = make(engine)
    prompt = [3]  # sum % 3 == 0: lengths 4 / 9 / 16
    assert strategy.generate([prompt]) == []
    assert strategy.pending == 2  # sample 0 finished in segment 0 but waits for its group
    assert len(engine.calls[0]) == 1 and engine.calls[0][0].params.n == 3  # new prompt: one request, n=G
    assert strategy.generate([]) == [] and strategy.pending == 2
    assert [len(r.prefix_ids) for r in engine.calls[1]] == [4, 4]  # resumed from prompt + previous segment
    assert strategy.generate([]) == [] and strategy.pending == 1
    group = strategy.generate([])
    assert strategy.pending == 0 and len(group) == 3

    assert [len(s.completion_ids) for s in group] == [4, 9, 16]
    assert all(s.finish_reason == "stop" and s.completion_ids[-1] == EOS for s in group)
    assert group[0].extras["segment_ids"] == [0] * 4
    assert group[1].extras["segment_ids"] == [0] * 4 + [1] * 4 + [2]
    assert group[2].extras["segment_ids"] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert [s.extras["segments"] for s in group] == [1, 3, 4]
    assert [s.extras["staleness"] for s in group] == [3, 3, 3]  # released in segment 3, all started in 0
    # segmented decoding is exactly the uninterrupted one; samples keep no behaviour log-probs
    [direct] = engine.generate([Request(prompt, SamplingParams(n=3, max_tokens=99))])
    assert [s.completion_ids for s in group] == [c.token_ids for c in direct]
    assert all(s.logprobs is None for s in group)


def test_groups_release_independently_and_carry_keys() -> None:
    engine = ScriptedEngine(Script(lambda p, j: p[0], answer_len=1))  # length = p[0] + 3
    strategy = make(engine, num_generations=2)
    assert strategy.generate([[9]], keys=["long"]) == []
    short = strategy.generate([[1]], keys=["short"])  # admitted later, finished first: released first
    assert [s.extras["key"] for s in short] == ["short", "short"] and {s.prompt_index for s in short} == {1}
    assert short[0].extras["segment_ids"] == [1] * 4 and short[0].extras["staleness"] == 0
    long = strategy.generate([])
    assert {s.extras["key"] for s in long} == {"long"} and {s.prompt_index for s in long} == {0}
    assert long[0].extras["segment_ids"] == [0] * 4 + [1] * 4 + [2] * 4 and long[0].extras["staleness"] == 2


def test_total_cap_finishes_with_length() -> None:
    engine = ScriptedEngine(SCRIPT)
    strategy = make(engine, max_total_tokens=10)
    out = strategy.generate([[3]])
    for _ in range(3):
        out += strategy.generate([])
    assert engine.calls[2][-1].params.max_tokens == 2  # 8 tokens so far, cap 10: the last segment is shortened
    assert [(len(s.completion_ids), s.finish_reason) for s in out] == [(4, "stop"), (9, "stop"), (10, "length")]
    assert out[2].extras["segment_ids"] == [0] * 4 + [1] * 4 + [2] * 2


def run(strategy: SegmentStrategy, calls: list[list[list[int]]]) -> list:
    return [s for prompts in calls for s in strategy.generate(prompts, keys=[p[0] for p in prompts])]


def test_pool_survives_save_and_restore() -> None:
    calls = [[[3], [4]], [[5]], [], [[6]], [], [], [], [], []]
    reference = run(make(ScriptedEngine(SCRIPT)), calls)
    assert len(reference) == 12  # every group released by the end

    first = make(ScriptedEngine(SCRIPT))
    before = run(first, calls[:2])
    state = json.loads(json.dumps(first.state_dict()))  # plain python types only
    assert first.pending > 0
    resumed = make(ScriptedEngine(SCRIPT))
    resumed.load_state_dict(state)
    assert resumed.pending == first.pending
    assert before + run(resumed, calls[2:]) == reference
    with pytest.raises(ValueError, match="G=3"):
        make(ScriptedEngine(SCRIPT), num_generations=2).load_state_dict(state)


def test_max_pending_queues_prompts() -> None:
    engine = ScriptedEngine(SCRIPT)
    strategy = make(engine, num_generations=3, max_pending=6)
    strategy.generate([[3], [4], [5]])
    assert strategy.queued == 1 and len(engine.calls[0]) == 2
    seen_pending = []
    released = []
    for _ in range(10):
        released += strategy.generate([])
        seen_pending.append(strategy.pending)
    assert max(seen_pending) <= 6 and strategy.queued == 0 and len(released) == 9
    # G above the bound: one group is still admitted when nothing is pending, so the pool makes progress
    tight = make(ScriptedEngine(SCRIPT), num_generations=3, max_pending=2)
    tight.generate([[3], [4]])
    assert tight.pending == 2 and tight.queued == 1


def test_no_logprobs_and_state_name_check() -> None:
    strategy = SegmentStrategy(ScriptedEngine(SCRIPT), SamplingParams(), 1, 50, 100)
    [sample] = strategy.generate([[3]])
    assert sample.logprobs is None and sample.extras["segments"] == 1
    with pytest.raises(ValueError, match="cannot be loaded"):
        strategy.load_state_dict({"name": "serial_exits"})


def test_seeded_requests_get_distinct_derived_seeds() -> None:
    """Resumed members of one group must not share a random stream (one seed + sample index 0 each)."""
    engine = ScriptedEngine(SCRIPT)
    strategy = SegmentStrategy(engine, SamplingParams(seed=7), 3, 4, 100)
    strategy.generate([[3]])
    strategy.generate([])
    seeds = [r.params.seed for r in engine.calls[1]]
    assert len(set(seeds)) == 2 and None not in seeds and 7 not in seeds


def test_total_length_beyond_the_engine_is_an_error_not_a_shorter_limit() -> None:
    """Issue 13: the total-length limit used to be cut silently to `max_model_len - len(prompt)`."""
    engine = ScriptedEngine(SCRIPT, max_model_len=100)
    strategy = SegmentStrategy(engine, SamplingParams(), 2, 10, 96)
    strategy.generate([[1, 2, 3, 4]])  # 4 + 96 = 100 fits
    with pytest.raises(ValueError, match="max_total_tokens 96 exceeds the engine's max_model_len 100"):
        strategy.generate([[1, 2, 3, 4, 5]])


def test_behaviour_logprobs_span_segments_and_a_restore() -> None:
    """With log-probs asked for, a released sample carries each token's log-prob from the segment that generated it;
    a pool saved without them (an older checkpoint) resumes with NaN for the tokens it already had."""
    params = SamplingParams(temperature=0.0, max_tokens=999, logprobs=True)
    strategy = SegmentStrategy(ScriptedEngine(SCRIPT), params, 3, 4, 100)
    released = run(strategy, [[[3]], [], [], []])
    assert len(released) == 3
    for s in released:
        assert s.logprobs == [logprob_of(i, t) for i, t in enumerate(s.completion_ids)]

    first = SegmentStrategy(ScriptedEngine(SCRIPT), params, 3, 4, 100)
    run(first, [[[3]]])
    state = json.loads(json.dumps(first.state_dict()))
    for group in state["groups"]:
        for member in group["members"]:
            del member["logprobs"]
    resumed = SegmentStrategy(ScriptedEngine(SCRIPT), params, 3, 4, 100)
    resumed.load_state_dict(state)
    longest = max(run(resumed, [[], [], []]), key=lambda s: len(s.completion_ids))
    assert longest.logprobs is not None and all(math.isnan(x) for x in longest.logprobs[:4])
    assert longest.logprobs[4:] == [logprob_of(i, t) for i, t in enumerate(longest.completion_ids) if i >= 4]
