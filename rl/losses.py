"""Token masks that compose into one loss mask (methods.md §S6), incl. UloRL's DMMPT mask (2507.19766 Eq. 9–10).

Convention: `completion_mask` is 1/True on tokens that count in the loss (TRL's convention); every other mask here
is True on tokens to REMOVE from the loss. `combine_masks` turns them into the final keep-mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["combine_masks", "dmmpt_mask", "masked_fraction", "token_entropy_from_logits"]


@torch.no_grad()
def token_entropy_from_logits(logits: Tensor, chunk_size: int = 128) -> Tensor:
    """(N, T, V) logits -> (N, T) entropy in nats, H = −Σ_v p_v log p_v, from `log_softmax` (stable).

    Rows are processed `chunk_size` (flattened N·T rows) at a time to bound memory, like TRL's `entropy_from_logits`.
    Vocabulary entries with logit −inf (p = 0) contribute 0 rather than NaN. Detached: masks carry no gradient.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    flat = logits.reshape(-1, logits.shape[-1])
    chunks = []
    for chunk in torch.split(flat, chunk_size, dim=0):
        logp = F.log_softmax(chunk.float(), dim=-1)
        p = logp.exp()
        chunks.append(-torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(dim=-1))
    if not chunks:
        return logits.new_zeros(logits.shape[:-1], dtype=torch.float32)
    return torch.cat(chunks).reshape(logits.shape[:-1])


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


def combine_masks(completion_mask: Tensor, *masks_to_remove: Tensor | None) -> Tensor:
    """completion_mask with every True position of `masks_to_remove` zeroed; keeps completion_mask's dtype.

    None entries are skipped, so optional masks (e.g. DMMPT off) can be passed as they are.
    """
    remove = torch.zeros_like(completion_mask, dtype=torch.bool)
    for mask in masks_to_remove:
        if mask is None:
            continue
        if mask.shape != completion_mask.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} != completion_mask {tuple(completion_mask.shape)}")
        remove |= mask.to(torch.bool)
    if completion_mask.dtype == torch.bool:
        return completion_mask & ~remove
    return completion_mask * (~remove).to(completion_mask.dtype)


def masked_fraction(mask: Tensor, completion_mask: Tensor) -> float:
    """Fraction of completion tokens that `mask` removes (0.0 when there are none), for logging."""
    keep = completion_mask.to(torch.bool)
    total = int(keep.sum())
    if total == 0:
        return 0.0
    return int((mask.to(torch.bool) & keep).sum()) / total
