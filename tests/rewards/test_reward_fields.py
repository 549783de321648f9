"""Every built-in reward that measures length or truncation reads the trainer's `num_tokens` and `finish_reason`
fields when they are passed (rewards/correctness.py), and falls back to `completion_ids` / `max_tokens` otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from rewards import make_reward
from rewards.correctness import finished_flags, token_lengths

RIGHT = "<think>6*2 = 12</think> so \\boxed{12}"
WRONG = "<think>6*2 = 13</think> so \\boxed{13}"

# name -> params; each measures length in tokens (the group rewards also grade, so truncation matters too)
LENGTH_REWARDS: dict[str, dict[str, Any]] = {
    "truncation": {"target_length": 30, "stop_properly_scale": 0.5},
    "budget_triangular": {"schedule": 40},
    "rise_fall_length": {"max_tokens": 80},
    "polyline_length": {"max_tokens": 80},
    "soft_overlong": {"max_tokens": 80, "cache": 40},
    "hard_limit": {"schedule": 30},
    "budget_conditioned": {"mode": "exact", "alpha": 0.01},
    "kimi_length": {"group_size": 4},
    "shortest_correct": {"group_size": 4},
    "group_length": {"group_size": 4},
    "solve_rate_length": {"beta": 0.5, "normalizer": 80, "group_size": 4},
}
TEXTS = [RIGHT, RIGHT, WRONG, RIGHT]
TOKENS = [10, 25, 50, 60]  # what the trainer measured


def _call(name: str, completion_ids: list[list[int]], **fields: Any) -> list[float]:
    batch = {"prompts": ["q"] * 4, "completions": TEXTS, "answer": ["12"] * 4, "budget": [20] * 4, **fields}
    return make_reward(name, **LENGTH_REWARDS[name])(completion_ids=completion_ids, **batch)


@pytest.mark.parametrize("name", LENGTH_REWARDS)
def test_length_rewards_read_num_tokens(name: str) -> None:
    """Completion ids of other lengths change nothing once `num_tokens` is passed; the same lengths as ids agree."""
    reasons = ["stop"] * 4
    by_ids = _call(name, [[7] * n for n in TOKENS], finish_reason=reasons)
    by_field = _call(name, [[7] * 3 for _ in TOKENS], finish_reason=reasons, num_tokens=TOKENS)
    assert by_field == pytest.approx(by_ids)
    assert _call(name, [[7] * 3 for _ in TOKENS], finish_reason=reasons) != pytest.approx(by_ids), "lengths matter"


@pytest.mark.parametrize("name", ["truncation", "hard_limit", "kimi_length", "solve_rate_length"])
def test_graded_rewards_read_finish_reason(name: str) -> None:
    """A correct completion cut by the length cap ("length") is scored as not finished."""
    ids = [[7] * n for n in TOKENS]
    stopped = _call(name, ids, finish_reason=["stop"] * 4, num_tokens=TOKENS)
    cut = _call(name, ids, finish_reason=["length", "stop", "stop", "stop"], num_tokens=TOKENS)
    assert cut[0] < stopped[0]


def test_field_helpers() -> None:
    assert token_lengths([[1, 2], [3]], "r") == [2, 1]
    assert token_lengths([[1, 2], [3]], "r", {"num_tokens": [5, 6]}) == [5, 6]
    assert token_lengths(None, "r", {"num_tokens": [5, 6]}) == [5, 6]
    with pytest.raises(ValueError, match="has 1 values for 2 completions"):
        token_lengths([[1, 2], [3]], "r", {"num_tokens": [5]})
    with pytest.raises(ValueError, match="`completion_ids` or `num_tokens`"):
        token_lengths(None, "r", {})
    assert finished_flags({"finish_reason": ["stop", "length"]}, [4, 4], 4, "r") == [True, False]
    assert finished_flags({}, [3, 4], 4, "r") == [True, False]  # no field: inferred from the cap
