"""Literal-value tests for eval.metrics (pure CPU)."""

from __future__ import annotations

import math

import pytest

from eval.metrics import avg_at_k, budget_sweep, maj_at_k, noisy_warning, pass_at_k, summarize, token_stats


def _rec(pid: str, i: int, tokens: int, think: int | None, answer: str | None, correct: bool, finish: str = "stop"):
    return {
        "problem_id": pid,
        "sample_index": i,
        "completion": "",
        "num_tokens": tokens,
        "num_think_tokens": think,
        "answer": answer,
        "correct": correct,
        "finish_reason": finish,
    }


# Problem "a": 2/4 correct, problem "b": 1/4 correct; two samples hit the length limit.
RECORDS = [
    _rec("a", 0, 100, 80, "1", True),
    _rec("a", 1, 200, 150, "1", True),
    _rec("a", 2, 400, None, None, False, "length"),
    _rec("a", 3, 300, 250, "2", False),
    _rec("b", 3, 400, None, None, False, "length"),  # out of order on purpose
    _rec("b", 0, 50, None, "x", True),
    _rec("b", 1, 150, None, "y", False),
    _rec("b", 2, 250, None, "y", False),
]


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 2, 3, 1 - 56 / 120),  # 1 - C(8,3)/C(10,3)
        (10, 3, 1, 0.3),
        (5, 0, 3, 0.0),
        (5, 5, 1, 1.0),
        (4, 1, 4, 1.0),  # n - c < k
        (1000, 1, 1, 0.001),
    ],
)
def test_pass_at_k_literals(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_matches_closed_formula() -> None:
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


@pytest.mark.parametrize(("n", "c", "k"), [(3, 1, 4), (3, 4, 1), (3, 1, 0)])
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_avg_at_k_mean_and_stderr() -> None:
    acc, se = avg_at_k({"a": [True, True, False, False], "b": [True] * 4, "c": [False] * 4})
    assert acc == pytest.approx(0.5)
    assert se == pytest.approx(0.5 / math.sqrt(3))  # std([0.5, 1, 0], ddof=1) = 0.5
    assert avg_at_k({"a": [True, False]}) == (0.5, 0.0)


def test_maj_at_k_ties_none_and_strip() -> None:
    answers = {
        "tie": ["7", None, None, "5"],  # 7 and 5 tie; "7" appeared first and is wrong
        "none": [None, None],  # no answers: wrong
        "strip": ["4", " 4", "5"],  # " 4" votes with "4"
        "late": [None, "9", "8", "8"],
    }
    correct = {
        "tie": [False, False, False, True],
        "none": [False, False],
        "strip": [True, True, False],
        "late": [False, False, True, True],
    }
    assert maj_at_k(answers, correct) == 0.5
    assert maj_at_k({"t": ["5", "7"]}, {"t": [True, False]}) == 1.0


def test_token_stats_literal_and_empty() -> None:
    assert token_stats([10, 20, 30, 40, 100]) == {
        "mean": 40.0,
        "median": 30.0,
        "p10": pytest.approx(14.0),  # index 0.4 -> 10 + 0.4 * 10
        "p90": pytest.approx(76.0),  # index 3.6 -> 40 + 0.6 * 60
        "min": 10,
        "max": 100,
        "count": 5,
    }
    empty = token_stats([])
    assert math.isnan(empty["mean"]) and math.isnan(empty["median"]) and math.isnan(empty["p90"])
    assert (empty["min"], empty["max"], empty["count"]) == (None, None, 0)


def test_summarize_literal() -> None:
    s = summarize(RECORDS)
    assert (s["num_problems"], s["samples_per_problem"]) == (2, 4)
    assert s["accuracy"] == pytest.approx(0.375)
    assert s["accuracy_stderr"] == pytest.approx(0.125)  # std([0.5, 0.25], ddof=1) / sqrt(2)
    assert s["pass_at_k"] == pytest.approx({"1": 0.375, "2": (5 / 6 + 0.5) / 2, "4": 1.0})
    assert s["maj_at_k"] == 0.5
    assert s["tokens"] == pytest.approx(
        {"mean": 231.25, "median": 225.0, "p10": 85.0, "p90": 400.0, "min": 50, "max": 400, "count": 8}
    )
    assert s["tokens_correct"]["mean"] == pytest.approx(350 / 3)
    assert (s["tokens_think"]["mean"], s["tokens_think"]["count"]) == (160.0, 3)
    assert s["truncation_rate"] == 0.25
    assert s["accuracy_per_1k_tokens"] == pytest.approx(0.375 / 0.23125)
    assert "compression_ratio" not in s and "accuracy_delta" not in s
    assert summarize(RECORDS, k=3)["pass_at_k"] == pytest.approx({"1": 0.375, "2": 2 / 3, "3": 0.875})


def test_summarize_against_baseline() -> None:
    baseline = {"accuracy": 0.5, "tokens": {"mean": 462.5}}
    s = summarize(RECORDS, baseline=baseline)
    assert s["compression_ratio"] == pytest.approx(0.5)
    assert s["accuracy_delta"] == pytest.approx(-0.125)


def test_summarize_rejects_duplicates_and_large_k() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        summarize([*RECORDS, RECORDS[0]])
    with pytest.raises(ValueError, match="k=5"):
        summarize(RECORDS, k=5)


def test_budget_sweep_literal() -> None:
    sweep = budget_sweep(RECORDS, [100, 250, 1000])
    assert [p["cutoff"] for p in sweep] == [100, 250, 1000]
    assert [p["accuracy"] for p in sweep] == pytest.approx([0.25, 0.375, 0.375])
    assert [p["finished_rate"] for p in sweep] == pytest.approx([0.25, 0.625, 0.75])
    assert [p["mean_tokens_capped"] for p in sweep] == pytest.approx([93.75, 187.5, 231.25])
    assert sweep[0]["accuracy_stderr"] == 0.0


def test_budget_sweep_prefers_cutoff_correct() -> None:
    records = [dict(r) for r in RECORDS]
    records[3]["cutoff_correct"] = {"250": True}  # a wrong 300-token sample whose 250-token prefix grades right
    sweep = budget_sweep(records, [100, 250])
    assert [p["accuracy"] for p in sweep] == pytest.approx([0.25, 0.5])  # 100: key absent -> fallback rule
    with pytest.raises(ValueError):
        budget_sweep(RECORDS, [0])


@pytest.mark.parametrize(
    ("bench", "k", "warns"),
    [("aime24", 8, True), ("AIME25", 4, True), ("aime_2024", 15, True), ("aime24", 16, False), ("math500", 1, False)],
)
def test_noisy_warning(bench: str, k: int, warns: bool) -> None:
    text = noisy_warning(bench, k)
    assert (text is not None) == warns
    if text:
        assert "noisy" in text and "30 problems" in text and "standard error" in text
