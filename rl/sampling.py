"""Dynamic sampling bookkeeping (DAPO-style; DLER 2510.15110 §3.3, UloRL, S-GRPO over-sampling; methods.md §S5).

Groups whose rewards are all equal carry no GRPO signal; they are dropped and generation rounds repeat until enough
groups are collected or the round cap is hit. A solve-rate band (`variant.solve_rate_band: [0.2, 0.8]`, the
difficulty filter asked for in verl #2791) keeps only groups whose fraction of solved members lies in it: too easy and
too hard prompts both go. Every decision reads one whole group's G values, never the batch, so it does not depend on
how groups are spread over processes. The rollout (rollouts/collect.py) drives generation and scoring; this module
decides what to keep.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DynamicSampler", "DynamicSampling", "band_error", "in_band", "zero_variance_groups"]

Band = tuple[float, float]


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


def in_band(solved: Tensor, band: Band) -> Tensor:
    """(P, G) bool -> (P,) bool: lo ≤ solve rate ≤ hi, both ends included.

    Counts are compared, not floats: with G = 5 and band (0.2, 0.8), 1 to 4 solved members are inside.
    Example: G = 4, band (0.25, 0.5): solved counts 0, 1, 2, 3, 4 -> F, T, T, F, F.
    """
    lo, hi = band
    g = solved.shape[1]
    count = solved.to(torch.int64).sum(dim=1)
    eps = 1e-9  # k/G == lo must count as inside despite float rounding of lo·G
    return (count >= math.ceil(lo * g - eps)) & (count <= math.floor(hi * g + eps))


def band_error(band: Sequence[float], group_size: int) -> str | None:
    """Why `band` cannot filter groups of `group_size`, or None if it can: two numbers 0 ≤ lo ≤ hi ≤ 1 that admit at
    least one solve rate k/G with 0 < k < G (a group all solved or all unsolved has no reward variance under a 0/1
    score, so a band that admits only those would drop every group and refill forever)."""
    if len(band) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in band):
        return f"expected two numbers [low, high], got {list(band)!r}"
    lo, hi = float(band[0]), float(band[1])
    if not 0.0 <= lo <= hi <= 1.0:
        return f"expected 0 <= low <= high <= 1, got [{lo}, {hi}]"
    solved = torch.arange(group_size + 1)[:, None] > torch.arange(group_size)[None, :]  # row k: k of G solved
    admitted = in_band(solved, (lo, hi)).nonzero().flatten().tolist()
    if not any(0 < k < group_size for k in admitted):
        rates = ", ".join(f"{k}/{group_size}" for k in range(1, group_size))
        return (
            f"[{lo}, {hi}] admits no solve rate a varying group of num_generations = {group_size} can have "
            f"({rates}): every group would be dropped"
        )
    return None


@dataclass(frozen=True)
class DynamicSampling:
    """A variant's dynamic sampling (its plan's sample filter): drop groups whose `column` score does not vary and
    refill, at most `max_rounds` extra rounds per step (<= 0: unlimited, DLER's fork). `column` None filters on the
    weighted total reward; `keep` is a stricter rule of the variant on (P, G) filter scores -> (P,) bool; `band`
    keeps only groups whose solve rate (members scoring above 0 on `column`, else on `correctness`, else on the
    weighted reward) lies in [low, high]."""

    max_rounds: int = 0
    column: str | None = None
    keep: Callable[[Tensor], Tensor] | None = None
    band: Band | None = None

    def sampler(self, target_groups: int) -> DynamicSampler:
        """A fresh sampler for one step; the round cap is global across processes, so the rollout enforces it."""
        return DynamicSampler(target_groups, band=self.band)


class DynamicSampler:
    """Accumulates the groups worth training on across the generation rounds of one training step.

    Usage: `while not sampler.done: sampler.add(score_a_new_round())`, then train on `sampler.kept_indices()`.
    Indices name groups in the order they were generated over all rounds (round 0 holds 0..P0−1, round 1
    P0..P0+P1−1, ...). The cap on rounds is the rollout's (rollouts/collect.py): it is global across processes, and a
    process that is done still takes part in every round. With a solve-rate `band`, `add` also needs each member's
    solved flag and keeps only groups inside the band.
    """

    def __init__(self, target_groups: int, *, atol: float = 0.0, band: Band | None = None) -> None:
        if target_groups < 1:
            raise ValueError(f"target_groups must be ≥ 1, got {target_groups}")
        self.target_groups = target_groups
        self.atol = atol
        self.band = band
        self.num_seen = 0  # groups generated so far, over all rounds
        self.num_out_of_band = 0  # groups whose solve rate lay outside the band (dropped whatever else held)
        self._kept: list[int] = []
        self._dropped: list[int] = []

    @property
    def done(self) -> bool:
        """True once `target_groups` groups are kept."""
        return len(self._kept) >= self.target_groups

    @property
    def num_kept(self) -> int:
        """Groups kept so far (may exceed `target_groups`; `kept_indices` truncates)."""
        return len(self._kept)

    @property
    def num_dropped(self) -> int:
        """Groups dropped so far, for any reason."""
        return len(self._dropped)

    def add(self, batch_rewards: Tensor, *, keep: Tensor | None = None, solved: Tensor | None = None) -> Tensor:
        """Record one round's (P, G) rewards; keep the groups with nonzero variance (and, when given, `keep[p]`
        True: a variant's stricter rule, e.g. S-GRPO's correct early exit; with a band, a solve rate of the (P, G)
        `solved` flags inside it). Returns the (P,) keep mask."""
        if self.done:
            raise RuntimeError("DynamicSampler.add() after done: a new step needs a new sampler")
        num_groups = batch_rewards.shape[0]
        varies = ~zero_variance_groups(batch_rewards, self.atol)
        keep = varies if keep is None else varies & keep.to(torch.bool)
        if self.band is not None:
            if solved is None or solved.shape != batch_rewards.shape:
                raise ValueError("a solve-rate band needs the (P, G) solved flags of the round's groups")
            inside = in_band(solved, self.band)
            self.num_out_of_band += int((~inside).sum())
            keep = keep & inside
        for i, k in enumerate(keep.tolist(), start=self.num_seen):
            (self._kept if k else self._dropped).append(i)
        self.num_seen += num_groups
        return keep

    def kept_indices(self) -> list[int]:
        """The groups to train on, in generation order.

        Exactly `target_groups` when reached (the earliest kept, as DLER's `batch[:train_batch_size]`); when the
        rounds stop first, every kept group (fewer, possibly none). Zero-variance groups are never returned: as
        fillers they would still count in the loss normaliser and the KL term (issue 13); the step trains on fewer.
        """
        if self.num_seen == 0:
            raise RuntimeError("DynamicSampler.kept_indices() before any add()")
        return self._kept[: self.target_groups]
