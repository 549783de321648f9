"""Advantage estimators: TRL 1.16 group/none conventions and DLER's group-centre + batch whitening."""

from __future__ import annotations

import math

import pytest
import torch

from rl.advantages import BatchWhitened, group_center_batch_whiten, mean_only, mean_only_advantages

NAN = float("nan")


def test_mean_only_equals_trl_scale_none_on_random_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.rand(6, 5, generator=gen)
    rewards[2, 1] = NAN
    flat = rewards.view(-1)
    # TRL 1.16 grpo_trainer.py l. 2765, 2810 with scale_rewards="none", on the flat (P·G,) layout it uses.
    mean = torch.nanmean(flat.view(-1, 5), dim=1).repeat_interleave(5)
    reference = torch.nan_to_num(flat - mean, nan=0.0).view(6, 5)
    torch.testing.assert_close(mean_only_advantages(rewards), reference)


def test_mean_only_by_hand_and_valid_rows() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.25, 0.0, 0.25]])
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.25, 0.0, -0.25, 0.0]])
    torch.testing.assert_close(mean_only_advantages(rewards), expected)
    torch.testing.assert_close(mean_only(rewards, torch.ones_like(rewards), torch.ones(2, dtype=torch.bool)), expected)
    out = mean_only_advantages(rewards, valid=torch.tensor([True, False]))
    assert out[1].abs().sum() == 0 and out[0, 0] > 0
    # NaN (unscorable) is left out of the mean and gets 0: mean 0.5
    torch.testing.assert_close(mean_only_advantages(torch.tensor([[1.0, NAN, 0.0]])), torch.tensor([[0.5, 0.0, -0.5]]))


def test_dler_token_weighted_by_hand() -> None:
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tokens = torch.tensor([[2, 4], [1, 3]])
    # a = r − mean_g = [[0.5, −0.5], [0, 0]]; weights (tokens) 2, 4, 1, 3, Σn = 10
    # mean = (2·0.5 + 4·(−0.5) + 0 + 0) / 10 = −0.1; deviations 0.6, −0.4, 0.1, 0.1
    # var = (2·0.36 + 4·0.16 + 1·0.01 + 3·0.01) / 10 · 10/9 (Bessel) = 0.14 · 10/9 = 0.155556
    # sqrt(0.155556 + 1e-8) = 0.394405 -> A = [0.6, −0.4, 0.1, 0.1] / 0.394405
    expected = torch.tensor([[1.521278, -1.014185], [0.253546, 0.253546]])
    out = group_center_batch_whiten(rewards, tokens)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    valid = torch.ones(2, dtype=torch.bool)
    torch.testing.assert_close(BatchWhitened()(rewards, tokens, valid), out)
    torch.testing.assert_close(
        BatchWhitened(token_weighted=False)(rewards, tokens, valid), group_center_batch_whiten(rewards)
    )


def test_dler_sequence_weighted_and_group_of_one() -> None:
    # a = [0.5, −0.5, 0, 0]; mean 0; var = 0.5 / 3; 0.5 / sqrt(1/6) = 1.224745
    out = group_center_batch_whiten(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.224745, -1.224745], [0.0, 0.0]]), atol=1e-5, rtol=0)
    # G = 1: group mean is 0, so a = r = [1, 0, 1]; mean 2/3; var (1/9 + 4/9 + 1/9) / 2 = 1/3
    out = group_center_batch_whiten(torch.tensor([[1.0], [0.0], [1.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.57735], [-1.154701], [0.57735]]), atol=1e-5, rtol=0)


def _verl_masked_whiten_reference(a: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """veRL's masked_whiten on `a` tiled over a (N, T) response mask, read back at the first token."""
    flat, counts = a.reshape(-1).double(), tokens.reshape(-1)
    length = int(counts.max())
    mask = (torch.arange(length).unsqueeze(0) < counts.unsqueeze(1)).double()
    values = flat.unsqueeze(1).expand(-1, length) * mask
    mean = (values * mask).sum() / mask.sum()
    var = ((values - mean) ** 2 * mask).sum() / mask.sum() * mask.sum() / (mask.sum() - 1)
    return ((values - mean) * torch.rsqrt(var + 1e-8))[:, 0].view_as(a)


def test_dler_matches_verl_masked_whiten_on_random_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    rewards = (torch.rand(5, 4, generator=gen) > 0.5).double()
    tokens = torch.randint(1, 9, (5, 4), generator=gen)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    expected = _verl_masked_whiten_reference(centred, tokens)
    torch.testing.assert_close(group_center_batch_whiten(rewards, tokens), expected)


def test_dler_valid_excludes_groups_from_statistics() -> None:
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0], [5.0, 9.0]])
    tokens = torch.tensor([[2, 4], [1, 3], [100, 100]])
    out = group_center_batch_whiten(rewards, tokens, valid=torch.tensor([True, True, False]))
    torch.testing.assert_close(out[:2], group_center_batch_whiten(rewards[:2], tokens[:2]))
    assert out[2].abs().sum() == 0
    assert group_center_batch_whiten(rewards, valid=torch.zeros(3, dtype=torch.bool)).abs().sum() == 0


def test_dler_batch_statistics_after_whitening() -> None:
    gen = torch.Generator().manual_seed(2)
    rewards, tokens = torch.rand(8, 4, generator=gen), torch.randint(1, 50, (8, 4), generator=gen)
    out = group_center_batch_whiten(rewards, tokens).double()
    w = tokens.double()
    mean = (w * out).sum() / w.sum()
    var = (w * (out - mean) ** 2).sum() / (w.sum() - 1)
    assert abs(float(mean)) < 1e-6 and math.isclose(float(var), 1.0, rel_tol=1e-5)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="groups"):
        mean_only_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="token_counts"):
        group_center_batch_whiten(torch.zeros(2, 2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="valid"):
        group_center_batch_whiten(torch.zeros(2, 2), valid=torch.ones(3, dtype=torch.bool))
