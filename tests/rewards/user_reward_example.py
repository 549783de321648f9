"""A user's own rewards, loaded by dotted path in test_functions.py (`make_reward("user_reward_example:...")`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def length_bonus(completions: Sequence[Any], completion_ids: Sequence[Sequence[int]], **kwargs: Any) -> list[float]:
    """R = 1/(1 + L): shorter is better."""
    return [1.0 / (1 + len(ids)) for ids in completion_ids]


class ContainsWord:
    """R = 1 if the completion text contains `word`, else 0."""

    __name__ = "contains_word"

    def __init__(self, word: str) -> None:
        self.word = word

    def __call__(self, completions: Sequence[str], **kwargs: Any) -> list[float]:
        return [float(self.word in c) for c in completions]


NOT_CALLABLE = 42
