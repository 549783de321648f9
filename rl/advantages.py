"""Advantage estimators on gathered (P, G) reward tensors: P prompt groups of G completions (methods.md §S4).

`group` and `mean_only` reproduce TRL 1.16's `scale_rewards="group"` / `"none"`; `group_center_batch_whiten` is
DLER's (2510.15110 Eq. 3) group-mean subtraction followed by whitening over the whole batch, which TRL lacks.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import Tensor

__all__ = ["ADVANTAGES", "AdvantageFn", "group_advantages", "group_center_batch_whiten", "mean_only_advantages"]


def _check_2d(name: str, t: Tensor) -> None:
    if t.dim() != 2:
        raise ValueError(f"{name} must be (groups, G), got shape {tuple(t.shape)}")


def _check_valid(valid: Tensor | None, num_groups: int) -> Tensor | None:
    if valid is None:
        return None
    if valid.shape != (num_groups,):
        raise ValueError(f"valid must be ({num_groups},), got shape {tuple(valid.shape)}")
    return valid.to(torch.bool)


def group_advantages(
    rewards: Tensor, *, scale: Literal["group", "none"] = "group", eps: float = 1e-4, valid: Tensor | None = None
) -> Tensor:
    """GRPO advantage per group, (P, G) -> (P, G): (r − mean_g)/(std_g + eps), or r − mean_g with scale="none".

    Matches TRL 1.16 `GRPOTrainer._generate_and_score_completions` (trl/trainer/grpo_trainer.py): NaN-aware group
    mean (l. 2765 `torch.nanmean`), *unbiased* std (l. 2770 `nanstd`, which applies Bessel's count/(count−1),
    trl/trainer/utils.py l. 1041–1043), eps = 1e-4 added to the std, not the variance (l. 2787), and NaN (unscorable)
    rewards end with advantage 0 (l. 2810 `nan_to_num`). G = 1 gives 0, as TRL's l. 2772 branch does. Rows with
    `valid[p] == False` (filtered groups) get 0.
    Example: [[1, 0, 0, 1]] -> mean 0.5, std sqrt(4·0.25/3) = 0.5774 -> [[0.8659, −0.8659, −0.8659, 0.8659]].
    """
    _check_2d("rewards", rewards)
    if scale not in ("group", "none"):
        raise ValueError(f"scale must be 'group' or 'none', got {scale!r}")
    valid_rows = _check_valid(valid, rewards.shape[0])
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    advantages = rewards - torch.nanmean(rewards, dim=1, keepdim=True)
    if scale == "group":
        if rewards.shape[1] > 1:
            count = (~torch.isnan(rewards)).sum(dim=1, keepdim=True)
            # Bessel-corrected like TRL's nanstd; a group with one scored member has std NaN -> advantage 0 below.
            var = torch.nansum(advantages**2, dim=1, keepdim=True) / (count - 1)
            std = torch.where(count > 1, var.sqrt(), torch.full_like(var, float("nan")))
        else:
            std = torch.zeros_like(advantages)
        advantages = advantages / (std + eps)
    advantages = torch.nan_to_num(advantages, nan=0.0)
    if valid_rows is not None:
        advantages = advantages * valid_rows.unsqueeze(1)
    return advantages


def mean_only_advantages(
    rewards: Tensor, token_counts: Tensor | None = None, *, valid: Tensor | None = None
) -> Tensor:
    """Dr.GRPO / S-GRPO advantage r − mean_g (no std division; 2505.07686 §2.3); TRL `scale_rewards="none"`."""
    del token_counts  # the ADVANTAGES signature; group statistics do not weight by length
    return group_advantages(rewards, scale="none", valid=valid)


def _grpo_advantages(rewards: Tensor, token_counts: Tensor | None = None, *, valid: Tensor | None = None) -> Tensor:
    del token_counts
    return group_advantages(rewards, scale="group", valid=valid)


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
    dropped (veRL would divide by zero). Groups with `valid[p] == False` (dropped by dynamic sampling) take no part
    in the batch statistics and get advantage 0.
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


class AdvantageFn(Protocol):
    """(P, G) rewards, optional (P, G) completion token counts, optional (P,) valid rows -> (P, G) advantages."""

    def __call__(self, rewards: Tensor, token_counts: Tensor | None = None, *, valid: Tensor | None = None) -> Tensor:
        """Compute advantages."""
        ...


ADVANTAGES: dict[str, AdvantageFn] = {
    "group": _grpo_advantages,
    "mean_only": mean_only_advantages,
    "group_center_batch_whiten": group_center_batch_whiten,
}
