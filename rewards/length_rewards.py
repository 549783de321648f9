"""Per-completion length rewards with TRL's reward-function signature (formulas in `rewards.length`, §S3).

Lengths are always token counts (the trainer's `num_tokens` field, else `len(completion_ids[i])`), never characters.
Group-dependent length rules (GRPO-λ, S-GRPO, DA-DLER) live in `rewards.group` instead, because they need the
gathered group (§S9).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rewards import length
from rewards.correctness import (
    Grading,
    check_answer_format,
    column,
    completion_texts,
    finished_flags,
    token_lengths,
    value_at_step,
)
from rewards.format import has_valid_answer
from rewards.schedules import Schedule, as_schedule
from rewards.thinking import think_span

__all__ = [
    "BudgetBand",
    "BudgetTriangular",
    "PolylineLength",
    "RiseFallLength",
    "SoftOverlong",
    "Truncation",
    "finished_flags",
    "token_lengths",
]


@dataclass(frozen=True)
class Truncation:
    """DLER truncation reward (2510.15110 §3.2): R = correct · 1[L ≤ L_T] · (1 if finished else s).

    s = `stop_properly_scale`: 0 in the paper (a truncated response scores 0); the authors' recipe uses 0.1, i.e. a
    correct answer in a response that hit the generation cap keeps 10% of its reward. A finished response longer
    than `target_length` always scores 0. With `require_think_close` (DLER code, default) a response without
    `</think>` is a format error and scores 0; turn it off for models that do not think in tags. As in DLER's fork
    (deepscaler `RewardMathFn`) the answer is the last box between the FIRST `</think>` and the next one. Reads
    `completions`, `completion_ids`, the reference column, `finish_reason` (else needs `max_tokens`) and
    `prompt_opens_think`.
    Example: L_T = 4000, correct, L = 3000, finished -> 1.0; L = 4001 -> 0.0.
    """

    __name__: ClassVar[str] = "truncation"

    target_length: int
    max_tokens: int | None = None
    stop_properly_scale: float = 0.0
    require_think_close: bool = True
    answer_format: str = "boxed"
    answer_column: str = "answer"
    timeout: float = 5.0

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)
        if self.target_length < 1:
            raise ValueError(f"target_length must be >= 1, got {self.target_length}")
        if not 0 <= self.stop_properly_scale <= 1:
            raise ValueError(f"stop_properly_scale must be in [0, 1], got {self.stop_properly_scale}")

    @property
    def grading(self) -> Grading:
        """DeepScaleR's grading as DLER's fork runs it: the answer after the first `</think>`."""
        return Grading(self.answer_format, self.answer_column, self.timeout, self.require_think_close, True)

    def __call__(
        self,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        lengths = token_lengths(completion_ids, self.__name__, kwargs)
        finished = finished_flags(kwargs, lengths, self.max_tokens, self.__name__)
        correct = self.grading.verdicts(completions, kwargs, self.__name__)
        return [
            float(c and n <= self.target_length) * (1.0 if f else self.stop_properly_scale)
            for c, n, f in zip(correct, lengths, finished, strict=True)
        ]


@dataclass(frozen=True)
class _BudgetReward:
    """Shared part of the curriculum budget rewards: find B per sample, then score L against it."""

    __name__: ClassVar[str] = "budget"
    _shape: ClassVar[Callable[[float, float, float], float]]

    schedule: Schedule | Mapping[str, Any] | int | None = None
    budget_column: str = "budget"
    r_max: float = 1.0
    # Token id of `</think>`: when set, L counts only the tokens before it (methods.md §4.2 `length_scope="think"`).
    think_end_token_id: int | None = None

    def __post_init__(self) -> None:
        # Accept a YAML dict or a plain int and store a Schedule, so configs and pickles stay simple.
        if self.schedule is not None:
            object.__setattr__(self, "schedule", as_schedule(self.schedule))

    def budgets(self, n: int, kwargs: Mapping[str, Any]) -> list[int]:
        """B per sample: the `budget_column` if passed, else the schedule at `trainer_state.global_step`."""
        if self.budget_column in kwargs:
            return [int(b) for b in column(kwargs, self.budget_column, n, self.__name__)]
        if self.schedule is None:
            raise ValueError(
                f"reward {self.__name__!r} needs a budget: a {self.budget_column!r} column or a `schedule`"
            )
        assert callable(self.schedule)  # a Mapping/int was turned into a Schedule in __post_init__
        return [value_at_step(self.schedule, kwargs, self.__name__, "budget")] * n

    def __call__(
        self,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        lengths = token_lengths(completion_ids, self.__name__, kwargs)
        if self.think_end_token_id is not None and completion_ids is not None:  # the thinking span's tokens
            lengths = [think_span(list(ids), [self.think_end_token_id]).thought for ids in completion_ids]
        budgets = self.budgets(len(lengths), kwargs)
        return [type(self)._shape(n, b, self.r_max) for n, b in zip(lengths, budgets, strict=True)]


@dataclass(frozen=True)
class BudgetTriangular(_BudgetReward):
    """Curriculum length reward (2508.08940 §3): R = R_max·L/B up to B, R_max·(2 − L/B) up to 2B, then 0.

    Correctness-independent. B comes from a per-sample `budget` column, else from `schedule(global_step)`
    (a Schedule, a schedule dict such as {"type": "stepwise_exponential", ...}, or an int for a fixed budget).
    Example: B = 100: L = 50 -> 0.5, L = 100 -> 1.0, L = 150 -> 0.5, L = 250 -> 0.0.
    """

    __name__: ClassVar[str] = "budget_triangular"
    _shape = staticmethod(length.triangular)


@dataclass(frozen=True)
class BudgetBand(_BudgetReward):
    """Curriculum "band" ablation (2508.08940 §3): R = R_max up to B, linear to 0 at 2B, 0 beyond.

    B as in `BudgetTriangular`. Example: B = 100: L = 0 -> 1.0, L = 100 -> 1.0, L = 150 -> 0.5, L = 200 -> 0.0.
    """

    __name__: ClassVar[str] = "budget_band"
    _shape = staticmethod(length.band)


@dataclass(frozen=True)
class _SurrogateLength:
    """Shared part of the surrogate length rewards: x = L/max_tokens, optionally gated by answer validity."""

    __name__: ClassVar[str] = "surrogate_length"
    _shape: ClassVar[Callable[[float, float, float], float]]

    max_tokens: int
    p: float = 0.5
    format_gate: bool = True
    answer_format: str = "boxed"
    timeout: float = 2.0

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)
        type(self)._shape(0, self.max_tokens, self.p)  # validates max_tokens and p early

    def __call__(
        self,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        lengths = token_lengths(completion_ids, self.__name__, kwargs)
        rewards = [type(self)._shape(n, self.max_tokens, self.p) for n in lengths]
        if not self.format_gate:
            return rewards
        texts = completion_texts(completions, self.__name__, kwargs)
        # Paper Eq. 5: a malformed answer can only be penalised for length, never rewarded.
        return [
            r if has_valid_answer(t, self.answer_format, self.timeout) else min(0.0, r)
            for r, t in zip(rewards, texts, strict=True)
        ]


@dataclass(frozen=True)
class RiseFallLength(_SurrogateLength):
    """Surrogate length reward R_l (2505.19439 Eq. 2-3): x = L/L_max, 1 − (1 − x/p)² up to p, 1 − 2((x−p)/(1−p))².

    With `format_gate` (paper Eq. 5, default) a completion without a valid answer gets min(0, R_l), so
    `answer_format` + `rise_fall_length` sums to R_f + R_l or min(0, R_l). Reads `completion_ids` and `completions`.
    Example: L_max = 1000, p = 0.5, valid answer: L = 250 -> 0.75, L = 500 -> 1.0, L = 1000 -> −1.0.
    """

    __name__: ClassVar[str] = "rise_fall_length"
    _shape = staticmethod(length.rise_fall)


@dataclass(frozen=True)
class PolylineLength(_SurrogateLength):
    """Surrogate polyline length reward (2505.19439 Eq. 4): 2x up to x = 0.5, 3 − 4x beyond (general p: x/p, ...).

    Gated like `RiseFallLength`. Example: L_max = 1000, valid answer: L = 250 -> 0.5, L = 500 -> 1.0, L = 750 -> 0.0.
    """

    __name__: ClassVar[str] = "polyline_length"
    _shape = staticmethod(length.polyline)


@dataclass(frozen=True)
class SoftOverlong:
    """DAPO soft overlong punishment: 0 up to L_max − cache, linear to −1 at L_max, −1 beyond.

    Reference only (UloRL found it ≈ plain reward 0 for truncated samples). Reads `completion_ids`.
    Example: max_tokens = 100, cache = 20: L = 80 -> 0.0, L = 90 -> −0.5, L = 100 -> −1.0.
    """

    __name__: ClassVar[str] = "soft_overlong"

    max_tokens: int
    cache: int

    def __post_init__(self) -> None:
        length.soft_overlong(0, self.max_tokens, self.cache)  # validates the arguments early

    def __call__(
        self,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        return [
            length.soft_overlong(n, self.max_tokens, self.cache)
            for n in token_lengths(completion_ids, self.__name__, kwargs)
        ]
