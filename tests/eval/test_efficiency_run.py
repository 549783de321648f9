"""End to end: a real tiny model's evaluation carries the efficiency metrics in strict summary.json and summary.md
(tokens after the first correct answer, budget-curve area, tokens by difficulty, AES against a baseline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rollouts.engines
from eval.overthinking import first_correct_tokens
from eval.run import EvalConfig, evaluate, main
from rollouts.types import Completion

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/eval/conftest.py


def _strict(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def levelled(tmp_path: Path) -> Path:
    """Four sums with a `level` column (the number of terms), as a local benchmark file."""
    rows = [("1+2", "3", 2), ("4+5", "9", 2), ("1+2+3", "6", 3), ("2+2+2+2", "8", 4)]
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a, "level": n}) + "\n" for q, a, n in rows))
    return path


def test_tiny_model_summary_carries_efficiency_metrics(tiny_model_path: str, tmp_path: Path, levelled: Path) -> None:
    common = ["--model", tiny_model_path, "--engine", "transformers", "--benchmarks", str(levelled)]
    common += ["--columns", "prompt=question", "--k", "2", "--temperature", "1.0"]
    base = tmp_path / "base"
    assert main([*common, "--out", str(base), "--max-tokens", "6"]) == 0
    out = tmp_path / "short"
    argv = [*common, "--out", str(out), "--max-tokens", "3", "--baseline", str(base)]
    assert main([*argv, "--budget-cutoffs", "1", "3", "--difficulty-column", "level"]) == 0

    s = _strict(out / "summary.json")["benchmarks"][str(levelled)]
    assert s["overthinking"]["samples"] == round(s["accuracy"] * 8)  # every correct sample is searched
    assert 0.0 <= s["budget_auc"] <= 1.0 and [p["cutoff"] for p in s["budget_sweep"]] == [1, 3]
    by = s["tokens_by_difficulty"]
    assert by["by"] == "level" and [(b["bin"], b["problems"], b["samples"]) for b in by["bins"]] == [
        ("2", 2, 4),
        ("3", 1, 2),
        ("4", 1, 2),
    ]
    assert all(1 <= b["mean_tokens"] <= 3 for b in by["bins"])
    base_s = _strict(base / "summary.json")["benchmarks"][str(levelled)]
    assert by["by"] != base_s["tokens_by_difficulty"]["by"] == "solve_rate"  # the baseline ran without the column
    assert "aes" in s and "compression_ratio" in s  # null where the baseline's accuracy is 0
    md = (out / "summary.md").read_text()
    assert "| AES |" in md and "Tokens by difficulty bin" in md and "| level | 3 |" in md and "budget AUC" in md


class CannedEngine:
    """Every request gets the same completion: a think block that states the answer, re-checks it, then answers."""

    def __init__(self, tokenizer, text: str) -> None:
        self.ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]

    def generate(self, requests):
        return [[Completion(list(self.ids), "stop")] for _ in requests]


def test_tokens_after_the_first_correct_answer_end_to_end(tiny_model_path: str, tmp_path: Path, monkeypatch) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    text = "<think>16-3-4 = 9 eggs, 9*2 = <answer>18</answer>. Check: 9*2 = 18, yes.</think> <answer>18</answer>"
    monkeypatch.setattr(rollouts.engines, "make_engine", lambda *a, **k: CannedEngine(tokenizer, text))
    config = {"model": tiny_model_path, "benchmarks": ["gsm8k"], "size": 1, "template": "think"}
    summary = evaluate(EvalConfig(**config, out=str(tmp_path / "on")))
    first, total = first_correct_tokens(text, "18", tokenizer, "answer_tag")
    assert 0 < first < total
    o = summary["benchmarks"]["gsm8k"]["overthinking"]
    assert (o["samples"], o["tokens_after_first_correct"]) == (1, total - first)
    assert o["outcome_efficiency"] == pytest.approx(first / total)
    assert o["share_after_first_correct"] == pytest.approx((total - first) / total)

    off = evaluate(EvalConfig(**config, out=str(tmp_path / "off"), overthinking=False))
    assert "overthinking" not in off["benchmarks"]["gsm8k"]


def test_budget_conditioned_model_at_several_budgets(tiny_model_path: str, tmp_path: Path, levelled: Path, capsys):
    """`--budgets 2 5`: one evaluation per prompt budget, and how closely the tiny model kept each one."""
    out = tmp_path / "budgets"
    argv = ["--model", tiny_model_path, "--engine", "transformers", "--benchmarks", str(levelled), "--out", str(out)]
    argv += ["--columns", "prompt=question", "--template", "budget", "--max-tokens", "4"]
    assert main([*argv, "--budgets", "2", "5"]) == 0
    result = _strict(out / "budgets.json")
    assert [(r["budget"], r["benchmark"]) for r in result["rows"]] == [(2, str(levelled)), (5, str(levelled))]
    for row in result["rows"]:
        budget = row["budget"]
        records = [json.loads(line) for line in (out / f"budget_{budget}" / "samples" / "sums.jsonl").open()]
        tokens = [r["num_tokens"] for r in records]
        assert row["within_budget_rate"] == sum(t <= budget for t in tokens) / 4
        assert row["mean_overshoot"] == pytest.approx(sum(max(t - budget, 0) for t in tokens) / 4)
        assert row["mean_abs_deviation"] == pytest.approx(sum(abs(t - budget) for t in tokens) / 4 / budget)
        summary = _strict(out / f"budget_{budget}" / "summary.json")
        assert summary["config"]["budget"] == budget and "budget_adherence" in summary["benchmarks"][str(levelled)]
    assert result["rows"][0]["within_budget_rate"] <= result["rows"][1]["within_budget_rate"]  # 4 tokens at most
    assert "| 5 | " in (out / "budgets.md").read_text()
    assert main([*argv, "--budgets", "2", "--budget", "3", "--out", str(tmp_path / "both")]) == 2
    assert "not both" in capsys.readouterr().err and not (tmp_path / "both").exists()
