"""Which dataset rows refills take (dynamic sampling, UloRL warm-up), and the JSON form of a `random.Random`."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


class RefillOrder:
    """One seeded shuffled order of dataset rows, reshuffled when used up, saved in checkpoints.

    Every process holds the same order and takes its own slice of each draw, so processes refill with different rows.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.pos = 0

    def take(self, n: int, size: int, world: int = 1, rank: int = 0) -> list[int]:
        """n row indices in [0, size) for this process (n·world drawn from the shared order)."""
        if size < 1:
            raise ValueError("refilling needs a non-empty train_dataset")
        picked: list[int] = []
        while len(picked) < n * world:
            if self.pos >= len(self.order):
                self.order = list(range(size))
                self.rng.shuffle(self.order)
                self.pos = 0
            picked.append(self.order[self.pos])
            self.pos += 1
        return picked[rank::world]

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_to_json(self.rng), "order": list(self.order), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(rng_from_json(state["rng"]))
        self.order, self.pos = list(state.get("order", [])), int(state.get("pos", 0))


class Refills:
    """`refills(n)`: n more rows of `dataset` for this process (`rank` of `world`), in a `RefillOrder`."""

    def __init__(self, dataset: Sequence[Any], seed: int, world: int, rank: int) -> None:
        self.dataset, self.world, self.rank = dataset, world, rank
        self.order = RefillOrder(seed)  # the same on every process: each takes a disjoint slice of one order

    def __call__(self, n: int) -> list[dict[str, Any]]:
        return [dict(self.dataset[i]) for i in self.order.take(n, len(self.dataset), self.world, self.rank)]


def rng_to_json(rng: random.Random) -> list[Any]:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def rng_from_json(data: list[Any]) -> tuple[Any, ...]:
    return (data[0], tuple(data[1]), data[2])
