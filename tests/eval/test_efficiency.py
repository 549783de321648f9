"""Budget-curve area, Accuracy-Efficiency Score, tokens by difficulty and budget adherence, computed by hand on the
records of tests/eval/test_metrics.py (problem "a": 2/4 correct, "b": 1/4)."""

from __future__ import annotations

import json
import math

import pytest

from eval.aes import accuracy_efficiency_score
from eval.efficiency import (
    budget_adherence,
    budget_auc,
    problem_difficulty,
    solve_rate_bin,
    tokens_by_difficulty,
)
from eval.metrics import budget_sweep, compare_to_baseline, summarize
from eval.report import difficulty_table, efficiency_table, markdown_table
from eval.samples import nan_to_none
from tests.eval.test_metrics import RECORDS

# tokens: a = 100 (ok), 200 (ok), 400 (length), 300; b = 400 (length), 50 (ok), 150, 250


def test_budget_auc_by_hand() -> None:
    sweep = budget_sweep(RECORDS, [100, 250, 1000])  # accuracy 0.25, 0.375, 0.375
    # trapezoids from (0, 0): 100 * 0.125 + 150 * 0.3125 + 750 * 0.375 = 12.5 + 46.875 + 281.25 = 340.625
    assert budget_auc(sweep) == pytest.approx(340.625 / 1000)
    assert budget_auc([{"cutoff": 200, "accuracy": 0.5}, {"cutoff": 100, "accuracy": 0.5}]) == pytest.approx(0.375)
    assert budget_auc([{"cutoff": 10, "accuracy": 1.0}]) == 0.5  # a single cutoff: the triangle from (0, 0)
    with pytest.raises(ValueError):
        budget_auc([])


@pytest.mark.parametrize(
    ("acc", "tokens", "base_acc", "base_tokens", "expected"),
    [
        (0.8, 200.0, 0.9, 400.0, 0.5 - 5 * (0.1 / 0.9)),  # half the tokens, lost 1/9 of the accuracy
        (0.95, 300.0, 0.9, 400.0, 0.25 + 3 * (0.05 / 0.9)),  # a quarter fewer tokens and more accurate
        (0.9, 400.0, 0.9, 400.0, 0.0),  # the baseline itself
        (0.9, 800.0, 0.9, 400.0, -1.0),  # twice the tokens
    ],
)
def test_aes_by_hand(acc, tokens, base_acc, base_tokens, expected) -> None:
    assert accuracy_efficiency_score(acc, tokens, base_acc, base_tokens) == pytest.approx(expected)


def test_aes_weights_and_undefined_baseline() -> None:
    assert accuracy_efficiency_score(0.8, 200.0, 0.9, 400.0, alpha=2, gamma=1) == pytest.approx(1.0 - 0.1 / 0.9)
    assert math.isnan(accuracy_efficiency_score(0.5, 10.0, 0.0, 400.0))
    assert math.isnan(accuracy_efficiency_score(0.5, 10.0, 0.5, 0.0))


def test_summary_against_a_baseline_carries_aes() -> None:
    base = {"accuracy": 0.5, "tokens": {"mean": 462.5}}  # RECORDS: accuracy 0.375, mean 231.25 tokens
    expected = 0.5 - 5 * 0.25  # half the tokens, a quarter of the accuracy lost
    assert compare_to_baseline(summarize(RECORDS), base)["aes"] == pytest.approx(expected)
    assert summarize(RECORDS, baseline=base)["aes"] == pytest.approx(expected)
    table = markdown_table({"base": {**summarize(RECORDS), **base}, "short": summarize(RECORDS)}, baseline="base")
    assert "| AES |" in table and "-0.750 |" in table and "+0.000 |" in table


@pytest.mark.parametrize(
    ("rate", "label"), [(0.0, "unsolved"), (0.25, "hard"), (0.5, "medium"), (0.75, "medium"), (1.0, "easy")]
)
def test_solve_rate_bins(rate: float, label: str) -> None:
    assert solve_rate_bin(rate) == label


def test_tokens_by_solve_rate_by_hand() -> None:
    out = tokens_by_difficulty(RECORDS)
    assert out["by"] == "solve_rate"
    hard, medium = out["bins"]  # b solves 1/4, a 2/4; empty bins are left out
    assert (hard["bin"], hard["problems"], hard["samples"], hard["accuracy"]) == ("hard", 1, 4, 0.25)
    assert hard["mean_tokens"] == (400 + 50 + 150 + 250) / 4 and hard["mean_tokens_correct"] == 50.0
    assert (medium["bin"], medium["accuracy"], medium["accuracy_stderr"]) == ("medium", 0.5, 0.0)
    assert medium["mean_tokens"] == (100 + 200 + 400 + 300) / 4 and medium["mean_tokens_correct"] == 150.0


def test_tokens_by_a_difficulty_column_by_hand() -> None:
    out = tokens_by_difficulty(RECORDS, {"a": 10, "b": 2}, name="terms")
    assert out["by"] == "terms"
    assert [(b["bin"], b["mean_tokens"]) for b in out["bins"]] == [("2", 212.5), ("10", 250.0)]  # numeric order
    with pytest.raises(ValueError, match="no difficulty"):
        tokens_by_difficulty(RECORDS, {"a": 1})
    unsolved = tokens_by_difficulty([{**r, "correct": False} for r in RECORDS])["bins"]
    assert [b["bin"] for b in unsolved] == ["unsolved"] and math.isnan(unsolved[0]["mean_tokens_correct"])
    assert json.loads(json.dumps(nan_to_none(unsolved), allow_nan=False))[0]["mean_tokens_correct"] is None


def test_problem_difficulty_from_each_source() -> None:
    assert problem_difficulty({"raw": {"terms": 3, "prompt": "1+2+3=?"}}, "terms") == 3  # a local file's row
    rg = {"rg_entry": {"metadata": {"num_terms": 4, "difficulty": {"num_terms": (2, 4)}}}}
    assert problem_difficulty(rg, "num_terms") == 4
    assert problem_difficulty(rg, "difficulty") == "{'num_terms': (2, 4)}"  # not a scalar: its text
    assert problem_difficulty({"category": "algebra"}, "category") == "algebra"
    assert problem_difficulty({"raw": {}}, "level") is None


def test_budget_adherence_by_hand() -> None:
    out = budget_adherence(RECORDS, 250)
    assert out["budget"] == 250
    assert out["within_budget_rate"] == 5 / 8  # 100, 200, 50, 150, 250
    # |t - 250|: 150, 50, 150, 50, 150, 200, 100, 0 -> 850 / 8 / 250
    assert out["mean_abs_deviation"] == pytest.approx(850 / 8 / 250)
    assert out["mean_overshoot"] == pytest.approx((150 + 50 + 150) / 8)
    with pytest.raises(ValueError):
        budget_adherence(RECORDS, 0)


def test_report_tables() -> None:
    s = {
        "overthinking": {
            "tokens_after_first_correct": 34 / 3,
            "tokens_after_first_correct_median": 5.0,
            "tokens_after_first_correct_p90": None,
            "share_after_first_correct": 34 / 75,
            "outcome_efficiency": 0.4,
        },
        "budget_auc": 0.340625,
        "tokens_by_difficulty": tokens_by_difficulty(RECORDS),
    }
    table = efficiency_table({"run/eval": s})
    assert "| run/eval | 11.3 | 5.0 | – | 45.3 | 0.400 | 0.341 |" in table
    assert "| run/eval | solve_rate | hard | 1 | 25.0 | 212.5 | 50.0 |" in difficulty_table({"run/eval": s})
    assert efficiency_table({"x": {}}) == "" and difficulty_table({"x": {}}) == ""
