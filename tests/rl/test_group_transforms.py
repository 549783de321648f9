"""Batch-level reward transforms: S-GRPO serial decay, GRPO-λ top-λ selection, DA-DLER tiered truncation."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rl.group_transforms import difficulty_aware_truncation, grpo_lambda_rewards, serial_decay_rewards

F, T = False, True


def test_serial_decay_rewards_and_per_exit_metrics() -> None:
    correct = torch.tensor([[F, T, T], [T, F, T]])
    rewards, metrics = serial_decay_rewards(correct)
    # row 0: exit 1 wrong (0), exit 2 first correct (1), full trace second correct (1/2); row 1: 1, 0, 1/2
    torch.testing.assert_close(rewards, torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]]))
    # per-exit accuracy = mean over P of correct[:, j]: exit 1 (0+1)/2, exit 2 (1+0)/2, full (1+1)/2
    assert metrics == {
        "accuracy/exit_1": 0.5,
        "accuracy/exit_2": 0.5,
        "accuracy/full": 1.0,
        "decay_reward_mean": 0.5,  # (0 + 1 + 0.5 + 1 + 0 + 0.5) / 6
    }


def test_serial_decay_paper_example() -> None:
    rewards, metrics = serial_decay_rewards(torch.tensor([[F] + [T] * 8]))
    torch.testing.assert_close(rewards, torch.tensor([[0.0] + [1 / 2**n for n in range(8)]]))
    assert len(metrics) == 8 + 2 and metrics["accuracy/exit_1"] == 0.0


# Group 0: ratio 0.5, correct lengths 100 and 200 -> mean 150, population std 50, z = ∓1:
# 1 − 0.2·σ(−1) = 1 − 0.2·0.268941 = 0.946212 and 1 − 0.2·σ(1) = 0.853788.
CORRECT = torch.tensor(
    [
        [T, T, F, F],  # 0.5
        [T, F, F, F],  # 0.25
        [T, T, T, T],  # 1.0
        [F, F, F, F],  # 0.0
        [T, T, T, F],  # 0.75
        [T, F, F, F],  # 0.25
        [F, F, F, F],  # 0.0
    ]
)
LENGTHS = torch.tensor(
    [
        [100, 200, 50, 70],
        [10, 20, 30, 40],
        [100, 100, 100, 100],  # std 0 -> z = 0 -> 1 − α/2 = 0.9
        [5, 6, 7, 8],
        [300, 100, 200, 9],  # mean 200, std 81.65: z = 1.2247, −1.2247, 0
        [1, 2, 3, 4],
        [1, 2, 3, 4],
    ]
)


def test_grpo_lambda_selects_top_groups_and_penalises_only_them() -> None:
    rewards, metrics = grpo_lambda_rewards(CORRECT, LENGTHS, lam=0.2, generator=random.Random(0))
    # ceil(0.2 · 7) = 2 groups: the ratio-1.0 group (index 2) and the ratio-0.75 group (index 4)
    assert metrics == {"num_selected": 2.0, "ratio_threshold": 0.75}
    torch.testing.assert_close(rewards[2], torch.full((4,), 0.9))
    z = 100 / math.sqrt(20000 / 3)  # (300 − 200) / population std of [300, 100, 200]
    expected_4 = [1 - 0.2 / (1 + math.exp(-z)), 1 - 0.2 / (1 + math.exp(z)), 0.9, 0.0]
    torch.testing.assert_close(rewards[4], torch.tensor(expected_4), atol=1e-5, rtol=0)
    others = [0, 1, 3, 5, 6]
    torch.testing.assert_close(rewards[others], CORRECT[others].float())  # plain 0/1


def test_grpo_lambda_penalty_values_by_hand() -> None:
    rewards, _ = grpo_lambda_rewards(CORRECT[:1], LENGTHS[:1], lam=1.0, generator=random.Random(0))
    torch.testing.assert_close(rewards, torch.tensor([[0.946212, 0.853788, 0.0, 0.0]]), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("lam", "num_groups", "expected"), [(0.2, 7, 2), (0.2, 10, 2), (0.2, 11, 3), (0.5, 4, 2)])
def test_grpo_lambda_selects_ceil_lambda_p(lam: float, num_groups: int, expected: int) -> None:
    gen = torch.Generator().manual_seed(num_groups)
    correct = torch.rand(num_groups, 8, generator=gen) > 0.5
    lengths = torch.randint(1, 100, (num_groups, 8), generator=gen)
    rewards, metrics = grpo_lambda_rewards(correct, lengths, lam=lam, generator=random.Random(1))
    assert metrics["num_selected"] == expected
    penalised = ((rewards != correct.float()).any(dim=1)).sum()
    assert penalised <= expected  # a selected group whose correct members all get 1 − α·σ(z) ≠ 1 differs


def test_grpo_lambda_invariant_to_group_permutation() -> None:
    rewards, _ = grpo_lambda_rewards(CORRECT[[0, 1, 2, 3, 4]], LENGTHS[[0, 1, 2, 3, 4]], generator=random.Random(0))
    for seed in range(5):
        perm = torch.randperm(5, generator=torch.Generator().manual_seed(seed))
        permuted, _ = grpo_lambda_rewards(CORRECT[perm], LENGTHS[perm], generator=random.Random(seed))
        torch.testing.assert_close(permuted, rewards[perm])


def test_grpo_lambda_ties_are_seeded() -> None:
    correct = torch.ones(10, 4, dtype=torch.bool)  # every group at ratio 1.0
    lengths = torch.arange(40).view(10, 4) % 7 + 1
    picks = []
    for _ in range(2):
        rewards, metrics = grpo_lambda_rewards(correct, lengths, lam=0.2, generator=random.Random(42))
        assert metrics == {"num_selected": 2.0, "ratio_threshold": 1.0}
        picks.append((rewards != 1.0).any(dim=1))
    assert torch.equal(picks[0], picks[1]) and int(picks[0].sum()) == 2


def test_grpo_lambda_threshold_mode_and_empty_selection() -> None:
    rewards, metrics = grpo_lambda_rewards(CORRECT, LENGTHS, mode="threshold", tau=0.5)
    assert metrics == {"num_selected": 3.0, "ratio_threshold": 0.5}  # ratios 0.5, 1.0, 0.75 are ≥ τ
    torch.testing.assert_close(rewards[0], torch.tensor([0.946212, 0.853788, 0.0, 0.0]), atol=1e-5, rtol=0)
    rewards, metrics = grpo_lambda_rewards(CORRECT, LENGTHS, lam=0.0, generator=random.Random(0))
    assert metrics["num_selected"] == 0 and math.isnan(metrics["ratio_threshold"])
    torch.testing.assert_close(rewards, CORRECT.float())


def test_grpo_lambda_errors() -> None:
    with pytest.raises(ValueError, match="generator"):
        grpo_lambda_rewards(CORRECT, LENGTHS)
    with pytest.raises(ValueError, match="mode"):
        grpo_lambda_rewards(CORRECT, LENGTHS, mode="rank", generator=random.Random(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        grpo_lambda_rewards(CORRECT, LENGTHS[:, :2], generator=random.Random(0))


def test_difficulty_aware_truncation_tiers_and_boundary() -> None:
    correct = torch.tensor([[T, T, T, F], [T, T, F, F], [T, F, F, F]])  # p = 0.75 (easy), 0.5 (hard), 0.25 (hard)
    rewards = correct.float()
    lengths = torch.tensor(
        [
            [2000, 2001, 1500, 3000],  # easy tier, cap 2000: 2000 kept, 2001 and 3000 zeroed
            [3999, 2500, 100, 4000],  # p == threshold -> hard tier, cap 4000: nothing over it
            [4500, 100, 200, 300],  # hard tier: 4500 > 4000 is zeroed
        ]
    )
    out, metrics = difficulty_aware_truncation(rewards, correct, lengths, threshold=0.5, easy_cap=2000, hard_cap=4000)
    expected = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)
    assert metrics["frac_easy_groups"] == pytest.approx(1 / 3)
    assert metrics["frac_truncated"] == pytest.approx(3 / 12)  # 2001, 3000, 4500
    torch.testing.assert_close(rewards, correct.float())  # input untouched


def test_difficulty_aware_truncation_passes_other_rewards_through() -> None:
    correct = torch.tensor([[T, T, T, T]])
    rewards = torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # e.g. DLER's stop-properly-scaled scores
    out, metrics = difficulty_aware_truncation(rewards, correct, torch.tensor([[10, 2500, 20, 30]]))
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.0, 0.3, 0.4]]))
    assert metrics["frac_easy_groups"] == 1.0
