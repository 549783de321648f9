"""Per-prompt token budgets (`data.budget: [low, high]`, L1 / arXiv 2503.04697): each prompt states its own budget,
drawn with the data seed, and the `budget_conditioned` reward reads the same number per completion; on a real tiny
model through the production trainer. Bad combinations are refused before the model is loaded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rl.config import ConfigError
from rl.experiment import parse_config
from tests.rl.variant_helpers import Probe, build, ours, problems, write_jsonl

G = 4
ALPHA = 0.01


def _data(tmp_path: Path, **extra) -> dict:  # noqa: ANN003
    return {"train": write_jsonl(tmp_path / "train.jsonl", problems(8)), "template": "budget", **extra}


def test_each_prompt_states_its_budget_and_the_reward_reads_it(tiny_model_path: str, tmp_path: Path) -> None:
    rewards = [
        {"name": "budget_conditioned", "params": {"mode": "exact", "alpha": ALPHA}},
        {**ours("Probe"), "weight": 0.0},
    ]
    trainer = build(
        tiny_model_path, tmp_path, {"name": "grpo"}, data=_data(tmp_path, budget=[20, 40]), rewards=rewards
    )
    rows = list(trainer.train_dataset)
    budgets = [r["budget"] for r in rows]
    assert all(20 <= b <= 40 for b in budgets) and len(set(budgets)) > 1
    for row in rows:  # the prompt says the row's own number
        system = next(m["content"] for m in row["prompt"] if m["role"] == "system")
        assert re.search(r"use exactly (\d+) tokens", system).group(1) == str(row["budget"])
    again = build(tiny_model_path, tmp_path / "again", {"name": "grpo"}, data=_data(tmp_path, budget=[20, 40]))
    assert [r["budget"] for r in again.train_dataset] == budgets  # drawn with data.seed

    batch = [dict(row) for row in rows[:2] for _ in range(G)]
    trainer._generate_and_score_completions(batch)
    seen = next(f for f in trainer.reward_funcs if isinstance(f, Probe)).calls[-1]
    assert seen["budget"] == [row["budget"] for row in batch]  # one budget per completion, its prompt's
    got = list(trainer._logs["rewards"]["budget_conditioned"])[-2 * G :]
    for reward, budget, n in zip(got, seen["budget"], seen["num_tokens"]):
        correct = reward + ALPHA * abs(budget - n)  # 1[correct] − α|B − L| (float32 rewards)
        assert correct == pytest.approx(0.0, abs=1e-6) or correct == pytest.approx(1.0, abs=1e-6)


def test_budget_reward_without_budgets_is_refused_before_loading(tiny_model_path: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"budget_conditioned.*'budget' column.*data\.budget: \[low, high\]"):
        build(tiny_model_path, tmp_path, {"name": "grpo"}, rewards=[{"name": "budget_conditioned"}])


@pytest.mark.parametrize(
    ("data", "variant", "message"),
    [
        ({"budget": [40, 20]}, {"name": "grpo"}, "1 <= low <= high"),
        ({"budget": [0, 20]}, {"name": "grpo"}, "1 <= low <= high"),
        ({"budget": [20, 40], "template": "boxed"}, {"name": "grpo"}, "template with a budget slot"),
        (
            {"budget": [20, 40]},
            {
                "name": "curriculum_budget",
                "schedule": {"type": "linear", "start": 8, "end": 4, "total_steps": 2, "n_drops": 1},
            },
            "per-step budget B\\(t\\)",
        ),
    ],
)
def test_bad_budget_settings_name_data_budget(tmp_path: Path, data: dict, variant: dict, message: str) -> None:
    raw = {"data": _data(tmp_path, **data), "variant": variant, "max_completion_length": 64}
    with pytest.raises(ConfigError, match=rf"data\.budget: .*{message}"):
        parse_config(raw, "exp.yaml")
