"""Group- and batch-level reward rules (S-GRPO 2505.07686, GRPO-λ 2505.18086, DA-DLER 2510.15110).

These need a whole group (or the whole global batch), so they run after TRL's cross-process gather (methods.md
§S9), not as per-process reward functions. All take plain sequences; a 1-D torch tensor works too, since its
elements convert with `bool()` / `float()`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from rewards.length import sigmoid_z

__all__ = [
    "difficulty_tier_caps",
    "select_top_lambda",
    "serial_decay",
    "sigmoid_length_penalty",
    "threshold_select",
]


def serial_decay(correct: Sequence[bool]) -> list[float]:
    """S-GRPO decaying serial reward (2505.07686 Eq. 1): the n-th correct answer along the trace gets 1/2**(n−1).

    `correct` is in positional order (earliest exit first, the full trace last); wrong answers get 0 and do not
    consume decay. Example: [F, T, T, T, T, T, T, T, T] -> [0, 1, 1/2, 1/4, ..., 1/128].
    """
    rewards = []
    n_right = 0
    for flag in correct:
        if bool(flag):
            n_right += 1
            rewards.append(1.0 / 2 ** (n_right - 1))
        else:
            rewards.append(0.0)
    return rewards


def sigmoid_length_penalty(correct: Sequence[bool], lengths: Sequence[float], alpha: float = 0.2) -> list[float]:
    """GRPO-λ efficiency-priority reward for one group (2505.18086 §3): 1 − α·σ(z) if correct, else 0.

    z = (L − μ_c)/(s_c + 1e-6) with μ_c, s_c the mean and population std of the correct members' lengths; with fewer
    than 2 correct members or s_c = 0, z = 0 (reward 1 − α/2). With α = 0.2 correct rewards lie in (0.8, 1.0).
    Example: correct [T, T, F], lengths [100, 200, 50] -> [1 − 0.2·σ(−1), 1 − 0.2·σ(1), 0] ≈ [0.9462, 0.8538, 0].
    """
    flags = [bool(c) for c in correct]
    lens = [float(n) for n in lengths]
    if len(flags) != len(lens):
        raise ValueError(f"correct and lengths differ in size: {len(flags)} != {len(lens)}")
    correct_lens = [n for n, c in zip(lens, flags) if c]
    mean = std = 0.0
    if len(correct_lens) >= 2:
        mean = sum(correct_lens) / len(correct_lens)
        std = math.sqrt(sum((n - mean) ** 2 for n in correct_lens) / len(correct_lens))
    return [sigmoid_z(n, mean, std, alpha) if c else 0.0 for n, c in zip(lens, flags)]


def select_top_lambda(
    correct_ratios: Sequence[float], lam: float = 0.2, *, rng: random.Random | None = None
) -> list[bool]:
    """GRPO-λ batch-wise selection (2505.18086 §3): mark the top ceil(λ·B) groups by correctness ratio.

    Groups are ranked by ratio, descending; ties are broken uniformly at random with `rng` (pass a seeded
    `random.Random` for reproducibility; None draws a fresh unseeded one). Example: ratios [0.25, 1.0, 0.5, 1.0, 0.0]
    with λ = 0.2 -> ceil(1.0) = 1 group, one of the two 1.0 groups, e.g. [F, T, F, F, F].
    """
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    ratios = [float(p) for p in correct_ratios]
    # The small tolerance keeps float products like 0.7 * 10 = 7.000000000000001 from rounding up to 8.
    n_selected = min(len(ratios), math.ceil(lam * len(ratios) - 1e-9))
    order = list(range(len(ratios)))
    (rng or random.Random()).shuffle(order)
    order.sort(key=lambda i: -ratios[i])  # stable: the shuffled order decides among ties
    selected = [False] * len(ratios)
    for i in order[:n_selected]:
        selected[i] = True
    return selected


def threshold_select(correct_ratios: Sequence[float], tau: float = 0.5) -> list[bool]:
    """GRPO-λ alternative mode, NOT the paper's rule (methods.md §2.2): select every group with ratio p ≥ τ.

    Example: ratios [0.25, 0.5, 1.0] with τ = 0.5 -> [F, T, T].
    """
    return [float(p) >= tau for p in correct_ratios]


def difficulty_tier_caps(
    correct_ratios: Sequence[float], threshold: float = 0.5, easy_cap: int = 2000, hard_cap: int = 4000
) -> list[int]:
    """DA-DLER truncation length per group (2510.15110 §3.5): easy groups (p > threshold) get the shorter cap.

    The boundary p = threshold counts as hard (methods.md §3.2 [default]).
    Example: ratios [0.25, 0.5, 0.75] -> [4000, 4000, 2000].
    """
    return [easy_cap if float(p) > threshold else hard_cap for p in correct_ratios]
