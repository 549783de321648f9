"""Budget schedules B(step), including the paper's main curriculum 256 -> 179 -> 125 -> 87."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from rewards.schedules import SCHEDULES, Constant, Exponential, Linear, StepwiseExponential, make_schedule

PAPER = StepwiseExponential(start=256, end=87, total_steps=600, n_drops=3)


@pytest.mark.parametrize(
    ("step", "budget"),
    [
        (0, 256),
        (149, 256),
        (150, 179),
        (299, 179),
        (300, 125),
        (449, 125),
        (450, 87),
        (599, 87),
        (600, 87),
        (10**6, 87),
    ],
)
def test_paper_main_curriculum(step: int, budget: int) -> None:
    assert PAPER(step) == budget


@pytest.mark.parametrize(
    ("schedule", "changes"),
    [
        (StepwiseExponential(256, 87, 600, 1), {0: 256, 300: 87}),  # "slow"
        (
            StepwiseExponential(256, 87, 600, 7),  # "fast", d ~ 0.857
            {0: 256, 75: 219, 150: 188, 225: 161, 300: 138, 375: 118, 450: 102, 525: 87},
        ),
        (StepwiseExponential(100, 50, 10, 2), {0: 100, 3: 71, 7: 50}),  # drops at round(3.33), round(6.67)
        (Linear(256, 87, 600, 3), {0: 256, 150: 200, 300: 143, 450: 87}),
        (Linear(100, 50, 10, 2), {0: 100, 3: 75, 7: 50}),
        (Constant(87), {0: 87}),
        (Exponential(256, 0.5, 100), {0: 256, 100: 128, 200: 64, 300: 32, 400: 16, 500: 8, 600: 4, 700: 2, 800: 1}),
        (Exponential(256, 0.7, 150), {0: 256, 150: 179, 300: 125, 450: 88, 600: 61, 750: 43, 900: 30}),
    ],
)
def test_schedule_values(schedule: Any, changes: dict[int, int]) -> None:
    """`changes` lists every step where the budget changes (and its new value) over steps 0..1000."""
    observed = {t: schedule(t) for t in range(1001) if t == 0 or schedule(t) != schedule(t - 1)}
    assert observed == changes


def test_exponential_floor_of_one() -> None:
    assert Exponential(256, 0.5, 100)(10**5) == 1


@pytest.mark.parametrize("schedule", [PAPER, Linear(256, 87, 600, 3), Constant(87), Exponential(256, 0.5, 100)])
def test_pickle_round_trip(schedule: Any) -> None:
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule
    assert [clone(t) for t in range(0, 700, 50)] == [schedule(t) for t in range(0, 700, 50)]


def test_make_schedule() -> None:
    spec = {"type": "stepwise_exponential", "start": 256, "end": 87, "total_steps": 600, "n_drops": 3}
    assert make_schedule(spec) == PAPER
    assert spec["type"] == "stepwise_exponential"  # not mutated
    assert make_schedule({"type": "constant", "budget": 87}) == Constant(87)
    assert make_schedule({"type": "exponential", "b0": 256, "gamma": 0.5, "every": 100}) == Exponential(256, 0.5, 100)
    assert set(SCHEDULES) == {"stepwise_exponential", "linear", "constant", "exponential"}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"type": "cosine", "start": 256}, "unknown schedule type 'cosine'"),
        ({"type": "constant", "budget": 87, "warmup": 10}, r"unknown key\(s\) \['warmup'\]"),
        ({"type": "linear", "start": 256, "end": 87, "total_steps": 600}, r"missing key\(s\) \['n_drops'\]"),
        ({"budget": 87}, "needs a 'type' key"),
    ],
)
def test_make_schedule_errors(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_schedule(spec)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: StepwiseExponential(0, 87, 600, 3), "budgets must be >= 1"),
        (lambda: StepwiseExponential(256, 87, 600, 0), "n_drops"),
        (lambda: Linear(256, 87, 0, 3), "total_steps"),
        (lambda: Constant(0), "budget"),
        (lambda: Exponential(256, 1.5, 100), "gamma"),
        (lambda: Exponential(256, 0.5, 0), "every"),
        (lambda: PAPER(-1), "step"),
    ],
)
def test_invalid_schedules(build: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()
