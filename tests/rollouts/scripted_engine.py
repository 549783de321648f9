"""A deterministic fake `Engine` for the edge cases a real model cannot be made to hit on demand.

Each token is a pure function of (prompt, completion so far, sample index), so a continuation from `prefix_ids`
produces exactly what an uninterrupted run would have, and exact lengths, EOS steps and think-close positions are
chosen by the test. Every `generate` call is recorded in `engine.calls`.

Token layout of the default `Script` (ids chosen so no two roles collide):
    100 + j              first token of sample j (its identity, so a resumed sample keeps its plan)
    10..89               thinking tokens
    think_close          the `</think>` id sequence, emitted after `think_len(prompt, j)` tokens
    500..899             answer tokens (they depend on where thinking ended, so exits differ)
    EOS (2)              after `answer_len` answer tokens
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from rollouts.types import Completion, Request

EOS = 2
THINK_CLOSE = (5,)
Rule = Callable[[tuple[int, ...], tuple[int, ...], int], int]


def find_subsequence(seq: Sequence[int], sub: Sequence[int]) -> int:
    """Index of the first occurrence of `sub` in `seq`, or -1."""
    n = len(sub)
    for i in range(len(seq) - n + 1):
        if tuple(seq[i : i + n]) == tuple(sub):
            return i
    return -1


@dataclass
class Script:
    """Think for `think_len(prompt, j)` tokens (None: never close), close, answer `answer_len` tokens, EOS."""

    think_len: Callable[[tuple[int, ...], int], int | None]
    answer_len: int = 3
    think_close: tuple[int, ...] = THINK_CLOSE

    def __call__(self, prompt: tuple[int, ...], completion: tuple[int, ...], index: int) -> int:
        if not completion:
            return 100 + index
        close_at = find_subsequence(completion, self.think_close)
        if close_at >= 0:
            answered = len(completion) - close_at - len(self.think_close)
            return 500 + (close_at * 7 + answered) % 400 if answered < self.answer_len else EOS
        length = self.think_len(prompt, completion[0] - 100) if completion[0] >= 100 else None
        if length is not None and len(completion) >= length:
            partial = len(completion) - length  # how much of a multi-token close is already out
            if partial < len(self.think_close) and tuple(completion[length:]) == self.think_close[:partial]:
                return self.think_close[partial]
        return 10 + (completion[0] * 31 + len(completion) * 17 + sum(prompt)) % 80

    def total_len(self, prompt: Sequence[int], index: int) -> int:
        """Length of sample `index` of `prompt` when nothing caps it (EOS included)."""
        length = self.think_len(tuple(prompt), index)
        assert length is not None, "a never-closing sample has no natural length"
        return length + len(self.think_close) + self.answer_len + 1


def logprob_of(position: int, token: int) -> float:
    """Deterministic fake behaviour log-prob of `token` at completion `position`."""
    return -(position + 1) / 1000 - token / 1e6


@dataclass
class ScriptedEngine:
    """`Engine` protocol implementation driven by a `rule(prompt, completion_so_far, sample_index) -> token`."""

    rule: Rule
    eos_token_ids: tuple[int, ...] = (EOS,)
    max_model_len: int = 4096
    calls: list[list[Request]] = field(default_factory=list)

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        return [[self._sample(request, j) for j in range(request.params.n)] for request in requests]

    def _sample(self, request: Request, index: int) -> Completion:
        prompt, prefix = tuple(request.prompt_ids), tuple(request.prefix_ids)
        params = request.params
        stops = set(self.eos_token_ids) | set(params.stop_token_ids)
        room = self.max_model_len - len(prompt) - len(prefix)
        new: list[int] = []
        logprobs: list[float] = []
        while len(new) < min(params.max_tokens, room):
            token = self.rule(prompt, prefix + tuple(new), index)
            new.append(token)
            logprobs.append(logprob_of(len(prefix) + len(new) - 1, token))
            if token in stops:
                return Completion(new, "stop", logprobs if params.logprobs else None)
        return Completion(new, "length", logprobs if params.logprobs else None)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        for _ in weights:
            pass
