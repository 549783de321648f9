"""Format rewards: the curriculum's think/answer tags (2508.08940 §3) and the surrogate's valid-answer check
(2505.19439 §2.1, code `answer_format_reward_func`). None of them looks at a reference answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rewards.correctness import check_answer_format, completion_texts
from rewards.grading import extract_answer, is_valid_math
from rewards.thinking import THINK_CLOSE, THINK_OPEN

__all__ = ["AnswerFormat", "AnswerTagFormat", "ThinkFormat", "has_valid_answer"]

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


def has_valid_answer(text: str, answer_format: str = "boxed", timeout: float = 2.0) -> bool:
    """True iff an answer can be extracted, is non-empty and parses as math (`is_valid_math` caches the parse)."""
    answer = extract_answer(text, answer_format)
    if answer is None or not answer.strip():
        return False
    return is_valid_math(answer, timeout=timeout)


def think_ok(text: str, require_open_tag: bool = True) -> bool:
    """One `</think>`, at most one `<think>` (exactly one if `require_open_tag`) before it, non-empty text after it."""
    if text.count(THINK_CLOSE) != 1:
        return False
    head, tail = text.split(THINK_CLOSE)
    n_open = head.count(THINK_OPEN)
    if n_open > 1 or (require_open_tag and n_open == 0) or THINK_OPEN in tail:
        return False
    return bool(tail.strip())


def answer_tag_ok(text: str) -> bool:
    """Exactly one `<answer>…</answer>` span with non-empty content, after any `</think>`."""
    tail = text.rsplit(THINK_CLOSE, 1)[-1]
    if THINK_OPEN in tail or text.count(ANSWER_OPEN) != 1 or text.count(ANSWER_CLOSE) != 1:
        return False
    start, end = tail.find(ANSWER_OPEN), tail.find(ANSWER_CLOSE)
    return 0 <= start < end and bool(tail[start + len(ANSWER_OPEN) : end].strip())


@dataclass(frozen=True)
class ThinkFormat:
    """R = 1 if the completion has one well-formed `<think>…</think>` block followed by a non-empty answer, else 0.

    This is the curriculum's I_think. Where the prompt opened the block (R1-distill templates) the trainer passes
    `prompt_opens_think` and the completion is read as `<think>` + text, so it only has to close it;
    `require_open_tag=False` does the same for callers that do not pass that field.
    Example: "<think>2+2=4</think> 4" -> 1.0; "<think>2+2=4" -> 0.0; "<think>a</think></think> 4" -> 0.0.
    """

    __name__: ClassVar[str] = "think_format"

    require_open_tag: bool = True

    def __call__(
        self, completions: Sequence[Any] | None = None, completion_ids: Any = None, **kwargs: Any
    ) -> list[float]:
        texts = completion_texts(completions, self.__name__, kwargs)
        return [float(think_ok(t, self.require_open_tag)) for t in texts]


@dataclass(frozen=True)
class AnswerTagFormat:
    """R = 1 if one non-empty `<answer>…</answer>` span follows the thinking (curriculum I_answer), else 0.

    Example: "<think>x</think><answer>4</answer>" -> 1.0; "<answer></answer>" -> 0.0; "<think><answer>4</answer>" -> 0.0.
    """

    __name__: ClassVar[str] = "answer_tag_format"

    def __call__(
        self, completions: Sequence[Any] | None = None, completion_ids: Any = None, **kwargs: Any
    ) -> list[float]:
        return [float(answer_tag_ok(t)) for t in completion_texts(completions, self.__name__, kwargs)]


@dataclass(frozen=True)
class AnswerFormat:
    """Surrogate format reward R_f: 1 if the extracted answer is non-empty and parses as math (SymPy), else 0.

    Extraction is `rewards.grading.extract_answer(text, answer_format)` (by default the last `\\boxed{}`), validity
    `is_valid_math`. No reference answer is used. Scale it with TRL's `reward_weights` (the authors' code uses 0.5).
    Example: "\\boxed{\\frac{3}{2}}" -> 1.0; "\\boxed{}" -> 0.0; "\\boxed{x +* 2}" -> 0.0; no box -> 0.0.
    """

    __name__: ClassVar[str] = "answer_format"

    answer_format: str = "boxed"
    timeout: float = 2.0

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)

    def __call__(
        self, completions: Sequence[Any] | None = None, completion_ids: Any = None, **kwargs: Any
    ) -> list[float]:
        texts = completion_texts(completions, self.__name__, kwargs)
        return [float(has_valid_answer(t, self.answer_format, self.timeout)) for t in texts]
