"""Token-budget schedules B(step) for the curriculum method ("Train Long, Think Short", 2508.08940 §3; §S8).

Each schedule is a small frozen dataclass, picklable, called with the trainer's global step. `make_schedule` builds
one from a config dict such as `{"type": "stepwise_exponential", "start": 256, "end": 87, "total_steps": 600,
"n_drops": 3}`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "SCHEDULES",
    "Constant",
    "Exponential",
    "Linear",
    "Schedule",
    "StepwiseExponential",
    "as_schedule",
    "make_schedule",
]


class Schedule(Protocol):
    """A token budget as a function of the training step."""

    def __call__(self, step: int) -> int: ...


def _round(x: float) -> int:
    """Round half up (Python's `round` is banker's rounding, which would make 150.5 and 151.5 disagree)."""
    return math.floor(x + 0.5)


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


def _drops_taken(step: int, total_steps: int, n_drops: int) -> int:
    """Number k of drops at or before `step`, with drop k at t_k = round(k·T/(n+1)), k = 1..n."""
    return sum(1 for k in range(1, n_drops + 1) if step >= _round(k * total_steps / (n_drops + 1)))


def _check_drops(start: int, end: int, total_steps: int, n_drops: int) -> None:
    if start < 1 or end < 1:
        raise ValueError(f"start and end budgets must be >= 1, got start={start}, end={end}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if n_drops < 1:
        raise ValueError(f"n_drops must be >= 1, got {n_drops} (use Constant for a fixed budget)")


@dataclass(frozen=True)
class StepwiseExponential:
    """S_k = S_0·(S_f/S_0)^(k/n) from step t_k = k·T/(n+1) on, k = 0..n, both rounded to int (paper §3).

    The paper's main run: StepwiseExponential(256, 87, 600, 3) gives 256 → 179 → 125 → 87 at steps 150/300/450.
    """

    start: int
    end: int
    total_steps: int
    n_drops: int

    def __post_init__(self) -> None:
        _check_drops(self.start, self.end, self.total_steps, self.n_drops)

    def __call__(self, step: int) -> int:
        _check_step(step)
        k = _drops_taken(step, self.total_steps, self.n_drops)
        return _round(self.start * (self.end / self.start) ** (k / self.n_drops))


@dataclass(frozen=True)
class Linear:
    """S_k = S_0 + (S_f − S_0)·k/n from step t_k = k·T/(n+1) on: equal-size drops (paper's linear variant).

    Example: Linear(256, 87, 600, 3) gives 256 → 200 → 143 → 87 at steps 150/300/450.
    """

    start: int
    end: int
    total_steps: int
    n_drops: int

    def __post_init__(self) -> None:
        _check_drops(self.start, self.end, self.total_steps, self.n_drops)

    def __call__(self, step: int) -> int:
        _check_step(step)
        k = _drops_taken(step, self.total_steps, self.n_drops)
        return _round(self.start + (self.end - self.start) * k / self.n_drops)


@dataclass(frozen=True)
class Constant:
    """B(t) = budget at every step (the paper's fixed-budget baseline uses 87)."""

    budget: int

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1, got {self.budget}")

    def __call__(self, step: int) -> int:
        _check_step(step)
        return self.budget


@dataclass(frozen=True)
class Exponential:
    """B(t) = max(1, round(B_0·γ^⌊t/T⌋)) with T = `every` steps between decays (paper's generic form).

    Example: Exponential(256, 0.5, 100) gives 256 at step 99, 128 at step 100 and 64 at step 250.
    """

    b0: int
    gamma: float
    every: int

    def __post_init__(self) -> None:
        if self.b0 < 1:
            raise ValueError(f"b0 must be >= 1, got {self.b0}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")

    def __call__(self, step: int) -> int:
        _check_step(step)
        return max(1, _round(self.b0 * self.gamma ** (step // self.every)))


SCHEDULES: dict[str, type] = {
    "stepwise_exponential": StepwiseExponential,
    "linear": Linear,
    "constant": Constant,
    "exponential": Exponential,
}


def make_schedule(spec: Mapping[str, Any]) -> Schedule:
    """Build a schedule from `{"type": name, **fields}`; an unknown type, unknown field or missing field raises."""
    if "type" not in spec:
        raise ValueError(f"schedule spec needs a 'type' key (one of {sorted(SCHEDULES)}), got keys {sorted(spec)}")
    name = spec["type"]
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule type {name!r}; known types: {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    params = {k: v for k, v in spec.items() if k != "type"}
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for schedule type {name!r}; accepted: {fields}")
    missing = [f for f in fields if f not in params]
    if missing:
        raise ValueError(f"missing key(s) {missing} for schedule type {name!r}")
    schedule: Schedule = cls(**params)
    return schedule


def as_schedule(value: Schedule | Mapping[str, Any] | int) -> Schedule:
    """A schedule from what a reward's `schedule` field accepts: a schedule, a YAML spec dict, or an int (constant)."""
    if isinstance(value, Mapping):
        return make_schedule(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return Constant(value)
    if not callable(value):
        raise ValueError(f"a schedule must be a schedule, a {{'type': ...}} dict or an int, got {value!r}")
    return value
