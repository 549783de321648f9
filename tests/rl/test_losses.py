"""Token masks: UloRL's DMMPT mask (the plan piece and the pure function) and the masked fraction."""

from __future__ import annotations

import math

import pytest
import torch

from rl.losses import Dmmpt, dmmpt_mask, masked_fraction

F, T = False, True
HI, LO = math.log(0.995), math.log(0.98)  # p = 0.995 ≥ τ = 0.99; p = 0.98 < τ


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    logprobs = torch.tensor(
        [
            [HI, LO, HI, 0.0],  # sample 0: positive, low entropy -> positions 0 and 2 masked (3 is padding)
            [HI, HI, LO, HI],  # sample 1: positive, high entropy -> nothing
            [HI, HI, HI, HI],  # sample 2: reward 0 -> nothing
            [HI, LO, HI, HI],  # sample 3: reward 0.9, low entropy -> only with positive_threshold ≤ 0.9
        ]
    )
    # sample 0: mean over its 3 completion tokens = 0.1 < σ = 0.2 (with the padding token's 5.0 it would be 1.325)
    entropy = torch.tensor(
        [[0.1, 0.1, 0.1, 5.0], [0.3, 0.2, 0.25, 0.25], [0.0, 0.0, 0.0, 0.0], [0.05, 0.05, 0.05, 0.05]]
    )
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.9])
    completion_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    return logprobs, entropy, rewards, completion_mask


def test_dmmpt_masks_exactly_mastered_positive_tokens() -> None:
    mask = dmmpt_mask(*_inputs(), tau=0.99, sigma=0.2)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 0] = expected[0, 2] = True
    assert mask.dtype == torch.bool and torch.equal(mask, expected)


def test_dmmpt_positive_threshold_and_sigma() -> None:
    mask = dmmpt_mask(*_inputs(), positive_threshold=0.8)
    assert mask[3].tolist() == [True, False, True, True] and mask[0].tolist() == [True, False, True, False]
    # σ above sample 1's mean entropy 0.25 turns its gate on: every p ≥ τ position of it is masked
    mask = dmmpt_mask(*_inputs(), sigma=0.3)
    assert mask[1].tolist() == [True, True, False, True]
    assert not dmmpt_mask(*_inputs(), tau=0.999).any()


def test_dmmpt_shape_errors() -> None:
    logprobs, entropy, rewards, completion_mask = _inputs()
    with pytest.raises(ValueError, match="shape"):
        dmmpt_mask(logprobs[:, :2], entropy, rewards, completion_mask)
    with pytest.raises(ValueError, match="rewards"):
        dmmpt_mask(logprobs, entropy, rewards[:2], completion_mask)


def test_masked_fraction_and_the_plan_mask() -> None:
    completion = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    dmmpt = torch.tensor([[T, F, F, T], [F, T, F, F]])
    # dmmpt removes 2 of the 5 completion tokens (its (0, 3) hit lies on padding)
    assert masked_fraction(dmmpt, completion) == pytest.approx(2 / 5)
    assert masked_fraction(dmmpt, torch.zeros_like(completion)) == 0.0
    mask = Dmmpt(tau=0.99, sigma=0.2)(*_inputs())
    assert torch.equal(mask, dmmpt_mask(*_inputs(), tau=0.99, sigma=0.2)) and Dmmpt.pois
