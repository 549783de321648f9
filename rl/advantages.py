"""Advantages TRL lacks, on gathered (P, G) reward tensors: P prompt groups of G completions (methods.md §S4).

A variant's plan names one (`Plan.advantage`); without one TRL's own group advantage (`scale_rewards`) stands.
`mean_only` is S-GRPO's r − mean over the group whatever `scale_rewards` says; `BatchWhitened` is DLER's (2510.15110
Eq. 3) group-mean subtraction followed by whitening over the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rollouts.comm import Comm

__all__ = ["BatchWhitened", "group_center_batch_whiten", "mean_only", "mean_only_advantages", "plan_advantages"]


def _check_2d(name: str, t: Tensor) -> None:
    if t.dim() != 2:
        raise ValueError(f"{name} must be (groups, G), got shape {tuple(t.shape)}")


def _check_valid(valid: Tensor | None, num_groups: int) -> Tensor | None:
    if valid is None:
        return None
    if valid.shape != (num_groups,):
        raise ValueError(f"valid must be ({num_groups},), got shape {tuple(valid.shape)}")
    return valid.to(torch.bool)


def mean_only_advantages(rewards: Tensor, *, valid: Tensor | None = None) -> Tensor:
    """Dr.GRPO / S-GRPO advantage r − mean_g, (P, G) -> (P, G) (no std division; 2505.07686 §2.3).

    As TRL 1.16 with `scale_rewards="none"` (trl/trainer/grpo_trainer.py l. 2765, 2810): NaN-aware group mean, and NaN
    (unscorable) rewards end with advantage 0. Rows with `valid[p] == False` (inert groups) get 0.
    Example: [[1, 0, 0, 1]] -> [[0.5, −0.5, −0.5, 0.5]].
    """
    _check_2d("rewards", rewards)
    valid_rows = _check_valid(valid, rewards.shape[0])
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    advantages = torch.nan_to_num(rewards - torch.nanmean(rewards, dim=1, keepdim=True), nan=0.0)
    if valid_rows is not None:
        advantages = advantages * valid_rows.unsqueeze(1)
    return advantages


def group_center_batch_whiten(
    rewards: Tensor, token_counts: Tensor | None = None, *, valid: Tensor | None = None, eps: float = 1e-8
) -> Tensor:
    """DLER batch-wise normalisation (methods.md §3.2, §S4), (P, G) -> (P, G).

    a = r − mean_g(r) (a group of size 1 has mean 0, so a = r), then A = (a − mean_B(a)) / sqrt(var_B(a) + eps) over
    every sample of the batch. With `token_counts` (P, G) the batch statistics are token-weighted, i.e. exactly
    veRL's `masked_whiten(a tiled over response tokens, response_mask)` in DLER's
    `compute_reinforce_plus_plus_baseline_outcome_advantage`: mean = Σ n·a / Σ n and
    var = Σ n·(a − mean)² / Σ n · Σ n/(Σ n − 1) (veRL `masked_var(unbiased=True)`, Bessel over the token count).
    Without it every sample weighs 1 (Bessel over the sample count). If the weight sum is ≤ 1 the Bessel factor is
    dropped (veRL would divide by zero). Groups with `valid[p] == False` (inert groups of a dynamic-sampling batch)
    take no part in the batch statistics and get advantage 0.
    """
    _check_2d("rewards", rewards)
    valid_rows = _check_valid(valid, rewards.shape[0])
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    centred = rewards - rewards.mean(dim=1, keepdim=True) if rewards.shape[1] > 1 else rewards
    if token_counts is None:
        weights = torch.ones_like(centred)
    else:
        if token_counts.shape != rewards.shape:
            raise ValueError(f"token_counts shape {tuple(token_counts.shape)} != rewards {tuple(rewards.shape)}")
        weights = token_counts.to(centred.dtype)
    if valid_rows is not None:
        weights = weights * valid_rows.unsqueeze(1)
    total = weights.sum()
    if total <= 0:
        return torch.zeros_like(centred)
    mean = (weights * centred).sum() / total
    var = (weights * (centred - mean) ** 2).sum() / total
    if total > 1:
        var = var * total / (total - 1)
    advantages = (centred - mean) * torch.rsqrt(var + eps)
    if valid_rows is not None:
        advantages = advantages * valid_rows.unsqueeze(1)
    return advantages


def mean_only(rewards: Tensor, lengths: Tensor, valid: Tensor) -> Tensor:
    """S-GRPO's plan advantage (`Plan.advantage`): r − mean over the serial group; lengths play no part."""
    return mean_only_advantages(rewards, valid=valid)


@dataclass(frozen=True)
class BatchWhitened:
    """DLER's plan advantage (`Plan.advantage`): group-centred then batch-whitened, token-weighted by default."""

    token_weighted: bool = True

    def __call__(self, rewards: Tensor, lengths: Tensor, valid: Tensor) -> Tensor:
        return group_center_batch_whiten(rewards, lengths if self.token_weighted else None, valid=valid)


def plan_advantages(
    advantage: Callable[[Tensor, Tensor, Tensor], Tensor],
    rewards: Tensor,
    lengths: Tensor,
    valid: Tensor,
    num_generations: int,
    comm: Comm,
) -> Tensor:
    """A plan's advantage over every process's rows (only valid groups in its statistics); this process's (n,)."""
    G = num_generations
    all_rewards, start = comm.rows(rewards)
    all_lengths, _ = comm.rows(lengths)
    all_valid, _ = comm.rows(valid)
    out = advantage(all_rewards.view(-1, G), all_lengths.view(-1, G), all_valid.view(-1, G)[:, 0]).reshape(-1)
    return out[start : start + rewards.numel()]
