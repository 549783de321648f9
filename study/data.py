"""The study's data files: held-out evaluation splits first, then warm-start traces and RL prompts that avoid them.

All files are JSON Lines that `brevity sft`, `brevity train` and `brevity eval` read as they are:

- `eval.jsonl`, `hard.jsonl`: `id`, `prompt`, `answer`, `minimal` (the minimal correct trace), `terms`;
- `sft.jsonl`: `prompt`, `completion` (a verbose trace), and its redundancy counts;
- `train.jsonl`: `id`, `prompt`, `answer` (RL prompts; the traces are the policy's own).

Streams are seeded from the study seed, so `--seed N` gives new problems, a new warm start and new arms. A problem
in an evaluation split never appears (as the same tuple of terms) in the warm-start or RL data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from study.traces import SumTask, Trace, make_problem

__all__ = ["write_study_data"]


def _stream(task: SumTask, seed: int, n_terms: int | None = None) -> Iterator[Trace]:
    index = 0
    while True:
        yield make_problem(task, seed, index, n_terms)
        index += 1


def _take(stream: Iterator[Trace], n: int, exclude: set[tuple[int, ...]], unique: bool) -> list[Trace]:
    out: list[Trace] = []
    seen = set(exclude)
    for trace in stream:
        if len(out) == n:
            break
        if trace.terms in exclude or (unique and trace.terms in seen):
            continue
        seen.add(trace.terms)
        out.append(trace)
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def _eval_row(t: Trace) -> dict[str, Any]:
    return {"id": t.id, "prompt": t.prompt, "answer": str(t.answer), "minimal": t.minimal, "terms": len(t.terms)}


def _budget_system(budget: int) -> str:
    from rollouts.templates import render

    return render("budget", "", budget=budget)[0]["content"]


def write_study_data(
    out: Path,
    task: SumTask,
    *,
    seed: int,
    sft: int,
    train: int,
    eval: int,
    hard: int,
    hard_terms: int,
    budget_range: tuple[int, int] | None = None,
    budget_fraction: float = 0.25,
) -> dict[str, Any]:
    """Write the four files into `out`; return their row counts and the warm start's over-thinking statistics.

    With `budget_range`, a `budget_fraction` of the warm-start rows get the curriculum's budget template as a system
    turn (a budget drawn uniformly from the range) and the same verbose trace: the warm start then reads that prompt
    format, and, like the verbose reasoner it is meant to be, ignores the budget."""
    out.mkdir(parents=True, exist_ok=True)
    base = 1000 * seed
    evals = _take(_stream(task, base + 1), eval, set(), unique=True)
    hards = _take(_stream(task, base + 2, hard_terms), hard, {t.terms for t in evals}, unique=True)
    held_out = {t.terms for t in evals} | {t.terms for t in hards}
    sfts = _take(_stream(task, base + 3), sft, held_out, unique=False)
    trains = _take(_stream(task, base + 4), train, held_out, unique=False)
    _write(out / "eval.jsonl", [_eval_row(t) for t in evals])
    _write(out / "hard.jsonl", [_eval_row(t) for t in hards])
    rng = random.Random(f"budget/{seed}")
    sft_rows = []
    for t in sfts:
        row = {"prompt": t.prompt, "completion": t.verbose, "restated": t.restated, "checks": list(t.checks)}
        row["second_pass"] = t.second_pass
        if budget_range is not None and rng.random() < budget_fraction:
            row["system"] = _budget_system(rng.randint(*budget_range))
        sft_rows.append(row)
    _write(out / "sft.jsonl", sft_rows)
    _write(out / "train.jsonl", [{"id": t.id, "prompt": t.prompt, "answer": str(t.answer)} for t in trains])
    chars_verbose = sum(len(t.verbose) for t in sfts)
    chars_minimal = sum(len(t.minimal) for t in sfts)
    return {
        "rows": {"eval": len(evals), "hard": len(hards), "sft": len(sfts), "train": len(trains)},
        "warm_start_overthinking_chars": chars_verbose / max(chars_minimal, 1),
    }
