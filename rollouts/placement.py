"""brevity's rollout engines behind TRL's batch layout: whole groups, whatever process TRL gave them to.

TRL hands each process a slice of the generation batch, each prompt repeated G times, and a group may straddle two
processes. Here every process sees the whole batch, generates every world-th group (so a group never depends on how
TRL split it), and the groups are exchanged so that each process returns its own slice: a row and a sample per
completion, the row being the dataset row the group answers (a UloRL group released steps after it was admitted
answers with its own row, not with the one of the prompt in its place).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from rollouts.comm import Comm
from rollouts.groups import Group, GroupSource, Row
from rollouts.types import Sample


class GroupRollout:
    """`rollout(rows)` for brevity's engines. `build()` makes the group source (and its engine) on first use;
    `sync()` runs before every round (weights into an engine that holds its own); `generating()` wraps the engine
    calls (the policy in eval mode, no autograd). `prepare(row)` is the variant's prompt hook at the current step."""

    def __init__(
        self,
        build: Callable[[], GroupSource],
        comm: Comm,
        num_generations: int,
        prepare: Callable[[Row], Row],
        encode: Callable[[Row], list[int]],
        sync: Callable[[], None],
        generating: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        self.build, self.comm, self.G = build, comm, num_generations
        self.prepare, self.encode, self.sync, self.generating = prepare, encode, sync, generating
        self.calls = 0  # rounds so far; seeds each round's sampling
        self._source: GroupSource | None = None

    @property
    def source(self) -> GroupSource:
        if self._source is None:
            self._source = self.build()
        return self._source

    def __call__(self, rows: list[Row]) -> tuple[list[Row], list[Sample]]:
        source = self.source
        self.sync()
        G, world, rank = self.G, self.comm.world, self.comm.rank
        unique = self.comm.objects(rows)[::G]
        mine = list(range(rank, len(unique), world))
        prepared = [self.prepare(unique[i]) for i in mine]
        prompts = [self.encode(row) for row in prepared]
        self.calls += 1
        with self.generating():
            groups = source.generate(prepared, prompts, self.calls)
        placed: dict[int, Group] = dict(zip(mine, groups))
        if world > 1:
            for part in self.comm.objects([placed]):
                placed.update(part)
        flat = [(placed[i].row, s) for i in range(len(unique)) for s in placed[i].samples]
        local = flat[rank * len(rows) : (rank + 1) * len(rows)]
        return [dict(row) for row, _ in local], [s for _, s in local]

    def state_dict(self) -> dict[str, Any]:
        """The source's state (`strategy`, UloRL's released samples as `ready`) and the round counter."""
        source = {"strategy": None, "ready": []} if self._source is None else self._source.state_dict()
        return {**source, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("strategy") is not None:
            self.source.load_state_dict(state)
        self.calls = int(state.get("calls", 0))
