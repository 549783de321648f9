"""The study table's arithmetic: compression, Δaccuracy and tokens over the minimal trace, by hand."""

from __future__ import annotations

import json

import pytest

from study.table import arm_row, efficiency_stats, markdown, plot, read_tokens, split_stats


def _summary(acc: float, stderr: float, trunc: float) -> dict:
    return {"accuracy": acc, "accuracy_stderr": stderr, "truncation_rate": trunc}


def test_split_stats_and_arm_row_by_hand():
    warm = split_stats(_summary(0.9, 0.02, 0.1), [100, 80, 120, 100], minimal_tokens=40.0)
    assert warm["mean_tokens"] == 100.0 and warm["tokens_over_minimal"] == 60.0
    assert warm["p90_tokens"] == pytest.approx(114.0)  # numpy's linear interpolation of 80, 100, 100, 120
    assert warm["p10_tokens"] == pytest.approx(86.0)
    arm = arm_row(split_stats(_summary(0.88, 0.02, 0.0), [50, 40, 60, 50], minimal_tokens=40.0), warm)
    assert arm["compression"] == 2.0  # 100 / 50
    assert arm["delta_accuracy"] == pytest.approx(-2.0)  # points
    assert arm["tokens_over_minimal"] == 10.0
    assert arm["aes"] == pytest.approx(0.5 - 5 * (0.02 / 0.9))  # half the tokens, 2.2% of the accuracy lost
    assert arm_row(warm, None)["compression"] is None and arm_row(warm, None)["aes"] is None
    unsolved = split_stats(_summary(0.0, 0.0, 0.0), [100], 40.0)
    assert arm_row(arm, unsolved)["aes"] is None  # relative to an accuracy of 0: undefined, null


def _efficient_summary(acc: float) -> dict:
    """An eval summary of one split carrying the efficiency metrics (eval/overthinking.py, eval/efficiency.py)."""
    bins = [{"bin": "2", "mean_tokens": 40.0}, {"bin": "3", "mean_tokens": 55.5}]
    return {
        **_summary(acc, 0.02, 0.0),
        "overthinking": {"tokens_after_first_correct": 12.5, "outcome_efficiency": 0.61},
        "budget_auc": 0.42,
        "tokens_by_difficulty": {"by": "terms", "bins": bins},
    }


def test_efficiency_stats_from_eval_summaries():
    stats = efficiency_stats(_efficient_summary(0.9))
    assert stats == {
        "tokens_after_first_correct": 12.5,
        "outcome_efficiency": 0.61,
        "budget_auc": 0.42,
        "difficulty_by": "terms",
        "tokens_by_difficulty": {"2": 40.0, "3": 55.5},
    }
    old = efficiency_stats(_summary(0.9, 0.02, 0.0))  # a summary from before these metrics
    assert set(old.values()) == {None}


def _study(tmp_path) -> dict:
    warm = split_stats(_summary(0.9, 0.02, 0.1), [100, 100], 40.0)
    arm = arm_row(split_stats({**_efficient_summary(0.85), "accuracy_stderr": 0.03}, [50, 50], 40.0), warm)
    arms = {
        "warm_start": {"eval": arm_row(warm, None), "hard": arm_row(warm, None), "train_wall_s": None},
        "grpo": {"eval": arm, "hard": arm, "train_wall_s": 61.2},
    }
    return {
        "meta": {
            "preset": "tiny",
            "seed": 0,
            "command": "brevity study --config x.yaml",
            "commit": "abc1234",
            "machine": "CPU",
            "wall_s": 100.0,
            "stage_wall_s": {"data": 1.0, "arms": 99.0},
            "eval": "k = 4 samples per problem",
        },
        "splits": {"eval": "2 problems", "hard": "2 problems"},
        "arms": arms,
    }


def test_markdown_table_rows(tmp_path):
    text = markdown(_study(tmp_path))
    assert "| grpo | 85.0% ± 3.0 | -5.0 | 50.0 | 50 | 2.00x | +10.0 | 0.0% | 61 s |" in text
    assert "| warm_start | 90.0% ± 2.0 | – | 100.0 | 100 | – | +60.0 | 10.0% | – |" in text
    assert "Commit: `abc1234`" in text and "brevity study --config x.yaml" in text
    assert (
        "| arm | tokens after 1st correct | outcome eff. | budget AUC | AES vs warm start | mean tokens by terms |"
        in text
    )
    aes = 0.5 - 5 * (0.05 / 0.9)
    assert f"| grpo | 12.5 | 0.610 | 0.420 | {aes:+.3f} | 2: 40.0, 3: 55.5 |" in text
    assert "| warm_start | – | – | – | – | – |" in text  # its summary predates the metrics; no AES against itself


def test_plot_writes_a_png(tmp_path):
    plot(_study(tmp_path), tmp_path / "study.png")
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"


def test_read_tokens(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps({"num_tokens": n, "correct": True}) + "\n" for n in (3, 5)))
    assert read_tokens(path) == [3, 5]
