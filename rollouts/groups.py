"""Group sources: a rollout strategy driven one generation round at a time, for whole groups of G samples.

A variant names its rollout with a small spec (`StandardRollout`, `SerialExitRollout`, `SegmentRollout`); the spec
builds a source once the engine exists. `PerCallSource` (standard groups, serial exits) answers each prompt in the
call that brings it; `PooledSource` (UloRL segments) answers with the groups that finished, possibly admitted steps
earlier, each with the dataset row it belongs to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from rollouts.strategies.base import derive_seed
from rollouts.strategies.segments import SegmentStrategy
from rollouts.strategies.serial_exits import DEFAULT_INDUCER, SerialExitStrategy
from rollouts.strategies.standard import StandardStrategy
from rollouts.types import Engine, Sample, SamplingParams

Row = dict[str, Any]  # one dataset row as TRL hands it to the trainer: `prompt` plus its other columns
MAX_WARMUP_SEGMENTS = 64


@dataclass
class Group:
    """A prompt's G samples and the dataset row they answer (its prompt as the policy saw it)."""

    row: Row
    samples: list[Sample]


@dataclass(frozen=True)
class RolloutSetup:
    """What a rollout spec builds its source from, besides the engine."""

    tokenizer: Any
    params: SamplingParams  # the run's sampling settings; `max_tokens` is max_completion_length
    num_generations: int
    seed: int
    rank: int
    draw_rows: Callable[[int], list[Row]]  # n more dataset rows for this process (the run's refill order)
    prepare: Callable[[Row], Row]  # the variant's prompt hook at the current step
    encode: Callable[[Row], list[int]]  # a prepared row's prompt as token ids
    log: Callable[[str, float], None]  # a training metric


class GroupSource(Protocol):
    """Generates whole groups for this process's prompts; its state goes into checkpoints."""

    strategy: Any

    def generate(self, rows: Sequence[Row], prompts: Sequence[list[int]], call: int) -> list[Group]:
        """One group per prompt, in order (`rows[i]` is prompt i's prepared row); `call` numbers the round."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RolloutSpec(Protocol):
    """How a variant's groups are generated: `StandardRollout`, `SerialExitRollout`, `SegmentRollout` below."""

    @property
    def plain(self) -> bool:
        """TRL's own generation samples the same groups (`rollout.engine: trl` can run it)."""
        ...

    def build(self, engine: Engine, setup: RolloutSetup) -> GroupSource:
        """The group source, once the engine exists."""
        ...

    def generated_tokens(self, max_completion_length: int, tokenizer: Any) -> tuple[str, int]:
        """The most tokens a sample generates after its prompt, and the YAML key that sets it."""
        ...


class PerCallSource:
    """Standard groups or serial exits: every prompt's group comes back in the call that brought it.

    The engine draws a seed per request from torch's generator, seeded here per (call, process), so prompts,
    processes and steps get distinct streams (one `params.seed` would not). `cap(row)` caps a prompt's new tokens.
    """

    def __init__(self, strategy: Any, setup: RolloutSetup, cap: Callable[[Row], int] | None = None) -> None:
        self.strategy, self.setup, self.cap = strategy, setup, cap

    def generate(self, rows: Sequence[Row], prompts: Sequence[list[int]], call: int) -> list[Group]:
        top = self.setup.params.max_tokens
        caps = None if self.cap is None else [min(self.cap(row), top) for row in rows]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.setup.seed, call, self.setup.rank))
            samples = self.strategy.generate(list(prompts), max_tokens=caps)
        G = len(samples) // max(len(rows), 1)
        return [Group(row, samples[k * G : (k + 1) * G]) for k, row in enumerate(rows)]

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "ready": []}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state["strategy"])


class PooledSource:
    """UloRL step: admit this round's prompts and decode one segment for every unfinished sample; released groups
    (possibly admitted steps ago, so each brings its own row) answer the round. While too few are ready, more
    dataset rows are admitted and another segment decoded (warm-up), so unfinished samples carry over.

    Released groups left over from an earlier round (a round may release more groups than it needs; warm-up rows
    release later on top of each step's own prompts) answer first, and only as many of this round's prompts are
    admitted as it still lacks (the rest are skipped, as dataset rows). Admitting them all kept that surplus for good:
    every later batch then trained on samples one optimizer step old, which POIS treats as on-policy (ratio 1,
    nothing clipped), and that alone degraded training (issue: ulorl instability).
    """

    def __init__(self, strategy: SegmentStrategy, setup: RolloutSetup) -> None:
        self.strategy, self.setup = strategy, setup
        self.ready: list[Sample] = []

    def generate(self, rows: Sequence[Row], prompts: Sequence[list[int]], call: int) -> list[Group]:
        setup, G = self.setup, self.setup.num_generations
        want = len(prompts) * G
        admit = min(len(prompts), max(0, -(-(want - len(self.ready)) // G)))
        setup.log("ulorl/carried_ready", float(len(self.ready)))
        keys = [row_key(row) for row in rows[:admit]]
        ready = self.ready + self.strategy.generate(list(prompts[:admit]), keys=keys)
        rounds = 0
        while len(ready) < want:
            if rounds >= MAX_WARMUP_SEGMENTS:
                raise RuntimeError(f"segment rollout released too few groups in {rounds} segments")
            more = [setup.prepare(row) for row in setup.draw_rows(len(prompts))]
            ready += self.strategy.generate([setup.encode(row) for row in more], keys=list(map(row_key, more)))
            rounds += 1
        self.ready, batch = ready[want:], ready[:want]
        setup.log("ulorl/extra_segments", float(rounds))
        setup.log("ulorl/pending", float(self.strategy.pending))
        setup.log("ulorl/staleness_mean", sum(s.extras.get("staleness", 0) for s in batch) / max(len(batch), 1))
        return [Group(row_columns(batch[k].extras.get("key")), batch[k : k + G]) for k in range(0, want, G)]

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "ready": [sample_to_json(s) for s in self.ready]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state["strategy"])
        self.ready = [Sample(**s) for s in state.get("ready", [])]


@dataclass(frozen=True)
class StandardRollout:
    """G independent samples per prompt (plain GRPO); `cap(row)` caps a prompt's new tokens (curriculum: 2·B(t))."""

    cap: Callable[[Row], int] | None = None

    def build(self, engine: Engine, setup: RolloutSetup) -> GroupSource:
        return PerCallSource(StandardStrategy(engine, setup.params, setup.num_generations), setup, self.cap)

    def generated_tokens(self, max_completion_length: int, tokenizer: Any) -> tuple[str, int]:
        """The most tokens a sample generates after its prompt, and the YAML key that sets it."""
        return "max_completion_length", max_completion_length

    @property
    def plain(self) -> bool:
        """True when TRL's own generation samples the same groups (no per-prompt cap)."""
        return self.cap is None


@dataclass(frozen=True)
class SerialExitRollout:
    """S-GRPO: one full trace and `num_exits` early exits cut from its thinking (rollouts/strategies/serial_exits)."""

    num_exits: int
    answer_max_tokens: int
    inducer: str = DEFAULT_INDUCER
    plain = False

    def build(self, engine: Engine, setup: RolloutSetup) -> GroupSource:
        strategy = SerialExitStrategy(
            engine, setup.tokenizer, setup.params, seed=setup.seed, num_exits=self.num_exits,
            answer_max_tokens=self.answer_max_tokens, inducer=self.inducer,
        )  # fmt: skip
        return PerCallSource(strategy, setup)

    def generated_tokens(self, max_completion_length: int, tokenizer: Any) -> tuple[str, int]:
        # an exit late in a full trace still gets its whole answer budget
        inducer = len(tokenizer.encode(self.inducer, add_special_tokens=False))
        return "max_completion_length", max_completion_length + inducer + self.answer_max_tokens


@dataclass(frozen=True)
class SegmentRollout:
    """UloRL: `segment_length` new tokens per round, unfinished samples resume next step, `max_total_tokens` in all."""

    segment_length: int
    max_total_tokens: int
    plain = False

    def build(self, engine: Engine, setup: RolloutSetup) -> GroupSource:
        # segments derive a seed per (group, member, segment) from this process's one
        params = replace(setup.params, seed=derive_seed(setup.seed, setup.rank))
        G = setup.num_generations
        return PooledSource(SegmentStrategy(engine, params, G, self.segment_length, self.max_total_tokens), setup)

    def generated_tokens(self, max_completion_length: int, tokenizer: Any) -> tuple[str, int]:
        return "variant.max_total_tokens", self.max_total_tokens


def row_key(row: Row) -> str:
    """A group's dataset row as a JSON string, carried by the segment pool: a group released steps later answers
    with its own row (its reference `answer` first of all), not with the row of the round that released it."""
    return json.dumps(row, sort_keys=True, default=str)


def row_columns(key: Any) -> Row:
    """Inverse of `row_key`; a key that is not such a JSON object carries no columns."""
    if not isinstance(key, str):
        return {}
    try:
        value = json.loads(key)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def sample_to_json(s: Sample) -> dict[str, Any]:
    return {
        "prompt_index": s.prompt_index,
        "prompt_ids": s.prompt_ids,
        "completion_ids": s.completion_ids,
        "finish_reason": s.finish_reason,
        "loss_mask": s.loss_mask,
        "logprobs": s.logprobs,
        "extras": s.extras,
    }
