"""Dynamic sampling's decisions: zero-variance filter, the solve-rate band and the multi-round bookkeeping (the rounds
themselves, refills and the round cap are tests/rl/test_fidelity.py's, through the trainer)."""

from __future__ import annotations

import pytest
import torch

from rl.sampling import DynamicSampler, DynamicSampling, band_error, in_band, zero_variance_groups


def test_zero_variance_groups() -> None:
    rewards = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    assert zero_variance_groups(rewards).tolist() == [True, True, False, True]
    assert zero_variance_groups(torch.tensor([[0.5, 0.5001]]), atol=1e-3).tolist() == [True]
    assert zero_variance_groups(torch.tensor([[0.5, 0.5001]])).tolist() == [False]
    assert zero_variance_groups(torch.tensor([[1.0], [0.0]])).tolist() == [False, False]  # size 1 is kept (DLER)


MIXED = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # group 0 kept, group 1 dropped
FLAT = torch.tensor([[0.0, 0.0], [1.0, 1.0]])  # both dropped


def test_sampler_reaches_target_over_rounds() -> None:
    sampler = DynamicSampler(target_groups=3)
    # round 0 -> groups 0..3, keep 1 and 3; round 1 -> groups 4..7, keep 4, 5, 7
    keep = sampler.add(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]))
    assert keep.tolist() == [False, True, False, True] and not sampler.done
    sampler.add(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]))
    assert sampler.done and sampler.num_seen == 8 and sampler.num_kept == 5 and sampler.num_dropped == 3
    assert sampler.kept_indices() == [1, 3, 4]  # exactly target_groups, the earliest kept
    with pytest.raises(RuntimeError, match="done"):
        sampler.add(MIXED)


def test_sampler_stopped_early_returns_fewer() -> None:
    """The rollout's round cap stops the rounds: the step trains on what was kept, never on zero-variance groups."""
    sampler = DynamicSampler(target_groups=5)
    sampler.add(MIXED)
    sampler.add(MIXED)
    assert not sampler.done and sampler.kept_indices() == [0, 2]


def test_sampler_keeps_nothing_when_nothing_varies() -> None:
    sampler = DynamicSampler(target_groups=3)
    for _ in range(10):
        sampler.add(torch.zeros(4, 2))
        sampler.add(torch.ones(4, 2))
    assert not sampler.done and sampler.num_kept == 0
    assert sampler.kept_indices() == []  # no zero-variance fallback (issue 13): the step trains on nothing


def test_sampler_rules_keep_and_errors() -> None:
    sampler = DynamicSampler(target_groups=2)
    keep = sampler.add(MIXED, keep=torch.tensor([False, True]))  # a variant's stricter rule on top of the variance
    assert keep.tolist() == [False, False] and sampler.num_dropped == 2
    with pytest.raises(RuntimeError, match="before any add"):
        DynamicSampler(target_groups=1).kept_indices()
    with pytest.raises(ValueError, match="target_groups"):
        DynamicSampler(target_groups=0)


def test_dynamic_sampling_gives_a_fresh_sampler_per_step() -> None:
    sampling = DynamicSampling(max_rounds=4, column="correctness", band=(0.25, 0.5))
    first, second = sampling.sampler(2), sampling.sampler(2)
    assert first is not second and first.target_groups == 2 and first.band == (0.25, 0.5)


# ---- solve-rate band -------------------------------------------------------------------------------------------------


def _solved(counts: list[int], g: int) -> torch.Tensor:
    """(P, G) solved flags with counts[p] members solved (the first ones)."""
    return torch.tensor([[j < k for j in range(g)] for k in counts])


@pytest.mark.parametrize(
    ("g", "band", "kept_counts"),
    [
        (4, (0.25, 0.5), [1, 2]),
        (4, (0.2, 0.8), [1, 2, 3]),  # 0.2·4 = 0.8 -> at least 1; 0.8·4 = 3.2 -> at most 3
        (5, (0.2, 0.8), [1, 2, 3, 4]),  # both ends included: 1/5 and 4/5 exactly (no float slip)
        (10, (0.3, 0.7), [3, 4, 5, 6, 7]),  # 0.3·10 = 3.0000000000000004 in floats, still inside
        (8, (0.0, 1.0), [0, 1, 2, 3, 4, 5, 6, 7, 8]),  # everything: only the variance filter is left
        (8, (0.5, 0.5), [4]),
    ],
)
def test_in_band_keeps_solve_rates_inside_both_ends(g: int, band: tuple[float, float], kept_counts: list[int]) -> None:
    counts = list(range(g + 1))
    inside = in_band(_solved(counts, g), band)
    assert [k for k, flag in zip(counts, inside.tolist()) if flag] == kept_counts


@pytest.mark.parametrize(
    ("band", "g", "fragment"),
    [
        ([0.2, 0.8], 4, None),
        ([0, 1], 2, None),  # ints are numbers
        ([0.5, 0.5], 4, None),
        ([0.8, 0.2], 4, "0 <= low <= high <= 1"),
        ([-0.1, 0.5], 4, "0 <= low <= high <= 1"),
        ([0.2, 0.5, 0.8], 4, "two numbers"),
        ([True, 1], 4, "two numbers"),
        ([0.3, 0.45], 4, "admits no solve rate"),  # 1/4 = 0.25 and 2/4 = 0.5 both outside
        ([0.0, 0.0], 8, "admits no solve rate"),  # all unsolved only: never varies
        ([1.0, 1.0], 8, "1/8, 2/8"),
    ],
)
def test_band_error(band: list[float], g: int, fragment: str | None) -> None:
    error = band_error(band, g)
    assert (error is None) if fragment is None else (error is not None and fragment in error), error


def test_sampler_keeps_only_varying_groups_inside_the_band() -> None:
    """Rewards and solved flags as DLER's filter gives them (correctness 0/1): G = 4, band [0.25, 0.5]."""
    sampler = DynamicSampler(target_groups=3, band=(0.25, 0.5))
    counts = [0, 1, 2, 3, 4]
    solved = _solved(counts, 4)
    keep = sampler.add(solved.float(), solved=solved)
    assert keep.tolist() == [False, True, True, False, False]
    assert (sampler.num_seen, sampler.num_kept, sampler.num_dropped, sampler.num_out_of_band) == (5, 2, 3, 3)
    # a varying score outside the band is dropped; inside but flat (a weighted score that does not vary) too
    scores = torch.tensor([[0.0, 0.5, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2], [0.0, 1.0, 0.0, 0.0]])
    keep = sampler.add(scores, solved=scores > 0.4)
    assert keep.tolist() == [False, False, True]
    assert sampler.done and sampler.kept_indices() == [1, 2, 7]
    assert (sampler.num_seen, sampler.num_kept, sampler.num_out_of_band) == (8, 3, 5)
    with pytest.raises(ValueError, match="solved flags"):
        DynamicSampler(1, band=(0.2, 0.8)).add(MIXED)


def test_band_decisions_do_not_depend_on_how_groups_are_split() -> None:
    """Each group's decision reads its own G values: any split of the groups into parts decides alike."""
    generator = torch.Generator().manual_seed(0)
    solved = torch.rand(12, 6, generator=generator) > 0.5
    whole = in_band(solved, (0.3, 0.7))
    for cut in range(1, 12):
        parts = [in_band(solved[:cut], (0.3, 0.7)), in_band(solved[cut:], (0.3, 0.7))]
        assert torch.equal(torch.cat(parts), whole)
