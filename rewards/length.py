"""Pure length-shaping formulas on token counts (methods.md §S3).

Every function takes plain numbers (token counts, never characters) and returns a float. The reward
functions in `rewards.length_rewards` and the group rules in `rewards.group` are thin wrappers around these.
"""

from __future__ import annotations

import math

__all__ = ["band", "polyline", "rise_fall", "sigmoid_z", "soft_overlong", "triangular"]


def _check_length(length: float) -> None:
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_turning_point(p: float) -> None:
    if not 0 < p <= 1:
        raise ValueError(f"turning point p must be in (0, 1], got {p}")


def triangular(length: float, budget: float, r_max: float = 1.0) -> float:
    """Curriculum triangular budget reward (2508.08940 §3), peak R_max at L = B.

    R = R_max·L/B for 0 ≤ L ≤ B; R_max·(2 − L/B) for B < L ≤ 2B; 0 for L > 2B.
    Example: B = 100 gives 0.5 at L = 50, 1.0 at L = 100, 0.5 at L = 150 and 0.0 at L = 250.
    """
    _check_length(length)
    _check_positive("budget", budget)
    if length <= budget:
        return r_max * length / budget
    if length <= 2 * budget:
        return r_max * (2 - length / budget)
    return 0.0


def band(length: float, budget: float, r_max: float = 1.0) -> float:
    """Curriculum "flat-then-decay" ablation (2508.08940 §3): full reward up to the budget.

    R = R_max for L ≤ B; R_max·(2 − L/B) for B < L ≤ 2B; 0 for L > 2B.
    Example: B = 100 gives 1.0 at L = 0 and L = 100, 0.5 at L = 150 and 0.0 at L = 200.
    """
    _check_length(length)
    _check_positive("budget", budget)
    if length <= budget:
        return r_max
    if length <= 2 * budget:
        return r_max * (2 - length / budget)
    return 0.0


def rise_fall(length: float, max_length: float, p: float = 0.5) -> float:
    """Surrogate rise-then-fall length reward (2505.19439 Eq. 2-3, code `length_reward_func_v3`).

    x = min(L/L_max, 1); R = 1 − (1 − x/p)² for x ≤ p; R = 1 − 2·((x − p)/(1 − p))² for p < x ≤ 1.
    0 at x = 0, peak 1 at x = p, −1 at x = 1. The formula is only defined up to x = 1 (generation stops at
    L_max), so longer inputs are clipped to x = 1 (−1), unlike the authors' code, which keeps extrapolating.
    Example: L_max = 1000, p = 0.5 gives 0.75 at L = 250, 1.0 at L = 500, 0.5 at L = 750 and −1.0 at L = 1000.
    """
    _check_length(length)
    _check_positive("max_length", max_length)
    _check_turning_point(p)
    x = min(length / max_length, 1.0)
    if x <= p:
        return 1 - (1 - x / p) ** 2
    return 1 - 2 * ((x - p) / (1 - p)) ** 2


def polyline(length: float, max_length: float, p: float = 0.5) -> float:
    """Surrogate polyline length reward (2505.19439 Eq. 4): linear rise to 1 at x = p, linear fall to −1 at x = 1.

    x = min(L/L_max, 1); R = x/p for x ≤ p; R = 1 − 2·(x − p)/(1 − p) beyond. With the paper's p = 0.5 this is
    exactly Eq. 4, 2x and 3 − 4x; other p keep the same end points as `rise_fall` (0, 1 at p, −1).
    Example: L_max = 1000 gives 0.5 at L = 250, 1.0 at L = 500, 0.0 at L = 750 and −1.0 at L = 1000.
    """
    _check_length(length)
    _check_positive("max_length", max_length)
    _check_turning_point(p)
    x = min(length / max_length, 1.0)
    if x <= p:
        return x / p
    return 1 - 2 * (x - p) / (1 - p)


def soft_overlong(length: float, max_length: float, cache: float) -> float:
    """DAPO soft overlong punishment (2503.14476 Eq. 13; TRL `get_soft_overlong_punishment`).

    R = 0 for L ≤ L_max − L_cache; ((L_max − L_cache) − L)/L_cache for L_max − L_cache < L ≤ L_max; −1 beyond.
    Example: L_max = 100, L_cache = 20 gives 0.0 at L = 80, −0.5 at L = 90, −1.0 at L = 100 and L = 120.
    """
    _check_length(length)
    _check_positive("max_length", max_length)
    if not 0 <= cache <= max_length:
        raise ValueError(f"cache must be in [0, max_length={max_length}], got {cache}")
    start = max_length - cache
    if length <= start:
        return 0.0
    if length <= max_length:
        return (start - length) / cache
    return -1.0


def sigmoid_z(length: float, mean: float, std: float, alpha: float = 0.2, eps: float = 1e-6) -> float:
    """Arora & Zanette / GRPO-λ length penalty for a correct completion (2505.18086 §3).

    R = 1 − α·σ((L − μ)/(s + ε)), σ the logistic function; s = 0 (all equal, or < 2 members) means z = 0, R = 1 − α/2.
    With α = 0.2 the value lies in (0.8, 1.0): shorter than the mean scores above 0.9, longer below.
    Example: μ = 100, s = 10, α = 0.2 gives 0.9 at L = 100 and 1 − 0.2·σ(1) ≈ 0.8538 at L = 110.
    """
    _check_length(length)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    z = 0.0 if std == 0 else (length - mean) / (std + eps)
    # Numerically stable logistic: exp of a non-positive argument only.
    sig = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
    return 1 - alpha * sig
