"""Token masks a plan drops from the loss (methods.md §S6): UloRL's DMMPT mask (2507.19766 Eq. 9–10).

Convention: `completion_mask` is 1/True on tokens that count in the loss (TRL's convention); a mask here is True on
tokens to REMOVE from the loss. The trainer multiplies its complement into TRL's `tool_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Dmmpt", "apply_token_mask", "dmmpt_mask", "masked_fraction"]


@torch.no_grad()
def dmmpt_mask(
    token_logprobs: Tensor,
    token_entropy: Tensor,
    rewards: Tensor,
    completion_mask: Tensor,
    *,
    tau: float = 0.99,
    sigma: float = 0.2,
    positive_threshold: float = 1.0,
) -> Tensor:
    """UloRL dynamic masking of well-mastered positive tokens, (N, T) -> (N, T) bool, True = masked out.

    I_msk(i, t) = 1 iff r_i ≥ positive_threshold (a positive sample), p_{i,t} = exp(logprob) ≥ τ, and the sample's
    mean token entropy H̄_i = Σ_t m·H_t / Σ_t m over its `completion_mask` tokens is below σ (methods.md §5.2).
    Only completion tokens are ever masked. Inputs are used detached.
    """
    if token_logprobs.shape != completion_mask.shape or token_entropy.shape != completion_mask.shape:
        raise ValueError(
            f"token_logprobs {tuple(token_logprobs.shape)}, token_entropy {tuple(token_entropy.shape)} and "
            f"completion_mask {tuple(completion_mask.shape)} must share one (N, T) shape"
        )
    if rewards.shape != completion_mask.shape[:1]:
        raise ValueError(f"rewards must be ({completion_mask.shape[0]},), got {tuple(rewards.shape)}")
    keep = completion_mask.to(torch.bool)
    weight = keep.to(token_entropy.dtype)
    mean_entropy = (token_entropy * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)  # (N,)
    sample_gate = (rewards >= positive_threshold) & (mean_entropy < sigma)  # (N,)
    mastered = token_logprobs.exp() >= tau  # (N, T)
    return mastered & sample_gate.unsqueeze(1) & keep


def masked_fraction(mask: Tensor, completion_mask: Tensor) -> float:
    """Fraction of completion tokens that `mask` removes (0.0 when there are none), for logging."""
    keep = completion_mask.to(torch.bool)
    total = int(keep.sum())
    if total == 0:
        return 0.0
    return int((mask.to(torch.bool) & keep).sum()) / total


@dataclass(frozen=True)
class Dmmpt:
    """UloRL's plan token mask (`Plan.token_mask`): DMMPT with target τ and entropy gate σ, and POIS (the old
    log-probs are the current policy's, so every ratio is taken against it)."""

    tau: float = 0.99
    sigma: float = 0.2
    name = "dmmpt"  # metrics: brevity/dmmpt_masked_fraction
    pois = True

    def __call__(self, logps: Tensor, entropies: Tensor, rewards: Tensor, completion_mask: Tensor) -> Tensor:
        return dmmpt_mask(logps, entropies, rewards, completion_mask, tau=self.tau, sigma=self.sigma)


def apply_token_mask(mask_fn: Any, out: dict[str, Any], logps: Tensor, entropies: Tensor) -> tuple[str, float]:
    """Drop `mask_fn`'s tokens from TRL's batch `out` (its `tool_mask` scales the loss mask), with POIS set the old
    log-probs to the current policy's `logps` (N, T); returns the mask's name and the fraction of tokens it drops."""
    completion_mask = out["completion_mask"]
    mask = mask_fn(logps, entropies, out["brevity_rewards"], completion_mask)
    keep = (~mask).to(completion_mask.dtype)
    out["tool_mask"] = out["tool_mask"] * keep if "tool_mask" in out else keep
    if mask_fn.pois:
        out["old_per_token_logps"] = logps
    return mask_fn.name, masked_fraction(mask, completion_mask)
