"""Group rules: S-GRPO serial decay, GRPO-λ selection and length penalty, DA-DLER tiers."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from rewards.group import (
    difficulty_tier_caps,
    select_top_lambda,
    serial_decay,
    sigmoid_length_penalty,
    threshold_select,
)

F, T = False, True


@pytest.mark.parametrize(
    ("correct", "expected"),
    [
        # The paper's appendix example: 8 exits + the full trace.
        ([F, T, T, T, T, T, T, T, T], [0.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125]),
        ([T, F, T], [1.0, 0.0, 0.5]),  # a wrong exit does not consume decay
        ([F, F, F], [0.0, 0.0, 0.0]),
        ([F, F, T], [0.0, 0.0, 1.0]),
        ([], []),
    ],
)
def test_serial_decay(correct: list[bool], expected: list[float]) -> None:
    assert serial_decay(correct) == expected


def test_serial_decay_accepts_tensor() -> None:
    assert serial_decay(torch.tensor([False, True, True])) == [0.0, 1.0, 0.5]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("correct", "lengths", "alpha", "expected"),
    [
        ([T, T, F], [100, 200, 50], 0.2, [0.946211715726001, 0.853788284273999, 0.0]),
        ([T, F, F], [100, 10, 10], 0.2, [0.9, 0.0, 0.0]),  # < 2 correct -> z = 0
        ([T, T], [100, 100], 0.2, [0.9, 0.9]),  # std = 0 -> z = 0
        ([F, F], [100, 200], 0.2, [0.0, 0.0]),
        ([T, F], [100, 200], 0.4, [0.8, 0.0]),
        # population std over the correct ones: mean 200, std 100 (the wrong 1000 is ignored; sample std would be 141)
        ([T, F, T], [100, 1000, 300], 0.2, [0.946211715726001, 0.0, 0.853788284273999]),
    ],
)
def test_sigmoid_length_penalty(correct: list[bool], lengths: list[int], alpha: float, expected: list[float]) -> None:
    assert sigmoid_length_penalty(correct, lengths, alpha) == pytest.approx(expected, abs=1e-6)


def test_sigmoid_length_penalty_range() -> None:
    lengths = [37, 120, 512, 999, 1500, 4000, 16000, 250]
    rewards = sigmoid_length_penalty([True] * len(lengths), lengths)
    assert all(0.8 < r < 1.0 for r in rewards)
    assert rewards.index(max(rewards)) == 0  # shortest scores highest
    assert rewards.index(min(rewards)) == 6


def test_sigmoid_length_penalty_size_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        sigmoid_length_penalty([True, False], [1, 2, 3])


@pytest.mark.parametrize(
    ("ratios", "lam", "expected"),
    [
        ([0.1, 0.9, 0.3, 1.0, 0.5, 0.2, 0.0, 0.4, 0.6, 0.7], 0.2, [F, T, F, T, F, F, F, F, F, F]),
        ([0.5, 0.25, 0.75, 0.0, 1.0], 0.2, [F, F, F, F, T]),  # ceil(1.0) = 1
        ([0.5, 0.25, 0.75, 0.0, 1.0, 0.125], 0.2, [F, F, T, F, T, F]),  # ceil(1.2) = 2
        ([0.5, 0.25], 0.0, [F, F]),
        ([0.5, 0.25], 1.0, [T, T]),
        ([], 0.2, []),
    ],
)
def test_select_top_lambda(ratios: list[float], lam: float, expected: list[bool]) -> None:
    assert select_top_lambda(ratios, lam, rng=random.Random(0)) == expected


@pytest.mark.parametrize(("batch", "lam", "n_selected"), [(10, 0.7, 7), (30, 0.1, 3), (128, 0.2, 26), (7, 0.2, 2)])
def test_select_top_lambda_count(batch: int, lam: float, n_selected: int) -> None:
    ratios = [i / batch for i in range(batch)]
    assert sum(select_top_lambda(ratios, lam, rng=random.Random(0))) == n_selected


def test_select_top_lambda_ties_are_seeded_and_uniform() -> None:
    ratios = [1.0, 0.0, 1.0, 1.0, 0.5]  # ceil(0.2 * 5) = 1 of the three tied 1.0 groups
    first = select_top_lambda(ratios, 0.2, rng=random.Random(123))
    assert first == select_top_lambda(ratios, 0.2, rng=random.Random(123))
    rng = random.Random(7)
    picks = Counter(select_top_lambda(ratios, 0.2, rng=rng).index(True) for _ in range(3000))
    assert set(picks) == {0, 2, 3}
    assert all(850 < c < 1150 for c in picks.values())


def test_select_top_lambda_accepts_tensor_and_checks_lambda() -> None:
    assert select_top_lambda(torch.tensor([0.2, 0.9]), 0.5) == [False, True]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam"):
        select_top_lambda([0.5], 1.5)


@pytest.mark.parametrize(
    ("ratios", "tau", "expected"),
    [([0.25, 0.5, 1.0], 0.5, [F, T, T]), ([0.25, 0.5, 1.0], 0.75, [F, F, T]), ([0.0], 0.0, [T])],
)
def test_threshold_select(ratios: list[float], tau: float, expected: list[bool]) -> None:
    assert threshold_select(ratios, tau) == expected


@pytest.mark.parametrize(
    ("ratios", "kwargs", "expected"),
    [
        ([0.25, 0.5, 0.5625, 1.0], {}, [4000, 4000, 2000, 2000]),  # p = 0.5 is hard (longer cap)
        ([0.25, 0.75], {"threshold": 0.8, "easy_cap": 1000, "hard_cap": 3000}, [3000, 3000]),
        ([0.9], {"threshold": 0.8, "easy_cap": 1000, "hard_cap": 3000}, [1000]),
    ],
)
def test_difficulty_tier_caps(ratios: list[float], kwargs: dict[str, float], expected: list[int]) -> None:
    assert difficulty_tier_caps(ratios, **kwargs) == expected  # type: ignore[arg-type]
