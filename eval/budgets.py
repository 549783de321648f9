"""`brevity eval --template budget --budgets 64 128 256`: a budget-conditioned model (L1, the curriculum arm) at
several prompt budgets, and how closely it keeps each one.

Each budget is an ordinary evaluation with `--budget B` in `<out>/budget_<B>/` (so each resumes on its own, and its
summary carries `budget_adherence`, `eval.efficiency.budget_adherence`); `<out>/budgets.json` and `budgets.md` put
the budgets side by side: accuracy, mean tokens, the fraction within budget, the mean relative deviation from it
and the mean overshoot, per benchmark. The model is loaded once per budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from eval.config import USER_ERRORS, EvalConfig, EvalInputError
from eval.report import budgets_table
from eval.samples import nan_to_none, write_atomic

__all__ = ["evaluate_budgets"]


def evaluate_budgets(config: EvalConfig, evaluate: Callable[[EvalConfig], dict[str, Any]]) -> dict[str, Any]:
    """Evaluate once per budget of `config.budgets` with `evaluate` (eval.run's, passed in by its CLI so this module
    does not import eval.run back); write and return the side-by-side comparison."""
    try:
        config.validate()  # e.g. --budget and --budgets together, before any model is loaded
    except USER_ERRORS as e:
        raise EvalInputError(str(e)) from e
    out = Path(config.out)
    label = config.label or Path(config.model).name
    runs = {}
    for budget in config.budgets:
        sub = replace(config, budget=budget, budgets=[], out=str(out / f"budget_{budget}"), label=f"{label}@{budget}")
        runs[budget] = evaluate(sub)
    rows = [
        {
            "budget": budget,
            "benchmark": bench,
            "accuracy": s["accuracy"],
            "accuracy_stderr": s["accuracy_stderr"],
            "mean_tokens": s["tokens"]["mean"],
            **{k: v for k, v in s["budget_adherence"].items() if k != "budget"},
        }
        for budget, summary in runs.items()
        for bench, s in summary["benchmarks"].items()
    ]
    result: dict[str, Any] = nan_to_none(
        {"model": config.model, "label": label, "template": config.template, "rows": rows}
    )
    write_atomic(out / "budgets.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_atomic(out / "budgets.md", budgets_table(rows))
    return result
