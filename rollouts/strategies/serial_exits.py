"""S-GRPO serial groups (arXiv 2505.07686): one full trace per prompt, m early exits cut from its thinking.

Differs from GRPO in that the group is serial: each exit is the trace's first P thinking tokens, the inducer
("...</think>\\n\\n") inserted as token ids, and an answer the policy generates from there. All of it happens on token
ids; the trace is never decoded and re-encoded.

Inducer tokenisation: the inducer text is tokenised once, on its own. A BPE tokenizer would merge differently if it
saw "prefix + inducer" as one string (the cut may fall mid-word), but we never re-encode: the ids the engine
conditions on are exactly the ids the trainer sees, which is what the loss needs. At construction the inducer's ids
must contain the `</think>` id sequence, else a ValueError says the model has no such token or tokenises it
differently in context. For a model without a special `</think>` token (SmolLM2) that sequence is several BPE
tokens; a trace that writes `</think>` with another tokenisation is not found and counts as unclosed.

Exit positions are a pure function of (strategy seed, call number, the prompt's token ids, its trace's thinking
length): each prompt draws from its own `random.Random`, so a prompt gets the same exits whichever other prompts share
its call, and 2 processes holding half of a batch each draw what 1 process holding all of it draws (the trainer calls
every rank's strategy once per generation round, so call numbers agree). Identical prompts in one call draw the same
positions (on their own traces).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol

from rewards.thinking import find_subsequence, think_span
from rollouts.strategies.base import call_engine, check_name, derive_seed
from rollouts.types import Completion, Engine, Request, Sample, SamplingParams

DEFAULT_INDUCER = "Time is limited, stop thinking and start answering.\n</think>\n\n"
ShortTrace = Literal["repeat", "shrink"]


class TextEncoder(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


class SerialExitStrategy:
    """`generate(prompts)` -> (m+1) samples per prompt: m exits in positional order, then the full trace.

    Short traces (fewer than m thinking tokens): TRL needs a fixed group size (`num_generations = m+1`), so by
    default (`short_trace="repeat"`) every thinking position 1..n is used once and the remaining exits are drawn
    again uniformly WITH replacement (a documented deviation from "without replacement"; duplicate exits get
    distinct ranks). A trace with no thinking at all (n = 0) exits at position 0, i.e. inducer only.
    `short_trace="shrink"` follows methods.md's default instead: use positions 1..n and return a smaller group.
    `group_sizes` holds each prompt's group size of the last call either way. Positions: see the module docstring;
    the state (for checkpoints) is the seed and the number of calls so far.

    Inserted inducer tokens get loss_mask 0: the policy did not sample them.
    With `params.seed` set, each exit's request gets a seed derived from (seed, prompt, exit), so exits of one trace
    do not share one random stream.
    """

    name = "serial_exits"

    def __init__(
        self,
        engine: Engine,
        tokenizer: TextEncoder | None,
        params: SamplingParams,
        *,
        num_exits: int = 8,
        answer_max_tokens: int = 1024,
        inducer: str = DEFAULT_INDUCER,
        think_close: str = "</think>",
        inducer_ids: Sequence[int] | None = None,
        think_close_ids: Sequence[int] | None = None,
        short_trace: ShortTrace = "repeat",
        seed: int = 0,
    ) -> None:
        if num_exits < 1:
            raise ValueError(f"num_exits must be >= 1, got {num_exits}")
        if answer_max_tokens < 1:
            raise ValueError(f"answer_max_tokens must be >= 1, got {answer_max_tokens}")
        if short_trace not in ("repeat", "shrink"):
            raise ValueError(f"short_trace must be 'repeat' or 'shrink', got {short_trace!r}")
        if tokenizer is None and (inducer_ids is None or think_close_ids is None):
            raise ValueError("pass a tokenizer, or both inducer_ids and think_close_ids")
        self.engine = engine
        self.params = params
        self.num_exits = num_exits
        self.answer_max_tokens = answer_max_tokens
        self.short_trace: ShortTrace = short_trace
        self.inducer_ids = list(inducer_ids) if inducer_ids is not None else _encode(tokenizer, inducer)
        self.think_close_ids = (
            list(think_close_ids) if think_close_ids is not None else _encode(tokenizer, think_close)
        )
        if not self.think_close_ids:
            raise ValueError(f"{think_close!r} tokenises to no ids")
        if find_subsequence(self.inducer_ids, self.think_close_ids) < 0:
            raise ValueError(
                f"the inducer's ids {self.inducer_ids} do not contain the think-close ids {self.think_close_ids}: the "
                f"model has no {think_close!r} token, or it tokenises differently inside the inducer text; pass "
                "inducer_ids/think_close_ids explicitly"
            )
        self.seed = seed
        self.calls = 0  # generate() calls so far, empty ones included: part of each call's exit-position seeds
        self.group_sizes: list[int] = []

    def thinking_length(self, trace: Completion) -> int:
        """The trace's thinking span (rewards/thinking.py): tokens before the first `</think>`; unclosed, the whole
        trace but a final stop token."""
        stops = (
            set(self.engine.eos_token_ids) | set(self.params.stop_token_ids) if trace.finish_reason == "stop" else ()
        )
        return think_span(trace.token_ids, self.think_close_ids, stop_ids=stops).thought

    def position_rng(self, call: int, prompt: Sequence[int]) -> random.Random:
        """The generator of one prompt's exit positions in call number `call` (0-based)."""
        return random.Random(derive_seed(self.seed, call, prompt_key(prompt)))

    def exit_positions(self, n: int, rng: random.Random) -> list[int]:
        """m exit positions over 1..n, sorted; drawn without replacement when n >= m (see class doc otherwise)."""
        m = self.num_exits
        if n >= m:
            return sorted(rng.sample(range(1, n + 1), m))
        if self.short_trace == "shrink":
            return list(range(1, n + 1))
        if n == 0:
            return [0] * m
        return sorted(list(range(1, n + 1)) + rng.choices(range(1, n + 1), k=m - n))

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int] | None = None) -> list[Sample]:
        """Two engine calls in all: the full traces (n=1 each), then every exit of every prompt in one batch."""
        if max_tokens is not None and len(max_tokens) != len(prompts):
            raise ValueError(f"max_tokens has {len(max_tokens)} entries for {len(prompts)} prompts")
        call, self.calls = self.calls, self.calls + 1
        caps = list(max_tokens) if max_tokens is not None else [self.params.max_tokens] * len(prompts)
        trace_requests = [Request(list(p), replace(self.params, n=1, max_tokens=cap)) for p, cap in zip(prompts, caps)]
        traces = [out[0] for out in call_engine(self.engine, trace_requests)]

        plans: list[list[tuple[int, int | None]]] = []  # per prompt: (exit position, index into exit_requests)
        exit_requests: list[Request] = []
        thinking = [self.thinking_length(trace) for trace in traces]
        for i, (prompt, trace) in enumerate(zip(prompts, traces)):
            # exits must leave room for the inducer and one answer token inside the model's length
            fits = max(0, self.engine.max_model_len - len(prompt) - len(self.inducer_ids) - 1)
            plans.append([])
            for position in self.exit_positions(min(thinking[i], fits), self.position_rng(call, prompt)):
                prefix = list(trace.token_ids[:position]) + self.inducer_ids
                room = min(self.answer_max_tokens, self.engine.max_model_len - len(prompt) - len(prefix))
                if room < 1:  # only when even the bare inducer does not fit: an empty, truncated answer
                    plans[i].append((position, None))
                    continue
                plans[i].append((position, len(exit_requests)))
                params = replace(
                    self.params, n=1, max_tokens=room, seed=derive_seed(self.params.seed, i, len(plans[i]))
                )
                exit_requests.append(Request(list(prompt), params, prefix))
        answers = [out[0] for out in call_engine(self.engine, exit_requests)]

        samples: list[Sample] = []
        self.group_sizes = []
        for i, (prompt, trace) in enumerate(zip(prompts, traces)):
            group_size = len(plans[i]) + 1
            self.group_sizes.append(group_size)
            for rank, (position, k) in enumerate(plans[i]):
                answer = answers[k] if k is not None else Completion([], "length", [])
                samples.append(self._exit_sample(i, prompt, trace, position, answer, rank, thinking[i]))
            samples.append(
                Sample(
                    prompt_index=i,
                    prompt_ids=list(prompt),
                    completion_ids=list(trace.token_ids),
                    finish_reason=trace.finish_reason,
                    loss_mask=[1] * len(trace.token_ids),
                    logprobs=None if trace.logprobs is None else list(trace.logprobs),
                    extras=self._extras(group_size - 1, thinking[i], True, 0, thinking[i]),
                )
            )
        return samples

    def _exit_sample(
        self, i: int, prompt: Sequence[int], trace: Completion, position: int, answer: Completion, rank: int, n: int
    ) -> Sample:
        k = len(self.inducer_ids)
        return Sample(
            prompt_index=i,
            prompt_ids=list(prompt),
            completion_ids=list(trace.token_ids[:position]) + self.inducer_ids + list(answer.token_ids),
            finish_reason=answer.finish_reason,
            loss_mask=[1] * position + [0] * k + [1] * len(answer.token_ids),
            logprobs=None
            if trace.logprobs is None
            else [*trace.logprobs[:position], *[math.nan] * k, *(answer.logprobs or [])],
            extras=self._extras(rank, position, False, k, n),
        )

    @staticmethod
    def _extras(rank: int, position: int, full: bool, inserted: int, n: int) -> dict[str, Any]:
        return {
            "exit_rank": rank,
            "exit_position": position,
            "is_full_trace": full,
            "num_inserted": inserted,
            "trace_thinking_length": n,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_name(self.name, state)
        if "calls" not in state:
            raise ValueError(
                "serial_exits state without 'calls': saved by a version that drew exit positions from one sequential "
                "RNG, which this version cannot continue"
            )
        self.seed, self.calls = int(state["seed"]), int(state["calls"])


def prompt_key(prompt: Sequence[int]) -> int:
    """A stable 63-bit hash of a prompt's token ids (Python's `hash` is salted per process)."""
    digest = hashlib.blake2b(",".join(map(str, prompt)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _encode(tokenizer: TextEncoder | None, text: str) -> list[int]:
    assert tokenizer is not None
    return list(tokenizer.encode(text, add_special_tokens=False))
