"""One generation batch, from TRL's input rows to the groups TRL trains on: generate, score, filter, refill.

Groups are scored in the round that generated them and, with a sample filter (dynamic sampling: DLER, S-GRPO's
over-sampling, UloRL), dropped there; refill rounds draw dataset rows in the run's refill order until every process
holds its target of kept groups or the round cap is hit. TRL then receives only the kept groups (`Batch`, served
through its `rollout_func`), so its reward, length and advantage metrics are those of the batch it trains on.

Each process keeps its own first `target` kept groups (as DLER's fork keeps `batch[:train_batch_size]`); every rule
reads one whole group, so it does not matter which process holds which group. When the round cap stops refilling
first, the step trains on the groups there are, never on dropped ones: a process short of kept groups (or holding
none) is topped up with inert groups (loss mask 0, advantage 0, rewards left out of TRL's statistics) so that every
process hands TRL as many rows, a multiple of `steps_per_generation` (TRL gathers across processes and splits the
batch into that many equal micro-batches). Inert rows change nothing for the token-mean losses (`dapo`, `bnpo`) but
dilute `grpo`'s mean over sequences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from rollouts.comm import Comm
from rollouts.groups import Row
from rollouts.types import Sample


@dataclass
class Round:
    """One generation round on this process: a row and a sample per completion, scored where generated."""

    rows: list[Row]
    samples: list[Sample]
    scores: dict[str, Tensor]  # each (n, ...) per completion; a sample filter reads "filter" and "solved"
    keep: Tensor | None = None  # (P,) a variant's own rule on top of the filter (S-GRPO: a correct early exit)
    logs: dict[str, list[Any]] = field(default_factory=dict)  # per completion: what rewards logged (`log_extra`)


@dataclass
class Batch:
    """The groups TRL trains on, this process's rows in TRL's layout (groups of G consecutive rows)."""

    rows: list[Row]
    samples: list[Sample]
    scores: dict[str, Tensor]
    valid: Tensor  # (n,) bool: False on inert rows
    logs: dict[str, list[Any]] = field(default_factory=dict)

    def rollout_output(self) -> dict[str, Any]:
        """TRL 1.16's `rollout_func` contract: ids, behaviour log-probs (None: TRL recomputes what it needs) and the
        loss mask as `env_mask` (0 on inserted tokens and on inert rows)."""
        logprobs = [s.logprobs for s in self.samples]
        valid = self.valid.tolist()
        return {
            "prompt_ids": [s.prompt_ids for s in self.samples],
            "completion_ids": [s.completion_ids for s in self.samples],
            "logprobs": None if any(lp is None for lp in logprobs) else logprobs,
            "env_mask": [s.loss_mask if v else [0] * len(s.loss_mask) for s, v in zip(self.samples, valid)],
        }


class Sampler(Protocol):
    """Dynamic sampling's bookkeeping for one step (rl/sampling.py `DynamicSampler`)."""

    band: Any
    num_seen: int
    num_kept: int
    num_dropped: int
    num_out_of_band: int

    @property
    def done(self) -> bool: ...

    def add(self, batch_rewards: Tensor, *, keep: Tensor | None, solved: Tensor) -> Tensor: ...

    def kept_indices(self) -> list[int]: ...


class SampleFilter(Protocol):
    """A variant's dynamic sampling: a fresh `Sampler` per step and the cap on refill rounds (<= 0: none)."""

    max_rounds: int

    def sampler(self, target_groups: int) -> Sampler: ...


class Collector:
    """Runs the rounds of one generation batch. `generate(rows)` turns TRL's input rows (each repeated G times) into
    a row and a sample per completion; `score(rows, samples)` scores them (a collective: rewards and group transforms
    see every process's rows); `draw_rows(n)` gives n more dataset rows for this process."""

    def __init__(
        self,
        generate: Callable[[list[Row]], tuple[list[Row], list[Sample]]],
        score: Callable[[list[Row], list[Sample]], Round],
        draw_rows: Callable[[int], list[Row]],
        comm: Comm,
        num_generations: int,
        steps_per_generation: int,
        log: Callable[[str, float], None],
    ) -> None:
        self.generate, self.score, self.draw_rows = generate, score, draw_rows
        self.comm, self.G, self.spg, self.log = comm, num_generations, steps_per_generation, log

    def round(self, rows: list[Row]) -> Round:
        """Generate and score one round."""
        return self.score(*self.generate(rows))

    def refill(self, groups: int) -> list[Row]:
        """TRL's layout for `groups` new dataset rows: each repeated G times, a dict per completion."""
        return [dict(row) for row in self.draw_rows(groups) for _ in range(self.G)]

    def collect(self, rows: list[Row], sample_filter: SampleFilter | None) -> Batch:
        first = self.round(rows)
        if sample_filter is None:
            valid = torch.ones(len(first.rows), dtype=torch.bool, device=first.scores["filter"].device)
            return Batch(first.rows, first.samples, first.scores, valid, first.logs)
        G, target = self.G, len(rows) // self.G
        sampler = sample_filter.sampler(target)
        pool, where, rounds, cap = [first], [], 0, sample_filter.max_rounds  # where[i]: (round, group) of group i
        while True:
            cur = pool[-1]
            if not sampler.done:  # a full process still runs the round (collectives) but keeps nothing from it
                where += [(len(pool) - 1, g) for g in range(len(cur.rows) // G)]
                sampler.add(cur.scores["filter"].view(-1, G), keep=cur.keep, solved=cur.scores["solved"].view(-1, G))
            short = self.comm.most(max(target - sampler.num_kept, 0)) > 0
            if not short or 0 < cap <= rounds:
                break
            rounds += 1
            pool.append(self.round(self.refill(target)))
        kept = sampler.kept_indices()
        chosen = [where[i] for i in kept]
        groups = max(self.comm.most(len(chosen)), 1)  # every process hands TRL as many rows, and at least a group
        while groups * G % self.spg:
            groups += 1
        taken = set(kept)
        fillers = [where[i] for i in range(len(where)) if i not in taken] + chosen
        picks = chosen + [fillers[k % len(fillers)] for k in range(groups - len(chosen))]
        self.log("brevity/resample_rounds", float(rounds))
        self.log("brevity/resample_cap_hit", float(short))
        self.log("brevity/groups_trained", float(len(chosen)))
        self.log("brevity/inert_rows", float((groups - len(chosen)) * G))
        self._log_group_counts(sampler)
        return self._assemble(pool, picks, len(chosen))

    def _assemble(self, pool: list[Round], picks: list[tuple[int, int]], num_valid: int) -> Batch:
        G = self.G
        index = [(r, g * G + j) for r, g in picks for j in range(G)]
        rows = [dict(pool[r].rows[i]) for r, i in index]  # copies: TRL writes into each row, fillers may repeat
        samples = [pool[r].samples[i] for r, i in index]
        scores = {
            key: torch.cat([pool[r].scores[key][g * G : (g + 1) * G] for r, g in picks]) for key in pool[0].scores
        }
        logs = {key: [pool[r].logs.get(key, [None] * len(pool[r].rows))[i] for r, i in index]
                for key in {key for part in pool for key in part.logs}}  # fmt: skip
        device = pool[0].scores["filter"].device
        valid = torch.tensor([k < num_valid * G for k in range(len(index))], dtype=torch.bool, device=device)
        return Batch(rows, samples, scores, valid, logs)

    def _log_group_counts(self, sampler: Sampler) -> None:
        """Groups generated, kept (passed every rule; a process trains on its first `target` of them), dropped and
        outside the solve-rate band this step, summed over rounds and processes (a collective)."""
        counts = [sampler.num_seen, sampler.num_kept, sampler.num_dropped, sampler.num_out_of_band]
        totals = self.comm.total([float(c) for c in counts])
        names = ["seen", "kept", "dropped"] + (["out_of_band"] if sampler.band is not None else [])
        for name, total in zip(names, totals):
            self.log(f"brevity/groups_{name}", float(total))
