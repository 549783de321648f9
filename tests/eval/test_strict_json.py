"""summary.json is strict JSON (issue 16 item 5): a statistic over no samples is null, never a bare NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from eval.plan import Plan
from eval.run import EvalConfig
from eval.samples import append_samples, nan_to_none, slug
from eval.summary import write_summary
from rollouts.data import Problem


def _strict_loads(text: str) -> Any:
    """json.loads that refuses NaN/Infinity, as JSON readers outside Python do."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_nan_to_none() -> None:
    value = {"a": math.nan, "b": [1.0, math.inf, -math.inf, (2, math.nan)], "c": {"d": None, "e": "NaN", "f": 3}}
    out = nan_to_none(value)
    assert out == {"a": None, "b": [1.0, None, None, [2, None]], "c": {"d": None, "e": "NaN", "f": 3}}
    assert _strict_loads(json.dumps(out, allow_nan=False)) == out
    assert math.isnan(value["a"])  # the input is left alone
    with pytest.raises(ValueError):
        json.dumps(value, allow_nan=False)


def test_summary_json_without_think_spans_or_correct_samples(tmp_path: Path) -> None:
    """No sample has a think span and none is correct: tokens_think and tokens_correct are over no samples."""
    bench = "gsm8k"
    problems = [Problem(id=str(i), prompt=f"q{i}", answer="7", metadata={}) for i in range(2)]
    records = [
        {
            "benchmark": bench,
            "problem_id": p.id,
            "sample_index": j,
            "completion": r"\boxed{8}",
            "num_tokens": 10 + j,
            "num_think_tokens": None,
            "answer": "8",
            "reference": "7",
            "correct": False,
            "finish_reason": "stop",
        }
        for p in problems
        for j in range(2)
    ]
    append_samples(tmp_path / "samples" / f"{slug(bench)}.jsonl", records, fsync=False)
    config = EvalConfig(model="m", benchmarks=[bench], k=2, out=str(tmp_path))
    plan = Plan({bench: problems}, {}, {}, "m", "transformers", tokenizer=None)

    summary = write_summary(config, plan, None, tmp_path)

    on_disk = _strict_loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    stats = on_disk["benchmarks"][bench]
    assert stats["tokens_think"] == {
        "mean": None,
        "median": None,
        "p10": None,
        "p90": None,
        "min": None,
        "max": None,
        "count": 0,
    }
    assert stats["tokens_correct"]["mean"] is None and stats["tokens"]["mean"] == 10.5
