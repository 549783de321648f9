"""Reward transforms on the gathered (P, G) batch: S-GRPO 2505.07686, GRPO-λ 2505.18086, DA-DLER 2510.15110.

Each needs whole groups or the whole batch, so it runs after TRL's cross-process gather (methods.md §S9); the
result then does not depend on how groups are split across processes. The per-group rules live in
`rewards.group`; these functions apply them row by row and return (new (P, G) rewards, metrics for logging).
"""

from __future__ import annotations

import math
import random
from typing import Literal

import torch
from torch import Tensor

from rewards import group

__all__ = ["difficulty_aware_truncation", "grpo_lambda_rewards", "serial_decay_rewards"]


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(s != first for s in shapes.values()):
        raise ValueError(f"expected (groups, G) tensors of one shape, got {shapes}")


def serial_decay_rewards(correct: Tensor) -> tuple[Tensor, dict[str, float]]:
    """S-GRPO decaying reward per serial group (2505.07686 Eq. 1), correct (P, G) bool -> rewards (P, G).

    Columns are in positional order: exits 1..m, then the full trace last (G = m + 1). Metrics: `accuracy/exit_j`
    (mean over P of correct[:, j−1]) for j = 1..m, `accuracy/full`, and `decay_reward_mean` over all samples.
    """
    _check_same_shape(correct=correct)
    rows = [group.serial_decay(row) for row in correct.to(torch.bool).tolist()]
    rewards = torch.tensor(rows, dtype=torch.float32, device=correct.device).reshape(correct.shape)
    accuracy = correct.to(torch.float32).mean(dim=0)  # (G,), NaN when P = 0
    num_exits = correct.shape[1] - 1
    metrics = {f"accuracy/exit_{j + 1}": float(accuracy[j]) for j in range(num_exits)}
    metrics["accuracy/full"] = float(accuracy[-1]) if correct.shape[1] else math.nan
    metrics["decay_reward_mean"] = float(rewards.mean()) if rewards.numel() else math.nan
    return rewards, metrics


def grpo_lambda_rewards(
    correct: Tensor,
    lengths: Tensor,
    *,
    lam: float = 0.2,
    alpha: float = 0.2,
    mode: Literal["top_lambda", "threshold"] = "top_lambda",
    tau: float = 0.5,
    generator: random.Random | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO-λ rewards (2505.18086 §3), correct (P, G) bool, lengths (P, G) tokens -> rewards (P, G).

    The set E of efficiency-priority groups is the top ceil(λ·P) by correctness ratio ("top_lambda", the paper) or
    every group with ratio ≥ τ ("threshold", not the paper's rule); E gets 1 − α·σ(z) on correct members, the other
    groups plain 0/1. Ties at the cut are broken by `generator`, which top_lambda mode requires: every process
    transforms the same gathered batch and must draw the same tie-break, so seed it identically everywhere.
    Metrics: `num_selected` (|E|) and `ratio_threshold` (lowest correctness ratio inside E; NaN if E is empty).
    """
    _check_same_shape(correct=correct, lengths=lengths)
    flags = correct.to(torch.bool)
    ratios = flags.to(torch.float32).mean(dim=1).tolist() if flags.shape[1] else [0.0] * flags.shape[0]
    if mode == "top_lambda":
        if generator is None:
            raise ValueError("grpo_lambda_rewards(mode='top_lambda') needs a seeded random.Random `generator`")
        selected = group.select_top_lambda(ratios, lam, rng=generator)
    elif mode == "threshold":
        selected = group.threshold_select(ratios, tau)
    else:
        raise ValueError(f"mode must be 'top_lambda' or 'threshold', got {mode!r}")
    rewards = flags.to(torch.float32)  # a new tensor: accuracy-priority groups keep 0/1
    for p, chosen in enumerate(selected):
        if chosen:
            penalised = group.sigmoid_length_penalty(flags[p].tolist(), lengths[p].tolist(), alpha)
            rewards[p] = torch.tensor(penalised, dtype=torch.float32, device=rewards.device)
    chosen_ratios = [r for r, chosen in zip(ratios, selected) if chosen]
    metrics = {
        "num_selected": float(len(chosen_ratios)),
        "ratio_threshold": min(chosen_ratios) if chosen_ratios else math.nan,
    }
    return rewards, metrics


def difficulty_aware_truncation(
    rewards: Tensor,
    correct: Tensor,
    lengths: Tensor,
    *,
    threshold: float = 0.5,
    easy_cap: int = 2000,
    hard_cap: int = 4000,
) -> tuple[Tensor, dict[str, float]]:
    """DA-DLER tiered truncation (2510.15110 §3.5; methods.md §3.2 [default]), all (P, G) -> rewards (P, G).

    p = correctness ratio of the group (from the rollouts generated with the largest cap). Groups with p > threshold
    are easy and truncate at `easy_cap`, the rest (p == threshold included) at `hard_cap`: a member longer than its
    group's cap gets reward 0; rewards of the others pass through. Metrics: `frac_easy_groups`, and
    `frac_truncated` (fraction of samples longer than their group's cap).
    """
    _check_same_shape(rewards=rewards, correct=correct, lengths=lengths)
    num_groups, size = correct.shape
    ratios = correct.to(torch.float32).mean(dim=1).tolist() if size else [0.0] * num_groups
    caps = group.difficulty_tier_caps(ratios, threshold, easy_cap, hard_cap)
    cap = torch.tensor(caps, dtype=lengths.dtype, device=lengths.device).reshape(num_groups, 1)
    over = lengths > cap  # (P, G)
    new_rewards = torch.where(over, torch.zeros_like(rewards), rewards)
    metrics = {
        "frac_easy_groups": sum(r > threshold for r in ratios) / num_groups if num_groups else math.nan,
        "frac_truncated": float(over.to(torch.float32).mean()) if over.numel() else math.nan,
    }
    return new_rewards, metrics
