"""Efficiency metrics beyond mean tokens: the area under the accuracy-within-budget curve, tokens by difficulty bin
and how closely a budget-conditioned model keeps its prompt budget (the Accuracy-Efficiency Score is in `eval.aes`).

All lengths are completion tokens as eval counts them (`num_tokens`, the stop token included); accuracies are
fractions in [0, 1]. Functions are pure and take eval's per-sample records or `budget_sweep` points.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from eval.metrics import avg_at_k, group_by_problem


def budget_auc(sweep: Sequence[Mapping[str, Any]]) -> float:
    """Normalised area under accuracy-within-budget: (1 / C_max) * integral_0^C_max acc(C) dC, in [0, 1].

    acc is `budget_sweep`'s accuracy at each cutoff, joined by straight lines, starting from acc(0) = 0 (no tokens, no
    answer); C_max is the largest cutoff. It is the mean accuracy over budgets drawn uniformly from (0, C_max]: 1.0
    would be a model correct at every budget. Compare runs only over the same cutoffs.
    Example: cutoffs 100, 200 with accuracy 0.5, 0.5 -> (25 + 50) / 200 = 0.375.
    """
    if not sweep:
        raise ValueError("budget_auc needs at least one sweep point")
    points = sorted((int(p["cutoff"]), float(p["accuracy"])) for p in sweep)
    xs = np.asarray([0, *(c for c, _ in points)], dtype=np.float64)
    ys = np.asarray([0.0, *(a for _, a in points)])
    area = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))
    return area / float(xs[-1])


SOLVE_RATE_BINS = ("unsolved", "hard", "medium", "easy")


def solve_rate_bin(rate: float) -> str:
    """The bin of a problem's solve rate over its k samples: unsolved (0), hard (0 < r < 0.5), medium (0.5 <= r < 1),
    easy (1)."""
    if rate <= 0:
        return "unsolved"
    if rate < 0.5:
        return "hard"
    return "medium" if rate < 1 else "easy"


def tokens_by_difficulty(
    records: Sequence[Mapping[str, Any]], difficulty: Mapping[str, Hashable] | None = None, *, name: str = "column"
) -> dict[str, Any]:
    """Accuracy and mean tokens per difficulty bin: does the model spend fewer tokens on easy problems?

    `difficulty` maps problem id -> a value from the benchmark (e.g. the study's number of terms, a MATH level); each
    distinct value is a bin, in sorted order. Without it a problem's bin is its own solve rate over its k samples
    (`solve_rate_bin`): model-dependent, so every "easy" problem is 100% correct by definition and only the token
    columns compare across models. Returns {"by": `name` | "solve_rate", "bins": [{bin, problems, samples, accuracy,
    accuracy_stderr, mean_tokens, mean_tokens_correct}, ...]}; a mean over no samples is NaN.
    """
    if not records:
        raise ValueError("tokens_by_difficulty needs at least one record")
    groups = group_by_problem(records)
    if difficulty is not None:
        if missing := sorted(set(groups) - set(difficulty)):
            raise ValueError(f"no difficulty for problems {missing[:5]}")
        labels = {pid: difficulty[pid] for pid in groups}
    else:
        labels = {
            pid: solve_rate_bin(float(np.mean([bool(r["correct"]) for r in recs]))) for pid, recs in groups.items()
        }
    order = SOLVE_RATE_BINS if difficulty is None else sorted(set(labels.values()), key=_sort_key)
    bins = []
    for label in order:
        pids = [pid for pid in groups if labels[pid] == label]
        if not pids:
            continue
        recs = [r for pid in pids for r in groups[pid]]
        acc, stderr = avg_at_k({pid: [bool(r["correct"]) for r in groups[pid]] for pid in pids})
        correct = [int(r["num_tokens"]) for r in recs if r["correct"]]
        bins.append(
            {
                "bin": str(label),
                "problems": len(pids),
                "samples": len(recs),
                "accuracy": acc,
                "accuracy_stderr": stderr,
                "mean_tokens": float(np.mean([int(r["num_tokens"]) for r in recs])),
                "mean_tokens_correct": float(np.mean(correct)) if correct else math.nan,
            }
        )
    return {"by": "solve_rate" if difficulty is None else name, "bins": bins}


def problem_difficulty(metadata: Mapping[str, Any], column: str) -> Hashable | None:
    """A problem's value in `column`: its table row (local file, hf:), else its reasoning-gym entry's metadata (e.g.
    `num_terms`), else its own metadata; None if absent. A non-scalar value (a list, a dict) becomes its text."""
    raw, entry = metadata.get("raw"), metadata.get("rg_entry")
    if isinstance(raw, Mapping) and column in raw:
        value = raw[column]
    elif isinstance(entry, Mapping) and column in (entry.get("metadata") or {}):
        value = entry["metadata"][column]
    else:
        value = metadata.get(column)
    return value if value is None or isinstance(value, (int, float, str)) else str(value)


def _sort_key(value: Hashable) -> tuple[int, Any]:
    """Numbers first, in numeric order, then everything else by its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def budget_adherence(records: Sequence[Mapping[str, Any]], budget: int) -> dict[str, Any]:
    """How closely samples prompted with a budget of B tokens keep it (L1, Aggarwal & Welleck 2025, arXiv 2503.04697,
    measures the deviation from the prompted length):

    - within_budget_rate: fraction of samples with num_tokens <= B;
    - mean_abs_deviation: mean |num_tokens - B| / B (0 = every sample exactly on budget);
    - mean_overshoot: mean max(0, num_tokens - B), in tokens.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1 token, got {budget}")
    if not records:
        raise ValueError("budget_adherence needs at least one record")
    tokens = np.asarray([int(r["num_tokens"]) for r in records], dtype=np.float64)
    return {
        "budget": int(budget),
        "within_budget_rate": float(np.mean(tokens <= budget)),
        "mean_abs_deviation": float(np.mean(np.abs(tokens - budget)) / budget),
        "mean_overshoot": float(np.mean(np.maximum(tokens - budget, 0.0))),
    }
