"""Reward functions (TRL 1.16 signature) and the pure formulas, group rules and budget schedules behind them.

`make_reward("truncation", target_length=4000)` builds a reward by its YAML name; a dotted path
(`my_pkg.my_module:my_reward`) loads a user's own function or class instead.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, cast

from rewards.correctness import Correctness, RewardFunc
from rewards.format import AnswerFormat, AnswerTagFormat, ThinkFormat
from rewards.grading import Grade, grade
from rewards.group_length_rewards import GroupLength, KimiLength, ShortestCorrect, SolveRateLength
from rewards.length_rewards import (
    BudgetBand,
    BudgetTriangular,
    PolylineLength,
    RiseFallLength,
    SoftOverlong,
    Truncation,
)
from rewards.limit_rewards import BudgetConditioned, HardLimit

__all__ = ["REWARDS", "Grade", "RewardFunc", "grade", "make_reward"]

REWARDS: dict[str, Callable[..., RewardFunc]] = {
    "correctness": Correctness,
    "think_format": ThinkFormat,
    "answer_tag_format": AnswerTagFormat,
    "answer_format": AnswerFormat,
    "truncation": Truncation,
    "budget_triangular": BudgetTriangular,
    "budget_band": BudgetBand,
    "rise_fall_length": RiseFallLength,
    "polyline_length": PolylineLength,
    "soft_overlong": SoftOverlong,
    "kimi_length": KimiLength,
    "shortest_correct": ShortestCorrect,
    "group_length": GroupLength,
    "budget_conditioned": BudgetConditioned,
    "hard_limit": HardLimit,
    "solve_rate_length": SolveRateLength,
}


def _check_params(name: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Fail loudly on unknown or missing parameters, naming them, before calling the factory."""
    signature = inspect.signature(factory)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return
    accepted = [n for n, p in signature.parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for reward {name!r}; accepted: {accepted}")
    missing = [
        n
        for n, p in signature.parameters.items()
        if p.default is inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in params
    ]
    if missing:
        raise ValueError(f"reward {name!r} needs parameter(s) {missing}")


def _import_object(path: str) -> Any:
    """`package.module:attr` or `package.module.attr` -> the attribute."""
    module_name, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attr:
        raise ValueError(f"bad dotted path {path!r}; expected 'package.module:function' or 'package.module.function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import module {module_name!r} for reward {path!r}: {e}") from e
    if not hasattr(module, attr):
        raise ValueError(f"module {module_name!r} has no attribute {attr!r} (reward {path!r})")
    return getattr(module, attr)


def make_reward(name_or_dotted_path: str, **params: Any) -> RewardFunc:
    """A reward by name (a key of REWARDS) or by dotted path to a user's function or class.

    A class is instantiated with `params`; a function is returned as is, so it takes no `params`.
    """
    name = name_or_dotted_path
    if name in REWARDS:
        factory = REWARDS[name]
        _check_params(name, factory, params)
        return factory(**params)
    if ":" not in name and "." not in name:
        raise ValueError(
            f"unknown reward {name!r}; known rewards: {sorted(REWARDS)}, "
            "or a dotted path 'package.module:function' to your own"
        )
    obj = _import_object(name)
    if isinstance(obj, type):
        _check_params(name, obj, params)
        return cast(RewardFunc, obj(**params))
    if not callable(obj):
        raise ValueError(f"{name!r} is not callable (got {type(obj).__name__})")
    if params:
        raise ValueError(
            f"{name!r} is a function, so it takes no parameters (got {sorted(params)}); "
            "make it a callable class to parameterise it"
        )
    return cast(RewardFunc, obj)
