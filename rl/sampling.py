"""Dynamic sampling bookkeeping (DAPO-style; DLER 2510.15110 §3.3, UloRL, S-GRPO over-sampling; methods.md §S5).

Groups whose rewards are all equal carry no GRPO signal; they are dropped and generation rounds repeat until enough
groups are collected or the round cap is hit. The trainer drives generation; this module only decides what to keep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["DynamicSampler", "zero_variance_groups"]


def zero_variance_groups(rewards: Tensor, atol: float = 0.0) -> Tensor:
    """(P, G) rewards -> (P,) bool, True where all G rewards are equal (max − min ≤ atol).

    A group of size 1 is never zero-variance: DLER's filter keeps it (its std is taken as nonzero).
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (groups, G), got shape {tuple(rewards.shape)}")
    if rewards.shape[1] <= 1:
        return torch.zeros(rewards.shape[0], dtype=torch.bool, device=rewards.device)
    spread = rewards.amax(dim=1) - rewards.amin(dim=1)
    return spread <= atol


class DynamicSampler:
    """Accumulates the groups worth training on across generation rounds of one training step.

    Usage: `while not sampler.done: rewards = generate_and_score(); sampler.add(rewards)`, then train on
    `sampler.kept_indices()`. Indices name groups in the order they were generated over all rounds (round 0 holds
    0..P0−1, round 1 P0..P0+P1−1, ...), unless `add` is given explicit payload indices. `max_rounds` ≤ 0 means no
    cap (DLER's `max_num_gen_batches` ≤ 0); late in training that can loop for long, so prefer a cap.
    """

    def __init__(self, target_groups: int, max_rounds: int, *, atol: float = 0.0) -> None:
        if target_groups < 1:
            raise ValueError(f"target_groups must be ≥ 1, got {target_groups}")
        self.target_groups = target_groups
        self.max_rounds = max_rounds
        self.atol = atol
        self.reset()

    def reset(self) -> None:
        """Forget every round (start of a new training step)."""
        self.rounds_used = 0
        self.num_seen = 0  # groups generated so far, over all rounds
        self._kept: list[int] = []
        self._dropped: list[int] = []
        self._last_round: list[int] = []

    @property
    def done(self) -> bool:
        """True once `target_groups` groups are kept or `max_rounds` rounds were used."""
        capped = self.max_rounds > 0 and self.rounds_used >= self.max_rounds
        return len(self._kept) >= self.target_groups or capped

    @property
    def num_kept(self) -> int:
        """Groups kept so far (may exceed `target_groups`; `kept_indices` truncates)."""
        return len(self._kept)

    def add(
        self,
        batch_rewards: Tensor,
        batch_payload_indices: Sequence[int] | Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        """Record one round's (P, G) rewards; keep the groups with nonzero variance (and, when given, `keep[p]`
        True: a variant's stricter rule, e.g. S-GRPO's correct early exit). Returns the (P,) keep mask."""
        if self.done:
            raise RuntimeError("DynamicSampler.add() after done; call reset() to start a new step")
        num_groups = batch_rewards.shape[0]
        if batch_payload_indices is None:
            indices = list(range(self.num_seen, self.num_seen + num_groups))
        else:
            indices = [int(i) for i in batch_payload_indices]
            if len(indices) != num_groups:
                raise ValueError(f"{len(indices)} payload indices for {num_groups} groups")
        varies = ~zero_variance_groups(batch_rewards, self.atol)
        keep = varies if keep is None else varies & keep.to(torch.bool)
        for i, k in zip(indices, keep.tolist()):
            (self._kept if k else self._dropped).append(i)
        self._last_round = indices
        self.rounds_used += 1
        self.num_seen += num_groups
        return keep

    def kept_indices(self) -> list[int]:
        """The groups to train on, in generation order.

        Exactly `target_groups` when reached (the earliest kept, as DLER's `batch[:train_batch_size]`); when the
        round cap stops first, every kept group (fewer, possibly none). Zero-variance groups are never returned: as
        fillers they would still count in the loss normaliser and the KL term (issue 13); the trainer trains on fewer.
        """
        if self.rounds_used == 0:
            raise RuntimeError("DynamicSampler.kept_indices() before any add()")
        return self._kept[: self.target_groups]

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (for checkpoints)."""
        return {
            "target_groups": self.target_groups,
            "max_rounds": self.max_rounds,
            "atol": self.atol,
            "rounds_used": self.rounds_used,
            "num_seen": self.num_seen,
            "kept": list(self._kept),
            "dropped": list(self._dropped),
            "last_round": list(self._last_round),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.target_groups = int(state["target_groups"])
        self.max_rounds = int(state["max_rounds"])
        self.atol = float(state["atol"])
        self.rounds_used = int(state["rounds_used"])
        self.num_seen = int(state["num_seen"])
        self._kept = [int(i) for i in state["kept"]]
        self._dropped = [int(i) for i in state.get("dropped", [])]
        self._last_round = [int(i) for i in state["last_round"]]
