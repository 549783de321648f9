"""A run's token budget B(t) (curriculum, arXiv 2508.08940): the one object the prompt and the reward both read.

`StepBudget` is a prompt hook: at step t it writes B(t) into the prompt's budget slot and into the row's `budget`
column, which the budget rewards (`budget_triangular`, `budget_band`) read, so the number a completion is scored
against is the number its prompt stated, whatever schedule a `rewards:` entry names. `cap(row)` is 2·B(t), where the
triangular reward reaches 0 (the generation cap of `cap_generation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rollouts.templates import BUDGET_SLOT

BUDGET_COLUMN = "budget"


@dataclass(frozen=True)
class StepBudget:
    """B(t) from a `rewards.schedules` schedule (any callable step -> tokens)."""

    schedule: Any
    columns: ClassVar[tuple[str, ...]] = (BUDGET_COLUMN,)  # what the hook adds to a row

    def at(self, step: int) -> int:
        return int(self.schedule(step))

    def __call__(self, row: dict[str, Any], step: int) -> dict[str, Any]:
        """The row as the policy sees it at `step`: B(t) in the prompt (chat messages or a raw string) and the row."""
        budget, prompt = self.at(step), row["prompt"]
        if isinstance(prompt, str):  # a raw template (no chat template): the paper's base-model string
            prompt = prompt.replace(BUDGET_SLOT, str(budget))
        else:
            prompt = [{**m, "content": m["content"].replace(BUDGET_SLOT, str(budget))} for m in prompt]
        return {**row, "prompt": prompt, BUDGET_COLUMN: budget}

    def cap(self, row: dict[str, Any]) -> int:
        """2·B(t) new tokens for a row this hook prepared."""
        return 2 * int(row[BUDGET_COLUMN])

    def metrics(self, step: int) -> dict[str, float]:
        return {"budget": float(self.at(step))}
