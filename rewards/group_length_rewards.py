"""Group-relative length rewards from the papers around our methods: Kimi k1.5, ShorterBetter, GRPO-LEAD, ALP.

Each scores a completion against the other completions of its prompt (shortest/longest length, shortest correct
length, mean/std of correct lengths, solve rate), so it needs whole groups. TRL calls reward functions on each
process's local slice, and a group may straddle two processes (methods.md §S9). As the existing group rules do
(`rl.group_transforms`: computed after TRL's cross-process gather, so 2 processes compute what 1 does), these rewards
work on the gathered batch: each process grades its own completions with the shared grader (`Correctness`), the
(prompt, correct, length) records of all processes are gathered in rank order (`torch.distributed.all_gather_object`
when a process group is running; TRL calls every reward function on every rank, in the same order), the pure
per-group rule runs on whole groups, and each process keeps its own slice. The result does not depend on how the
groups are split across processes.

A group is a block of G consecutive completions of one prompt (TRL places a prompt's G completions next to each
other). G is `group_size` when given (set it to `num_generations`), else the gcd of the lengths of the runs of equal
consecutive prompts in the gathered batch, which is G unless every prompt of the batch came twice in a row.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rewards.correctness import Correctness, Grading, check_answer_format, token_lengths

__all__ = [
    "GroupLength",
    "KimiLength",
    "ShortestCorrect",
    "SolveRateLength",
    "alp_rule",
    "gather_records",
    "grpo_lead_rule",
    "kimi_rule",
    "shorter_better_rule",
    "split_groups",
]

Record = tuple[str, bool, int]  # (prompt key, correct, completion tokens)


# ---- pure per-group rules (one group: correct flags and token lengths in, one reward per member out) -------------


def kimi_rule(correct: Sequence[bool], lengths: Sequence[int], *, correct_above_wrong: bool = False) -> list[float]:
    """Kimi k1.5 length reward (2501.12599 §2.3.3) for one group.

    λ_i = 0.5 − (L_i − min L)/(max L − min L) over all members; correct -> λ_i, wrong -> min(0, λ_i); all 0 when
    max L = min L. `correct_above_wrong` adds 1 to correct members (k1.5's accuracy + length reward in one column), so
    every correct reward (≥ 0.5) beats every wrong one (≤ 0), which open-r1 #360 found the plain rule does not.
    Example: lengths [100, 500], correct [F, T] -> [0.0, −0.5]; with correct_above_wrong -> [0.0, 0.5].
    """
    lo, hi = min(lengths), max(lengths)
    bonus = 1.0 if correct_above_wrong else 0.0
    out = []
    for c, n in zip(correct, lengths, strict=True):
        lam = 0.0 if hi == lo else 0.5 - (n - lo) / (hi - lo)
        out.append(lam + bonus if c else min(0.0, lam))
    return out


def shorter_better_rule(
    correct: Sequence[bool], lengths: Sequence[int], *, alpha: float = 2.0, beta: float = 0.001
) -> list[float]:
    """ShorterBetter reward (2504.21370, SOL and r(y_j)) for one group: r = α·1[correct] − β·|L − L_SOL|.

    L_SOL (sample optimal length) is the shortest correct length, or the mean length when no member is correct.
    Example: lengths [100, 200, 300, 400], correct [F, T, T, F] -> L_SOL = 200 -> [−0.1, 2.0, 1.9, −0.2].
    """
    right = [n for c, n in zip(correct, lengths, strict=True) if c]
    sol = min(right) if right else sum(lengths) / len(lengths)
    return [alpha * float(c) - beta * abs(n - sol) for c, n in zip(correct, lengths)]


def grpo_lead_rule(
    correct: Sequence[bool],
    lengths: Sequence[int],
    *,
    alpha: float = 0.05,
    wrong_reward: float = -1.0,
    eps: float = 1e-6,
) -> list[float]:
    """GRPO-LEAD length-dependent accuracy reward with explicit penalty (2504.09696) for one group.

    Correct: exp(−α·z), z = (L − μ)/(σ + ε), μ and σ the mean and sample std (n − 1, as the authors' code) of the
    correct members' lengths, σ = 1 with one correct member (so it scores 1); wrong: `wrong_reward` (−1).
    Example: correct lengths [100, 200, 300] (μ = 200, σ = 100), one wrong, α = 0.05 -> [e^0.05, 1, e^−0.05, −1].
    """
    right = [n for c, n in zip(correct, lengths, strict=True) if c]
    mean = sum(right) / len(right) if right else 0.0
    std = math.sqrt(sum((n - mean) ** 2 for n in right) / (len(right) - 1)) if len(right) > 1 else 1.0
    return [math.exp(-alpha * (n - mean) / (std + eps)) if c else wrong_reward for c, n in zip(correct, lengths)]


def alp_rule(correct: Sequence[bool], lengths: Sequence[int], *, beta: float, normalizer: float) -> list[float]:
    """ALP adaptive length penalty (2506.05256) for one group of K: r = 1[correct] − β·(L/N)·max(p_solved, 1/K).

    p_solved is the group's solve rate, so easy prompts pay more per token; N (`normalizer`) scales lengths.
    Example: K = 4, correct [T, T, T, F], L = [1000, 2000, 3000, 4000], N = 4000, β = 0.5 (p = 0.75) ->
    [0.90625, 0.8125, 0.71875, −0.375].
    """
    k = len(correct)
    scale = beta * max(sum(map(bool, correct)) / k, 1 / k) / normalizer
    return [float(c) - scale * n for c, n in zip(correct, lengths, strict=True)]


# ---- groups across processes ---------------------------------------------------------------------------------------


def gather_records(records: list[Record]) -> tuple[list[Record], int]:
    """All processes' records in rank order, and where this process's start; (records, 0) without a process group.

    torch is looked up, never imported: a process that has not imported it runs no process group either.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return list(records), 0
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, records)
    rank = dist.get_rank()
    return [r for part in parts for r in part], sum(len(part) for part in parts[:rank])


def split_groups(keys: Sequence[str], group_size: int | None) -> list[range]:
    """Index ranges of the groups: blocks of `group_size` (each one prompt), or by default runs of equal consecutive
    keys cut into blocks of the gcd of the run lengths (two adjacent groups of one prompt make a run of 2G)."""
    n = len(keys)
    if group_size is None:
        runs, start = [], 0
        for i in range(1, n + 1):
            if i == n or keys[i] != keys[start]:
                runs.append(i - start)
                start = i
        group_size = math.gcd(*runs) if runs else 1
    if n % group_size:
        raise ValueError(f"{n} completions are not whole groups of group_size={group_size}")
    blocks = [range(i, i + group_size) for i in range(0, n, group_size)]
    for block in blocks:
        if len({keys[i] for i in block}) > 1:
            raise ValueError(f"completions {block.start}..{block.stop - 1} mix prompts; is group_size right?")
    return blocks


def _prompt_key(prompt: Any) -> str:
    """A short stable key for a prompt (text or message list): ships cheaply between processes."""
    return hashlib.sha1(repr(prompt).encode()).hexdigest()


@dataclass(frozen=True)
class _GroupReward:
    """Shared part: grade locally (`Correctness`), gather (prompt, correct, length), apply `_rule` per whole group."""

    __name__: ClassVar[str] = "group_reward"

    group_size: int | None = None
    answer_format: str = "boxed"
    answer_column: str = "answer"
    timeout: float = 5.0
    truncated_is_wrong: bool = True

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)
        if self.group_size is not None and self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")

    def _rule(self, correct: list[bool], lengths: list[int]) -> list[float]:
        raise NotImplementedError

    @property
    def grader(self) -> Correctness:
        return Correctness(
            answer_format=self.answer_format,
            answer_column=self.answer_column,
            timeout=self.timeout,
            truncated_is_wrong=self.truncated_is_wrong,
        )

    @property
    def grading(self) -> Grading:
        """For the trainer's single grading pass (rewards/correctness.py)."""
        return self.grader.grading

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        lengths = token_lengths(completion_ids, self.__name__, kwargs)
        correct = [r > 0 for r in self.grader(completions, **kwargs)]
        if prompts is None:
            if self.group_size is None:
                raise ValueError(f"reward {self.__name__!r} groups completions by `prompts`, or give it group_size")
            keys = [""] * len(lengths)
        else:
            keys = [_prompt_key(p) for p in prompts]
        everything, start = gather_records(list(zip(keys, correct, lengths, strict=True)))
        rewards = [0.0] * len(everything)
        for group in split_groups([r[0] for r in everything], self.group_size):
            values = self._rule([everything[i][1] for i in group], [everything[i][2] for i in group])
            for i, v in zip(group, values):
                rewards[i] = v
        return rewards[start : start + len(lengths)]


@dataclass(frozen=True)
class KimiLength(_GroupReward):
    """Kimi k1.5 length reward (2501.12599 §2.3.3), per group: λ = 0.5 − (L − min L)/(max L − min L).

    Correct -> λ, wrong -> min(0, λ) (0 for all when every length is equal). `correct_above_wrong` (the fix for
    open-r1 #360, where a short wrong answer outscores a long correct one) adds 1 to correct completions: use it
    without a separate correctness reward. Groups and grading as in the module docstring.
    Example: lengths [100, 200, 300, 500], correct [T, T, F, F] -> [0.5, 0.25, 0.0, −0.5].
    """

    __name__: ClassVar[str] = "kimi_length"

    correct_above_wrong: bool = False

    def _rule(self, correct: list[bool], lengths: list[int]) -> list[float]:
        return kimi_rule(correct, lengths, correct_above_wrong=self.correct_above_wrong)


@dataclass(frozen=True)
class ShortestCorrect(_GroupReward):
    """ShorterBetter (2504.21370): r = α·1[correct] − β·|L − L_SOL|, L_SOL the group's shortest correct length.

    With no correct member L_SOL is the group's mean length. α = 2, β = 0.001 as the authors' `sb_compute_score`
    (paper: α ∈ {1, 2}). Includes correctness, so use it instead of the `correctness` reward.
    Example: lengths [100, 200, 300, 400], correct [F, T, T, F] -> [−0.1, 2.0, 1.9, −0.2].
    """

    __name__: ClassVar[str] = "shortest_correct"

    alpha: float = 2.0
    beta: float = 0.001

    def _rule(self, correct: list[bool], lengths: list[int]) -> list[float]:
        return shorter_better_rule(correct, lengths, alpha=self.alpha, beta=self.beta)


@dataclass(frozen=True)
class GroupLength(_GroupReward):
    """GRPO-LEAD (2504.09696): correct -> exp(−α·z), z = (L − μ_c)/(σ_c + ε) over the group's correct lengths.

    Wrong -> `wrong_reward` (−1, the paper's explicit penalty). α = 0.05 and the sample std as the authors' verl
    `RewardManager.get_reweight_rewards`; their extra skip (no shaping when the three shortest average ≤ 4000 tokens)
    is not in the paper and not here. Includes correctness, so use it instead of the `correctness` reward.
    Example: correct lengths [100, 200, 300] and one wrong -> [1.0513, 1.0, 0.9512, −1.0].
    """

    __name__: ClassVar[str] = "group_length"

    alpha: float = 0.05
    wrong_reward: float = -1.0

    def _rule(self, correct: list[bool], lengths: list[int]) -> list[float]:
        return grpo_lead_rule(correct, lengths, alpha=self.alpha, wrong_reward=self.wrong_reward)


@dataclass(frozen=True)
class SolveRateLength(_GroupReward):
    """ALP (2506.05256): r = 1[correct] − β·(L/N)·max(p_solved, 1/K), p_solved the group's solve rate over K.

    `normalizer` N (e.g. the generation cap) and `beta` have no defaults here: set them for your run. Includes
    correctness, so use it instead of the `correctness` reward.
    Example: K = 4, correct [T, T, T, F], L = [1000, 2000, 3000, 4000], N = 4000, β = 0.5 ->
    [0.90625, 0.8125, 0.71875, −0.375].
    """

    __name__: ClassVar[str] = "solve_rate_length"

    beta: float = 0.0
    normalizer: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0 or self.normalizer <= 0:
            raise ValueError(
                f"solve_rate_length needs beta > 0 and normalizer > 0, got {self.beta}, {self.normalizer}"
            )

    def _rule(self, correct: list[bool], lengths: list[int]) -> list[float]:
        return alp_rule(correct, lengths, beta=self.beta, normalizer=self.normalizer)
