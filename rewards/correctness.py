"""Correctness reward and the helpers every reward uses to read TRL's reward-function inputs.

TRL 1.16 (`GRPOTrainer._calculate_rewards`) calls `reward_func(prompts=..., completions=..., completion_ids=...,
**reward_kwargs)`; `reward_kwargs` holds the dataset's extra columns (one value per completion), the extra fields of a
rollout function, `trainer_state`, `log_extra` and `log_metric`. `completions` are strings, or message lists
(`[{"role": "assistant", "content": ...}]`) for conversational data. Grading goes through `rewards.grading`, shared
with `eval/`, so training and evaluation agree on what counts as correct.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rewards.grading import ANSWER_FORMATS, grade

__all__ = [
    "Correctness",
    "RewardFunc",
    "check_answer_format",
    "column",
    "completion_text",
    "completion_texts",
    "grade_all",
]

RewardFunc = Callable[..., list[float]]

# reward_kwargs keys that are not dataset columns; left out of "columns passed" in error messages.
_TRL_KWARGS = {"prompts", "trainer_state", "log_extra", "log_metric", "environments"}


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The text of one completion; for message lists, the assistant messages joined.

    A response parser (TRL `parse_response`) may have moved the thinking into `reasoning_content` (or `thinking`);
    it is put back as `<think>\\n...\\n</think>\\n\\n` before the content so think-format and DLER's `</think>` checks
    still see it.
    """
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("thinking")
        parts.append(f"<think>\n{reasoning}\n</think>\n\n{content}" if reasoning else str(content))
    return "\n".join(parts)


def completion_texts(completions: Sequence[Any] | None, reward_name: str) -> list[str]:
    """`completion_text` of each completion; raises if TRL's `completions` were not passed."""
    if completions is None:
        raise ValueError(f"reward {reward_name!r} needs `completions` (texts or message lists)")
    return [completion_text(c) for c in completions]


def column(kwargs: Mapping[str, Any], name: str, n: int, reward_name: str) -> list[Any]:
    """The dataset column `name` from the reward kwargs, one value per completion; raises if missing or misaligned."""
    if name not in kwargs:
        passed = sorted(k for k in kwargs if k not in _TRL_KWARGS)
        raise ValueError(f"reward {reward_name!r} needs the dataset column {name!r}; columns passed: {passed}")
    values = kwargs[name]
    if not isinstance(values, (list, tuple)):
        values = [values] * n  # one value for the whole batch
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions (reward {reward_name!r})")
    return list(values)


def check_answer_format(answer_format: str) -> None:
    """Fail at construction, not at the first reward call, on an extraction format the grader does not know."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {list(ANSWER_FORMATS)}, got {answer_format!r}")


def grade_all(texts: Sequence[str], references: Sequence[Any], answer_format: str, timeout: float) -> list[bool]:
    """Grade each text against its reference; a list/tuple reference counts as several accepted answers."""
    out = []
    for text, reference in zip(texts, references, strict=True):
        golds = reference if isinstance(reference, (list, tuple)) else [reference]
        # str(): dataset columns may hold numbers (GSM8K-style int answers).
        out.append(
            grade(text, [str(g) for g in golds if g is not None], timeout=timeout, answer_format=answer_format).correct
        )
    return out


@dataclass(frozen=True)
class Correctness:
    """R = 1 if the extracted answer matches the reference (`rewards.grading.grade`), else 0.

    Reads `completions` and the reference column (`answer` by default; a list of accepted answers also works).
    `answer_format`: "boxed" (last \\boxed{} after the thinking), "answer_tag" (<answer>…</answer>) or "any".
    Example: "... \\boxed{12}" against reference "12" -> 1.0; against "13" -> 0.0.
    """

    __name__: ClassVar[str] = "correctness"

    answer_format: str = "boxed"
    answer_column: str = "answer"
    timeout: float = 5.0

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)

    def __call__(
        self, completions: Sequence[Any] | None = None, completion_ids: Any = None, **kwargs: Any
    ) -> list[float]:
        texts = completion_texts(completions, self.__name__)
        references = column(kwargs, self.answer_column, len(texts), self.__name__)
        return [float(c) for c in grade_all(texts, references, self.answer_format, self.timeout)]
