"""Literal-value tables for the pure length formulas (methods.md §S3)."""

from __future__ import annotations

import pytest

from rewards.length import band, polyline, rise_fall, sigmoid_z, soft_overlong, triangular


@pytest.mark.parametrize(
    ("length", "budget", "r_max", "expected"),
    [
        (0, 100, 1.0, 0.0),
        (50, 100, 1.0, 0.5),
        (100, 100, 1.0, 1.0),  # peak at L = B
        (150, 100, 1.0, 0.5),
        (200, 100, 1.0, 0.0),
        (250, 100, 1.0, 0.0),
        (87, 87, 2.0, 2.0),
        (174, 87, 2.0, 0.0),
        (43.5, 87, 1.0, 0.5),
    ],
)
def test_triangular(length: float, budget: float, r_max: float, expected: float) -> None:
    assert triangular(length, budget, r_max) == pytest.approx(expected)


def test_triangular_peaks_at_budget() -> None:
    scores = [triangular(n, 179) for n in range(0, 400)]
    assert max(scores) == 1.0
    assert scores.index(1.0) == 179


@pytest.mark.parametrize(
    ("length", "budget", "r_max", "expected"),
    [
        (0, 100, 1.0, 1.0),
        (100, 100, 1.0, 1.0),
        (150, 100, 1.0, 0.5),
        (175, 100, 1.0, 0.25),
        (200, 100, 1.0, 0.0),
        (300, 100, 1.0, 0.0),
        (50, 100, 0.5, 0.5),
    ],
)
def test_band(length: float, budget: float, r_max: float, expected: float) -> None:
    assert band(length, budget, r_max) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("length", "max_length", "p", "expected"),
    [
        (0, 1000, 0.5, 0.0),
        (250, 1000, 0.5, 0.75),
        (500, 1000, 0.5, 1.0),  # peak at x = p
        (750, 1000, 0.5, 0.5),
        (1000, 1000, 0.5, -1.0),
        (1500, 1000, 0.5, -1.0),  # clipped at x = 1
        (768, 3072, 0.5, 0.75),  # the paper's L_max
        (1536, 3072, 0.5, 1.0),
        (125, 1000, 0.25, 0.75),
        (625, 1000, 0.25, 0.5),
        (900, 1000, 0.8, 0.5),
        (1000, 1000, 1.0, 1.0),  # p = 1 ablation: monotone rise
    ],
)
def test_rise_fall(length: float, max_length: float, p: float, expected: float) -> None:
    assert rise_fall(length, max_length, p) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("length", "max_length", "p", "expected"),
    [
        (0, 1000, 0.5, 0.0),
        (250, 1000, 0.5, 0.5),  # 2x
        (500, 1000, 0.5, 1.0),
        (750, 1000, 0.5, 0.0),  # 3 - 4x
        (1000, 1000, 0.5, -1.0),
        (2000, 1000, 0.5, -1.0),
        (125, 1000, 0.25, 0.5),
        (625, 1000, 0.25, 0.0),
    ],
)
def test_polyline(length: float, max_length: float, p: float, expected: float) -> None:
    assert polyline(length, max_length, p) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("length", "max_length", "cache", "expected"),
    [
        (0, 100, 20, 0.0),
        (80, 100, 20, 0.0),
        (85, 100, 20, -0.25),
        (90, 100, 20, -0.5),  # TRL's docstring example
        (100, 100, 20, -1.0),
        (120, 100, 20, -1.0),
        (100, 100, 0, 0.0),
        (101, 100, 0, -1.0),
    ],
)
def test_soft_overlong(length: float, max_length: float, cache: float, expected: float) -> None:
    assert soft_overlong(length, max_length, cache) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("length", "mean", "std", "alpha", "expected"),
    [
        (100, 100, 10, 0.2, 0.9),
        (110, 100, 10, 0.2, 0.853788284273999),  # 1 - 0.2 * sigmoid(1)
        (90, 100, 10, 0.2, 0.946211715726001),  # 1 - 0.2 * sigmoid(-1)
        (123, 100, 0, 0.2, 0.9),  # std 0 -> z = 0
        (100, 100, 0, 0.5, 0.75),
        (1e6, 0, 1e-3, 0.2, 0.8),  # saturates without overflow
        (0, 1e6, 1e-3, 0.2, 1.0),
    ],
)
def test_sigmoid_z(length: float, mean: float, std: float, alpha: float, expected: float) -> None:
    assert sigmoid_z(length, mean, std, alpha) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: triangular(-1, 100), "length"),
        (lambda: triangular(10, 0), "budget"),
        (lambda: band(10, -5), "budget"),
        (lambda: rise_fall(10, 100, p=0.0), "turning point"),
        (lambda: polyline(10, 100, p=1.5), "turning point"),
        (lambda: rise_fall(10, 0), "max_length"),
        (lambda: soft_overlong(10, 100, 101), "cache"),
        (lambda: sigmoid_z(10, 5, -1), "std"),
    ],
)
def test_invalid_arguments(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
