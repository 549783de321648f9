"""Rewards against a stated token limit: L1's budget-conditioned reward (2503.04697) and ThinkPrune's hard limit
tightened over training (2504.01296). Per completion, so ordinary TRL reward functions (no group needed).

Correctness comes from the shared grader through `Correctness` (a completion stopped by the length cap is wrong);
lengths are the trainer's `num_tokens` (else `len(completion_ids[i])`), the whole completion in tokens, as both
papers count the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rewards.correctness import Correctness, Grading, check_answer_format, column, token_lengths, value_at_step
from rewards.schedules import Schedule, as_schedule

__all__ = ["BudgetConditioned", "HardLimit", "l1_exact", "l1_max"]

L1_MODES = ("exact", "max")


def l1_exact(correct: bool, length: int, budget: int, alpha: float = 0.0003) -> float:
    """LCPO-Exact (2503.04697): r = 1[correct] − α·|n_gold − n_y|.

    Example: n_gold = 1000, n_y = 1500, α = 0.0003: correct -> 0.85, wrong -> −0.15.
    """
    return float(correct) - alpha * abs(budget - length)


def l1_max(correct: bool, length: int, budget: int, alpha: float = 0.0003, delta: float = 0.5) -> float:
    """LCPO-Max (2503.04697): r = 1[correct]·clip(α·(n_gold − n_y) + δ, 0, 1).

    Example: n_gold = 1000, α = 0.0003, δ = 0.5, correct: n_y = 500 -> 0.65, 1500 -> 0.35, 3000 -> 0.0.
    """
    return float(correct) * min(1.0, max(0.0, alpha * (budget - length) + delta))


def _grader(reward: Any) -> Correctness:
    return Correctness(
        answer_format=reward.answer_format,
        answer_column=reward.answer_column,
        timeout=reward.timeout,
        truncated_is_wrong=reward.truncated_is_wrong,
    )


class _Graded:
    """A reward that grades through `Correctness`: its grading, for the trainer's single grading pass."""

    @property
    def grading(self) -> Grading:
        return _grader(self).grading


@dataclass(frozen=True)
class BudgetConditioned(_Graded):
    """L1 / LCPO (2503.04697): the target length n_gold is in the prompt; "exact" or "max" reward (see l1_exact/l1_max).

    n_gold is sampled per prompt (L1: a uniform integer in [100, 4000]) and stored in the dataset column
    `budget_column` (default `budget`), which TRL passes to the reward, one value per completion. The same number
    goes into the prompt through the `budget` template: `rollouts.templates.render("budget", problem, budget=n_gold)`
    writes "IMPORTANT: You should use exactly {n_gold} tokens in your response." into the system turn (L1's own
    wording appends "Think for {n} tokens." / "Think for maximum {n} tokens." to the problem). α = 0.0003 as the
    authors' `run_l1_exact.sh`, δ = 0.5. Includes correctness, so use it instead of the `correctness` reward.
    Example (exact): n_gold = 1000, L = 1500, correct -> 0.85; (max) -> 0.35.
    """

    __name__: ClassVar[str] = "budget_conditioned"

    mode: str = "exact"
    alpha: float = 0.0003
    delta: float = 0.5
    budget_column: str = "budget"
    answer_format: str = "boxed"
    answer_column: str = "answer"
    timeout: float = 5.0
    truncated_is_wrong: bool = True

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)
        if self.mode not in L1_MODES:
            raise ValueError(f"mode must be one of {list(L1_MODES)}, got {self.mode!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")

    def __call__(
        self,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        lengths = token_lengths(completion_ids, self.__name__, kwargs)
        budgets = [int(b) for b in column(kwargs, self.budget_column, len(lengths), self.__name__)]
        correct = [r > 0 for r in _grader(self)(completions, **kwargs)]
        if self.mode == "exact":
            return [l1_exact(c, n, b, self.alpha) for c, n, b in zip(correct, lengths, budgets, strict=True)]
        return [l1_max(c, n, b, self.alpha, self.delta) for c, n, b in zip(correct, lengths, budgets, strict=True)]


@dataclass(frozen=True)
class HardLimit(_Graded):
    """ThinkPrune (2504.01296): R = 1[correct]·1[L ≤ limit(step)], the limit tightened over training.

    Past the limit the paper discards the unfinished response, so it scores 0. `schedule` gives the limit at
    `trainer_state.global_step`: a `rewards.schedules` schedule, a dict such as {"type": "linear", "start": 4000,
    "end": 2000, "total_steps": 600, "n_drops": 2} (4000 -> 3000 -> 2000, ThinkPrune's iterative 4k/3k/2k rounds
    as steps of one run), or an int for a fixed limit. The limit is logged as `hard_limit/limit`. Set
    `max_completion_length` to the first limit, as the paper caps generation there. Includes correctness.
    Example: that schedule, correct, L = 3500: step 0 -> 1.0, step 200 -> 0.0.
    """

    __name__: ClassVar[str] = "hard_limit"

    schedule: Schedule | Mapping[str, Any] | int
    answer_format: str = "boxed"
    answer_column: str = "answer"
    timeout: float = 5.0
    truncated_is_wrong: bool = True

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)
        # Accept a YAML dict or a plain int and store a Schedule, so configs and pickles stay simple.
        object.__setattr__(self, "schedule", as_schedule(self.schedule))

    def limit(self, kwargs: Mapping[str, Any]) -> int:
        """The limit at `trainer_state.global_step` (logged as `hard_limit/limit`); a fixed limit needs no state."""
        assert callable(self.schedule)  # a Mapping/int was turned into a Schedule in __post_init__
        return value_at_step(self.schedule, kwargs, self.__name__, "limit")

    def __call__(
        self,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        lengths = token_lengths(completion_ids, self.__name__, kwargs)
        limit = self.limit(kwargs)
        correct = [r > 0 for r in _grader(self)(completions, **kwargs)]
        return [float(c and n <= limit) for c, n in zip(correct, lengths, strict=True)]
