"""Correctness reward and the helpers every reward uses to read TRL's reward-function inputs.

TRL 1.16 (`GRPOTrainer._calculate_rewards`) calls `reward_func(prompts=..., completions=..., completion_ids=...,
**reward_kwargs)`; `reward_kwargs` holds the dataset's extra columns (one value per completion), the extra fields of a
rollout function, `trainer_state`, `log_extra` and `log_metric`. `completions` are strings, or message lists
(`[{"role": "assistant", "content": ...}]`) for conversational data. Grading goes through `rewards.grading`, shared
with `eval/`, so training and evaluation agree on what counts as correct.

Besides TRL's arguments, brevity's trainer passes two fields per completion on every generation path (its own
rollouts, transformers or vLLM, and TRL's generation with `rollout.engine: trl`): `finish_reason`, "length" when the
completion hit its token cap without an EOS and "stop" otherwise, and `num_tokens`, its length in tokens (the stop
token included, as in `completion_ids`). Rewards read them through `finished_flags` and `token_lengths`, which fall
back to inferring them when a caller passes neither (a reward called by hand).

Correctness is computed once per completion: the trainer grades each completion with the run's `Grading` (that of its
first reward that grades) and passes the verdict as `graded_correct`, with the `grading` it came from; a reward that
grades the same way (`Grading.verdicts`) reads it instead of grading again (DLER's `truncation` and its weight-0
`correctness` column share one grading), and a reward called by hand grades itself.

Unfinished completions (issue 13): where the prompt opened the think block (R1-distill templates end the generation
prompt with `<think>`), the trainer passes `prompt_opens_think` per completion and every reward reads the completion
as `<think>\n` + text, so an answer counts only after `</think>`; `finish_reason` lets a reward score a length-capped
completion as wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rewards.grading import ANSWER_FORMATS, grade
from rewards.schedules import Constant
from rewards.thinking import THINK_CLOSE, THINK_OPEN

__all__ = [
    "Correctness",
    "Grading",
    "RewardFunc",
    "check_answer_format",
    "column",
    "completion_text",
    "completion_texts",
    "finished_flags",
    "grade_all",
    "token_lengths",
]

RewardFunc = Callable[..., list[float]]

# reward_kwargs keys that are not dataset columns; left out of "columns passed" in error messages.
_TRL_KWARGS = {"prompts", "trainer_state", "log_extra", "log_metric", "environments"}

PROMPT_OPENS_THINK = "prompt_opens_think"  # the per-completion field the trainer passes (bool)
FINISH_REASON = "finish_reason"  # per completion: "stop" | "length"
NUM_TOKENS = "num_tokens"  # per completion: its length in tokens
GRADED_CORRECT = "graded_correct"  # per completion: the shared grader's verdict, graded once by the trainer
GRADING = "grading"  # per completion: the `Grading` that verdict came from


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


def completion_texts(
    completions: Sequence[Any] | None, reward_name: str, kwargs: Mapping[str, Any] | None = None
) -> list[str]:
    """`completion_text` of each completion; raises if TRL's `completions` were not passed.

    With `kwargs[PROMPT_OPENS_THINK]` true for a completion, its text starts with `<think>\\n`: the block the prompt
    opened is part of what the reward reads, so text before `</think>` (or all of it, if never closed) is thinking.
    """
    if completions is None:
        raise ValueError(f"reward {reward_name!r} needs `completions` (texts or message lists)")
    texts = [completion_text(c) for c in completions]
    if kwargs is None or PROMPT_OPENS_THINK not in kwargs:
        return texts
    opened = column(kwargs, PROMPT_OPENS_THINK, len(texts), reward_name)
    return [f"{THINK_OPEN}\n{t}" if o and not t.lstrip().startswith(THINK_OPEN) else t for t, o in zip(texts, opened)]


def token_lengths(
    completion_ids: Sequence[Sequence[int]] | None, reward_name: str, kwargs: Mapping[str, Any] | None = None
) -> list[int]:
    """Token count of each completion: the trainer's `num_tokens` field if passed, else `len(completion_ids[i])`."""
    if kwargs is not None and NUM_TOKENS in kwargs:
        n = len(completion_ids) if completion_ids is not None else len(kwargs[NUM_TOKENS])
        return [int(t) for t in column(kwargs, NUM_TOKENS, n, reward_name)]
    if completion_ids is None:
        raise ValueError(
            f"reward {reward_name!r} measures length in tokens and needs `completion_ids` or `num_tokens` "
            "(the trainer passes both; when calling by hand, pass completion_ids=[[token ids], ...])"
        )
    return [len(ids) for ids in completion_ids]


def finished_flags(
    kwargs: Mapping[str, Any], lengths: Sequence[int], max_tokens: int | None, reward_name: str
) -> list[bool]:
    """Whether each completion ended on its own: `finish_reason == "stop"` if given, else `L < max_tokens`."""
    if FINISH_REASON in kwargs:
        reasons = column(kwargs, FINISH_REASON, len(lengths), reward_name)
        return [r == "stop" for r in reasons]
    if max_tokens is None:
        raise ValueError(
            f"reward {reward_name!r} needs to know which completions finished: pass a `finish_reason` field "
            "('stop'/'length', e.g. from a rollout function) or give the reward `max_tokens` (the generation cap)"
        )
    return [n < max_tokens for n in lengths]


def value_at_step(schedule: Callable[[int], int], kwargs: Mapping[str, Any], reward_name: str, metric: str) -> int:
    """`schedule` at `trainer_state.global_step`, logged as `<reward_name>/<metric>` through TRL's `log_metric`.

    A `Constant` schedule (the same value at every step) needs no trainer state, so a reward can be called by hand.
    """
    state = kwargs.get("trainer_state")
    if state is None and not isinstance(schedule, Constant):
        raise ValueError(f"reward {reward_name!r} evaluates its schedule at `trainer_state.global_step`")
    value = int(schedule(int(state.global_step) if state is not None else 0))
    log_metric = kwargs.get("log_metric")
    if callable(log_metric):
        log_metric(f"{reward_name}/{metric}", float(value))
    return value


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


def grade_all(
    texts: Sequence[str],
    references: Sequence[Any],
    answer_format: str,
    timeout: float,
    *,
    require_think_close: bool = False,
    first_think_close: bool = False,
) -> list[bool]:
    """Grade each text against its reference; a list/tuple reference counts as several accepted answers.

    `require_think_close`: a text without `</think>` is wrong (DeepScaleR's format error). `first_think_close`: the
    answer is read between the first `</think>` and the next one, as DLER's fork does
    (`model_response.split("</think>")[1]` in its deepscaler `RewardMathFn`), instead of after the last.
    """
    out = []
    for text, reference in zip(texts, references, strict=True):
        if THINK_CLOSE not in text:
            if require_think_close:
                out.append(False)
                continue
        elif first_think_close:
            text = THINK_CLOSE + text.split(THINK_CLOSE)[1]
        golds = reference if isinstance(reference, (list, tuple)) else [reference]
        # str(): dataset columns may hold numbers (GSM8K-style int answers).
        out.append(
            grade(text, [str(g) for g in golds if g is not None], timeout=timeout, answer_format=answer_format).correct
        )
    return out


@dataclass(frozen=True)
class Grading:
    """How a completion is graded against its reference column (`grade_all`); equal gradings give equal verdicts."""

    answer_format: str = "boxed"
    answer_column: str = "answer"
    timeout: float = 5.0
    require_think_close: bool = False
    first_think_close: bool = False

    def grade(self, completions: Sequence[Any] | None, kwargs: Mapping[str, Any], reward_name: str) -> list[bool]:
        """Grade each completion here (texts read as `completion_texts` reads them)."""
        texts = completion_texts(completions, reward_name, kwargs)
        references = column(kwargs, self.answer_column, len(texts), reward_name)
        return grade_all(
            texts,
            references,
            self.answer_format,
            self.timeout,
            require_think_close=self.require_think_close,
            first_think_close=self.first_think_close,
        )

    def verdicts(self, completions: Sequence[Any] | None, kwargs: Mapping[str, Any], reward_name: str) -> list[bool]:
        """Whether each completion is correct: the trainer's `graded_correct` when it graded this way, else `grade`."""
        if GRADING in kwargs and GRADED_CORRECT in kwargs:
            n = len(kwargs[GRADED_CORRECT])
            if all(g == self for g in column(kwargs, GRADING, n, reward_name)):
                return [bool(c) for c in column(kwargs, GRADED_CORRECT, n, reward_name)]
        return self.grade(completions, kwargs, reward_name)


@dataclass(frozen=True)
class Correctness:
    """R = 1 if the extracted answer matches the reference (`rewards.grading.grade`), else 0.

    Reads `completions` and the reference column (`answer` by default; a list of accepted answers also works).
    `answer_format`: "boxed" (last \\boxed{} after the thinking), "answer_tag" (<answer>…</answer>) or "any".
    `truncated_is_wrong` (default): a completion whose `finish_reason` is "length" scores 0 whatever it boxed
    (S-GRPO's unanswered C_0, UloRL's "truncated = wrong"); without a `finish_reason` field every completion counts
    as finished. `prompt_opens_think` (from the trainer): an answer must follow `</think>`.
    Example: "... \\boxed{12}" against reference "12" -> 1.0; against "13" -> 0.0; cut at the length cap -> 0.0.
    """

    __name__: ClassVar[str] = "correctness"

    answer_format: str = "boxed"
    answer_column: str = "answer"
    timeout: float = 5.0
    truncated_is_wrong: bool = True
    require_think_close: bool = False
    first_think_close: bool = False

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)

    @property
    def grading(self) -> Grading:
        return Grading(
            self.answer_format, self.answer_column, self.timeout, self.require_think_close, self.first_think_close
        )

    def __call__(
        self, completions: Sequence[Any] | None = None, completion_ids: Any = None, **kwargs: Any
    ) -> list[float]:
        correct = self.grading.verdicts(completions, kwargs, self.__name__)
        if self.truncated_is_wrong and FINISH_REASON in kwargs:
            finished = finished_flags(kwargs, [0] * len(correct), None, self.__name__)
            correct = [c and f for c, f in zip(correct, finished, strict=True)]
        return [float(c) for c in correct]
