"""SerialExitStrategy (S-GRPO): edge cases on the scripted engine, then the key properties on the real HFEngine."""

from __future__ import annotations

import json
import math

import pytest

from rollouts.strategies import SerialExitStrategy
from rollouts.strategies.serial_exits import prompt_key
from rollouts.types import Completion, Request, SamplingParams
from tests.rollouts.scripted_engine import EOS, Script, ScriptedEngine, logprob_of

INDUCER = [7000, 7001, 5]  # ends with the scripted think-close id 5
PARAMS = SamplingParams(temperature=0.0, max_tokens=100)


def make(engine: ScriptedEngine, **kwargs: object) -> SerialExitStrategy:
    kwargs = {"num_exits": 4, "answer_max_tokens": 10, "inducer_ids": INDUCER, "think_close_ids": [5], **kwargs}
    return SerialExitStrategy(engine, None, kwargs.pop("params", PARAMS), **kwargs)  # type: ignore[arg-type]


def check_group(group: list, inducer: list[int], m: int, n: int) -> None:
    """Positional order, full trace last, exits in the thinking span, inducer masked exactly."""
    full = group[-1]
    assert len(group) == m + 1
    assert [s.extras["exit_rank"] for s in group] == list(range(m + 1))
    assert [s.extras["is_full_trace"] for s in group] == [False] * m + [True]
    assert full.extras["exit_position"] == n and full.extras["num_inserted"] == 0
    assert full.loss_mask == [1] * len(full.completion_ids)
    positions = [s.extras["exit_position"] for s in group[:-1]]
    assert positions == sorted(positions) and all(1 <= p <= n for p in positions)
    k = len(inducer)
    for s in group[:-1]:
        p = s.extras["exit_position"]
        assert s.extras["num_inserted"] == k
        assert s.completion_ids[:p] == full.completion_ids[:p]
        assert s.completion_ids[p : p + k] == inducer
        assert [i for i, v in enumerate(s.loss_mask) if v == 0] == list(range(p, p + k))
        assert s.logprobs is None, "no behaviour log-probs unless asked for (TRL recomputes what it needs)"


def test_groups_positions_masks_and_one_batched_exit_call() -> None:
    script = Script(lambda p, j: 20 if len(p) == 3 else 30, answer_len=3)
    engine = ScriptedEngine(script)
    strategy = make(engine)
    prompts = [[1, 2, 3], [4, 5, 6, 7]]
    samples = strategy.generate(prompts)

    assert len(samples) == 10 and strategy.group_sizes == [5, 5]
    assert [s.prompt_index for s in samples] == [0] * 5 + [1] * 5
    assert len(engine.calls) == 2  # traces, then every exit of every prompt in ONE call
    assert len(engine.calls[1]) == 8 and all(r.params.max_tokens == 10 for r in engine.calls[1])
    for i, n in enumerate((20, 30)):
        group = samples[5 * i : 5 * i + 5]
        check_group(group, INDUCER, m=4, n=n)
        positions = [s.extras["exit_position"] for s in group[:-1]]
        assert len(set(positions)) == 4  # without replacement when n >= m
        full = group[-1]
        assert full.completion_ids[n] == 5 and full.finish_reason == "stop"
        for s in group[:-1]:
            p = s.extras["exit_position"]
            prefix = full.completion_ids[:p] + INDUCER
            [[direct]] = engine.generate([Request(prompts[i], SamplingParams(max_tokens=10), prefix)])
            assert s.completion_ids[len(prefix) :] == direct.token_ids  # the continuation follows the prefix
            assert s.completion_ids[-1] == EOS and s.finish_reason == "stop"


def test_multi_token_think_close() -> None:
    """SmolLM2-like: `</think>` is three BPE ids; the span ends where the id sequence starts."""
    close = (5, 6, 7)
    engine = ScriptedEngine(Script(lambda p, j: 12, think_close=close))
    inducer = [7000, 5, 6, 7, 7001]
    strategy = make(engine, inducer_ids=inducer, think_close_ids=list(close))
    group = strategy.generate([[1, 2]])
    assert group[-1].completion_ids[12:15] == list(close)
    check_group(group, inducer, m=4, n=12)


def test_unclosed_trace_counts_whole_completion_as_thinking() -> None:
    engine = ScriptedEngine(Script(lambda p, j: None))
    strategy = make(engine, params=SamplingParams(max_tokens=15))
    group = strategy.generate([[1, 2, 3]])
    full = group[-1]
    assert len(full.completion_ids) == 15 and full.finish_reason == "length"
    check_group(group, INDUCER, m=4, n=15)
    # a trace that stopped without closing: the final stop token is not thinking
    assert strategy.thinking_length(Completion([10, 11, 12, EOS], "stop")) == 3
    assert strategy.thinking_length(Completion([10, 11, 12], "length")) == 3
    # per-prompt caps on the full trace (curriculum budgets)
    samples = strategy.generate([[1], [2]], max_tokens=[5, 9])
    assert [len(s.completion_ids) for s in samples if s.extras["is_full_trace"]] == [5, 9]


@pytest.mark.parametrize(("short_trace", "size"), [("repeat", 9), ("shrink", 4)])
def test_short_trace(short_trace: str, size: int) -> None:
    engine = ScriptedEngine(Script(lambda p, j: 3))
    strategy = make(engine, num_exits=8, short_trace=short_trace)
    group = strategy.generate([[1, 2, 3]])
    assert len(group) == size and strategy.group_sizes == [size]
    check_group(group, INDUCER, m=size - 1, n=3)
    positions = [s.extras["exit_position"] for s in group[:-1]]
    assert set(positions) == {1, 2, 3}  # every thinking position is used at least once


def test_no_thinking_exits_at_position_zero() -> None:
    """A trace that closes at once (n = 0): exits are the inducer alone, then an answer."""
    engine = ScriptedEngine(lambda p, c, j: 5 if not c else (EOS if len(c) > 2 else 600))
    group = make(engine).generate([[1]])
    assert [s.extras["exit_position"] for s in group] == [0, 0, 0, 0, 0]
    assert group[0].completion_ids[:3] == INDUCER and group[0].loss_mask[:3] == [0, 0, 0]


def test_answer_room_is_clamped_to_the_model_length() -> None:
    engine = ScriptedEngine(Script(lambda p, j: None), max_model_len=24)
    group = make(engine, num_exits=6).generate([[1, 2, 3]])  # trace fills the model: 21 thinking tokens
    assert len(group) == 7
    for request in engine.calls[1]:
        assert len(request.prompt_ids) + len(request.prefix_ids) + request.params.max_tokens <= 24
    for s in group[:-1]:
        assert len(s.completion_ids) <= 21


def test_seeded_and_state_round_trip() -> None:
    engine = ScriptedEngine(Script(lambda p, j: 40))
    a, b = make(engine, seed=3), make(engine, seed=3)
    assert a.generate([[1]]) == b.generate([[1]])
    state = json.loads(json.dumps(a.state_dict()))
    after = a.generate([[1]])
    fresh = make(engine, seed=99)
    fresh.load_state_dict(state)
    assert fresh.generate([[1]]) == after


def _positions(samples: list) -> dict[tuple[int, ...], list[int]]:
    """Each prompt's exit positions, keyed by its token ids."""
    out: dict[tuple[int, ...], list[int]] = {}
    for s in samples:
        if not s.extras["is_full_trace"]:
            out.setdefault(tuple(s.prompt_ids), []).append(s.extras["exit_position"])
    return out


def test_exit_positions_do_not_depend_on_how_prompts_are_split() -> None:
    """2 ranks holding half of the prompts each draw, call after call, what 1 rank holding all of them draws."""
    script = Script(lambda p, j: 12 + 5 * len(p))  # 17-32 thinking tokens: 4 of them drawn per prompt
    prompts = [[1], [2, 3], [4, 5, 6], [7, 8, 9, 10]]
    one = make(ScriptedEngine(script), seed=11)
    ranks = [make(ScriptedEngine(script), seed=11) for _ in range(2)]
    seen = []
    for _ in range(3):
        whole = _positions(one.generate(prompts))
        split = {**_positions(ranks[0].generate(prompts[0::2])), **_positions(ranks[1].generate(prompts[1::2]))}
        assert split == whole
        seen.append(whole)
    # a rank without prompts still counts the call, so the calls of all ranks stay numbered alike
    assert ranks[0].generate([]) == []
    assert _positions(ranks[1].generate(prompts[::-1])) == _positions(one.generate(prompts))
    assert _positions(make(ScriptedEngine(script), seed=11).generate(prompts[::-1])) == seen[0]  # order is irrelevant
    assert seen[0] != seen[1] != seen[2], "each call draws anew"
    assert len({tuple(v) for v in seen[0].values()}) == 4, "each prompt draws its own positions"
    assert _positions(make(ScriptedEngine(script), seed=12).generate(prompts)) != seen[0]


def test_prompt_key_is_stable_across_processes() -> None:
    """Not Python's salted `hash`: the same ids give the same key in every process and run."""
    assert prompt_key([1, 2, 3]) == 1517167407554927345
    assert prompt_key([3, 2, 1]) != prompt_key([1, 2, 3])


def test_seeded_exits_get_distinct_seeds() -> None:
    engine = ScriptedEngine(Script(lambda p, j: 20))
    make(engine, params=SamplingParams(seed=7)).generate([[1], [2]])
    assert engine.calls[0][0].params.seed == 7  # the trace keeps the caller's seed
    assert len({r.params.seed for r in engine.calls[1]}) == 8


def test_inducer_validation() -> None:
    engine = ScriptedEngine(Script(lambda p, j: 4))
    with pytest.raises(ValueError, match="do not contain the think-close ids"):
        make(engine, inducer_ids=[7000, 7001])
    with pytest.raises(ValueError, match="tokenizer"):
        SerialExitStrategy(engine, None, PARAMS)


def test_real_tokenizer_inducer(tiny_model_path: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    strategy = SerialExitStrategy(ScriptedEngine(Script(lambda p, j: 4)), tokenizer, PARAMS)
    close = tokenizer.encode("</think>", add_special_tokens=False)
    assert strategy.think_close_ids == close and len(close) > 1  # SmolLM2: several BPE tokens
    with pytest.raises(ValueError, match="tokenises differently"):
        SerialExitStrategy(ScriptedEngine(Script(lambda p, j: 4)), tokenizer, PARAMS, think_close="</reason>")


def test_behaviour_logprobs_for_trls_importance_sampling() -> None:
    """Asked for (`use_vllm` with TRL's IS correction), an exit carries the trace's log-probs up to its position, NaN on
    the inserted inducer (TRL: no correction there) and its answer's own."""
    engine = ScriptedEngine(Script(lambda p, j: 20, answer_len=3))
    samples = make(engine, params=SamplingParams(temperature=0.0, max_tokens=100, logprobs=True)).generate([[1, 2]])
    full = samples[-1]
    assert full.logprobs == [logprob_of(i, t) for i, t in enumerate(full.completion_ids)]
    k = len(INDUCER)
    for s in samples[:-1]:
        p = s.extras["exit_position"]
        assert s.logprobs is not None and len(s.logprobs) == len(s.completion_ids)
        assert s.logprobs[:p] == full.logprobs[:p]
        assert all(math.isnan(x) for x in s.logprobs[p : p + k])
        answer = s.completion_ids[p + k :]
        assert s.logprobs[p + k :] == [logprob_of(p + k + i, t) for i, t in enumerate(answer)]


def test_collective_engines_get_every_call_even_empty() -> None:
    """A collective engine (colocated tensor parallelism: the TP group gathers requests in each call) must see the
    same calls on every rank, so a rank with nothing to generate still makes them; other engines skip empty calls."""
    from rollouts.strategies import SegmentStrategy, StandardStrategy

    def strategies(engine: ScriptedEngine) -> list:
        return [make(engine), StandardStrategy(engine, PARAMS, 2), SegmentStrategy(engine, PARAMS, 2, 4, 50)]

    collective = ScriptedEngine(Script(lambda p, j: 4))
    collective.collective = True  # type: ignore[attr-defined]
    for strategy, calls in zip(strategies(collective), (2, 1, 1)):
        before = len(collective.calls)
        assert strategy.generate([]) == []
        assert collective.calls[before:] == [[]] * calls
    plain = ScriptedEngine(Script(lambda p, j: 4))
    for strategy in strategies(plain):
        assert strategy.generate([]) == []
    assert plain.calls == []
