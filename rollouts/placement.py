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
from rollouts.groups import Group, GroupSource, RolloutSetup, RolloutSpec, Row
from rollouts.types import Engine, Sample


class GroupRollout:
    """`rollout(rows)` for brevity's engines: `spec` builds the group source on first use, with the engine
    `make_engine()` returns; `sync()` runs before every round (weights into an engine that holds its own);
    `generating()` wraps the engine calls (the policy in eval mode, no autograd)."""

    def __init__(
        self,
        spec: RolloutSpec,
        setup: RolloutSetup,
        make_engine: Callable[[], Engine],
        comm: Comm,
        sync: Callable[[], None],
        generating: Callable[[], AbstractContextManager[Any]],
    ) -> None:
        self.spec, self.setup, self.make_engine, self.comm = spec, setup, make_engine, comm
        self.sync, self.generating = sync, generating
        self.calls = 0  # rounds so far; seeds each round's sampling
        self._source: GroupSource | None = None

    @property
    def source(self) -> GroupSource:
        if self._source is None:
            self._source = self.spec.build(self.make_engine(), self.setup)
        return self._source

    def __call__(self, rows: list[Row]) -> tuple[list[Row], list[Sample]]:
        source = self.source
        self.sync()
        G, world, rank = self.setup.num_generations, self.comm.world, self.comm.rank
        unique = self.comm.objects(rows)[::G]
        mine = list(range(rank, len(unique), world))
        prepared = [self.setup.prepare(unique[i]) for i in mine]
        prompts = [self.setup.encode(row) for row in prepared]
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
