"""A generation round's scores from TRL's gathered reward columns: the plan's group transform, the weighted reward,
what dynamic sampling filters on and what counts as solved (methods.md §S9).

Group logic runs on the gathered (N, F) batch, so it does not depend on how groups are split across processes; the
result is this process's rows of it. Keys of the scores (each a tensor with a row per completion of this process):
`per_func` (n, F) after the transform, `rewards` the weighted sum, `filter`, `solved`, `correct` (the `correctness`
reward above 0 before any transform rewrites it) and `lengths` (completion tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rl.variants.base import GroupBatch, Plan
from rollouts.collect import Batch
from rollouts.comm import Comm


@dataclass
class Scored:
    scores: dict[str, Tensor]  # this process's rows
    keep: Tensor | None  # (P,) the sample filter's own rule on this process's groups
    rewards: Tensor  # (N,) the weighted reward of the whole round
    metrics: dict[str, float]  # the group transform's


def score_round(
    per_func: Tensor,
    lengths: Tensor,
    names: Sequence[str],
    weights: Tensor,
    plan: Plan,
    *,
    step: int,
    num_generations: int,
    local: slice,
) -> Scored:
    """(N, F) gathered rewards in `names` order, (N,) gathered lengths -> this process's scores.

    Solved (for a solve-rate band) is the filter column (DLER: correctness) above 0, else the `correctness` reward
    above 0, both before any group transform; without either, the weighted reward above 0.
    """
    G, names = num_generations, list(names)
    sample_filter = plan.sample_filter
    column = None if sample_filter is None else sample_filter.column
    correct = per_func[:, names.index("correctness")] > 0 if "correctness" in names else torch.zeros_like(lengths) > 0
    solved_column = next((c for c in (column, "correctness") if c in names), None)
    solved = None if solved_column is None else per_func[:, names.index(solved_column)] > 0
    metrics: dict[str, float] = {}
    if plan.group_transform is not None:
        col = names.index(plan.transform_column)
        target = per_func[:, col].view(-1, G)
        new, metrics = plan.group_transform(GroupBatch(target, target > 0, lengths.view(-1, G), step))
        per_func = per_func.clone()
        per_func[:, col] = new.to(per_func.dtype).reshape(-1)
    weighted = (per_func * weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
    filtered = per_func[:, names.index(column)] if column in names else weighted
    solved = weighted > 0 if solved is None else solved
    keep = None
    if sample_filter is not None and sample_filter.keep is not None:
        keep = sample_filter.keep(filtered[local].view(-1, G))
    scores = {
        "per_func": per_func[local],
        "rewards": weighted[local],
        "filter": filtered[local],
        "solved": solved[local],
        "correct": correct[local],
        "lengths": lengths[local],
    }
    return Scored(scores, keep, weighted, {k: float(v) for k, v in metrics.items()})


def batch_metrics(batch: Batch, comm: Comm, has_correctness: bool) -> dict[str, float]:
    """The trained batch's accuracy (with a `correctness` reward, read before any transform) and length quantiles,
    over the valid rows of every process (a collective)."""
    valid = comm.tensors(batch.valid)
    out = {"accuracy": comm.tensors(batch.scores["correct"])[valid].float().mean().item()} if has_correctness else {}
    lengths = comm.tensors(batch.scores["lengths"])[valid].float()
    if len(lengths):
        q = torch.quantile(lengths, torch.tensor([0.5, 0.9], device=lengths.device))
        out.update(length_p50=q[0].item(), length_p90=q[1].item())
    return out
