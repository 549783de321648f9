"""The thinking span, defined once, in tokens: S-GRPO's exits (rollouts/strategies/serial_exits.py), the budget
rewards' think scope (rewards/length_rewards.py) and eval's `num_think_tokens` (eval/samples.py) all read it here.

A completion's thinking ends at its FIRST `</think>` (as DLER's grader reads the answer after the first one, and as
a chat template splits reasoning from content). `ThinkSpan.thought` counts the tokens before that tag, `end` the
tokens through it. Unclosed, every token is thinking except a final stop token, when the caller names its stop ids.

The tag is found as its id sequence (`close_ids`, the tokenizer's encoding of `</think>`: one id for models with a
`</think>` token, several BPE ids otherwise) or, with `decode`, on the decoded text mapped back to tokens, which also
finds a tag the tokenizer merged with its neighbours (".</" + "think" + ">").
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "ThinkSpan",
    "find_subsequence",
    "opens_think",
    "prompt_opens_think",
    "think_span",
]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class ThinkSpan:
    thought: int  # tokens of thinking, before the first `</think>`
    end: int  # tokens through the first `</think>` (= thought when it never closes)
    closed: bool


def find_subsequence(seq: Sequence[int], sub: Sequence[int]) -> int:
    """Index of the first occurrence of `sub` in `seq`, or -1."""
    n, target = len(sub), list(sub)
    if n == 0:
        return -1
    first = target[0]
    for i in range(len(seq) - n + 1):
        if seq[i] == first and list(seq[i : i + n]) == target:
            return i
    return -1


def think_span(
    ids: Sequence[int],
    close_ids: Sequence[int] = (),
    *,
    decode: Callable[[Sequence[int]], str] | None = None,
    stop_ids: Container[int] = (),
) -> ThinkSpan:
    """The thinking span of completion `ids` (see the module docstring).

    Example: ids [5, 6, 9, 7], close_ids [9] -> ThinkSpan(thought=2, end=3, closed=True); unclosed [5, 6, 2] with
    stop id 2 -> ThinkSpan(2, 2, False).
    """
    at = find_subsequence(ids, close_ids)
    if at >= 0:
        return ThinkSpan(at, at + len(close_ids), True)
    if decode is not None and ids:
        text = decode(ids)
        char = text.find(THINK_CLOSE)
        if char >= 0:  # the smallest prefixes whose text reaches into, and past, the tag
            end = _prefix_reaching(ids, decode, char + len(THINK_CLOSE))
            return ThinkSpan(_prefix_reaching(ids, decode, char + 1) - 1, end, True)
    n = len(ids) - 1 if ids and ids[-1] in stop_ids else len(ids)
    return ThinkSpan(n, n, False)


def _prefix_reaching(ids: Sequence[int], decode: Callable[[Sequence[int]], str], chars: int) -> int:
    """The smallest n whose decoded prefix `ids[:n]` has at least `chars` characters (bisection)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(decode(ids[:mid])) >= chars:
            hi = mid
        else:
            lo = mid + 1
    return lo


def opens_think(prompt_text: str) -> bool:
    """True if the rendered prompt leaves a think block open (its last `<think>` is not closed): R1-distill style."""
    opened = prompt_text.rfind(THINK_OPEN)
    return opened >= 0 and prompt_text.find(THINK_CLOSE, opened) < 0


def prompt_opens_think(prompt_ids: Sequence[int], decode: Callable[[Sequence[int]], str], tail: int = 32) -> bool:
    """`opens_think` of a tokenised prompt: the generation prompt is at its end, so its last `tail` tokens decide."""
    return opens_think(decode(list(prompt_ids[-tail:])))
