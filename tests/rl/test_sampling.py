"""Dynamic sampling: zero-variance filter and the multi-round bookkeeping."""

from __future__ import annotations

import json

import pytest
import torch

from rl.sampling import DynamicSampler, zero_variance_groups


def test_zero_variance_groups() -> None:
    rewards = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    assert zero_variance_groups(rewards).tolist() == [True, True, False, True]
    assert zero_variance_groups(torch.tensor([[0.5, 0.5001]]), atol=1e-3).tolist() == [True]
    assert zero_variance_groups(torch.tensor([[0.5, 0.5001]])).tolist() == [False]
    assert zero_variance_groups(torch.tensor([[1.0], [0.0]])).tolist() == [False, False]  # size 1 is kept (DLER)


MIXED = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # group 0 kept, group 1 dropped
FLAT = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # both dropped


def test_sampler_reaches_target_over_rounds() -> None:
    sampler = DynamicSampler(target_groups=3, max_rounds=5)
    # round 0 -> groups 0..3, keep 1 and 3; round 1 -> groups 4..7, keep 4, 5, 7
    keep = sampler.add(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]))
    assert keep.tolist() == [False, True, False, True] and not sampler.done
    sampler.add(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]))
    assert sampler.done and sampler.rounds_used == 2 and sampler.num_kept == 5
    assert sampler.kept_indices() == [1, 3, 4]  # exactly target_groups, the earliest kept
    with pytest.raises(RuntimeError, match="done"):
        sampler.add(MIXED)


def test_sampler_cap_returns_fewer() -> None:
    sampler = DynamicSampler(target_groups=5, max_rounds=2)
    sampler.add(MIXED)
    assert not sampler.done
    sampler.add(MIXED)
    assert sampler.done and sampler.rounds_used == 2
    assert sampler.kept_indices() == [0, 2]  # fewer, never topped up with zero-variance groups


def test_sampler_keeps_nothing_when_nothing_varies() -> None:
    sampler = DynamicSampler(target_groups=3, max_rounds=2)
    sampler.add(torch.zeros(4, 2))
    sampler.add(torch.ones(4, 2))
    assert sampler.done and sampler.num_kept == 0
    assert sampler.kept_indices() == []  # no zero-variance fallback (issue 13): the trainer trains on nothing


def test_sampler_payload_indices_and_unlimited_rounds() -> None:
    sampler = DynamicSampler(target_groups=2, max_rounds=0)  # ≤ 0: no cap
    for _ in range(10):
        sampler.add(FLAT, [100, 101])
    assert not sampler.done and sampler.rounds_used == 10
    sampler.add(MIXED, torch.tensor([7, 8]))
    sampler.add(MIXED, [9, 10])
    assert sampler.done and sampler.kept_indices() == [7, 9]
    with pytest.raises(ValueError, match="payload"):
        DynamicSampler(2, 2).add(MIXED, [1])


def test_sampler_state_dict_round_trip_and_reset() -> None:
    sampler = DynamicSampler(target_groups=3, max_rounds=4)
    sampler.add(MIXED)
    state = json.loads(json.dumps(sampler.state_dict()))  # plain Python: checkpoint-safe
    restored = DynamicSampler(target_groups=1, max_rounds=1)
    restored.load_state_dict(state)
    assert restored.state_dict() == sampler.state_dict()
    restored.add(MIXED)
    assert restored.kept_indices() == [0, 2] and restored.rounds_used == 2 and not restored.done
    restored.reset()
    assert restored.rounds_used == 0 and restored.num_kept == 0
    with pytest.raises(RuntimeError, match="before any add"):
        restored.kept_indices()
    with pytest.raises(ValueError, match="target_groups"):
        DynamicSampler(target_groups=0, max_rounds=1)
