"""Plain helpers of rl/trainer.py: batch surgery on TRL's output dict, row keys for carried groups, JSON state.

Nothing here touches TRL private names; the trainer passes in what it needs.
"""

from __future__ import annotations

import json
import random
from typing import Any

import torch

from rollouts.types import Sample

# Columns of a TRL input row that are never sent back as rollout extra fields: TRL reads `prompt` itself.
_NOT_CARRIED = ("prompt",)


def row_key(row: dict[str, Any]) -> str:
    """A group's dataset row (everything but the prompt) as a JSON string, carried by the segment pool.

    UloRL releases groups admitted steps ago; TRL pairs the samples with *this* step's input rows, so each released
    sample brings its own columns (the reference `answer` first of all) back as rollout extra fields.
    """
    return json.dumps({k: v for k, v in row.items() if k not in _NOT_CARRIED}, sort_keys=True, default=str)


def row_columns(key: Any) -> dict[str, Any]:
    """Inverse of `row_key`; a key that is not such a JSON object carries no columns."""
    if not isinstance(key, str):
        return {}
    try:
        value = json.loads(key)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def select_groups(pool: list[dict[str, Any]], chosen: list[tuple[int, int]], G: int, pad_id: int) -> dict[str, Any]:
    """Assemble a batch from groups (round, group) of several rounds; prompts re-padded left, completions right.

    `num_items_in_batch` counts loss tokens (completion_mask · tool_mask), as TRL does.
    """
    rows = [(r, g * G + j) for r, g in chosen for j in range(G)]
    out: dict[str, Any] = {}
    for key, value in pool[0].items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            out[key] = value
            continue
        parts = [pool[r][key][i] for r, i in rows]
        if value.dim() == 1:
            out[key] = torch.stack(parts)
            continue
        width = max(p.size(0) for p in parts)
        left = key.startswith("prompt")
        fill = pad_id if key in ("prompt_ids", "completion_ids") else (1 if key == "tool_mask" else 0)
        padded = []
        for p in parts:
            pad = p.new_full((width - p.size(0), *p.shape[1:]), fill)
            padded.append(torch.cat([pad, p]) if left else torch.cat([p, pad]))
        out[key] = torch.stack(padded)
    loss_mask = out["completion_mask"] * out["tool_mask"] if "tool_mask" in out else out["completion_mask"]
    out["num_items_in_batch"] = loss_mask.sum()
    return out


class RefillOrder:
    """Which dataset rows refills take: one seeded shuffled order, reshuffled when used up, saved in checkpoints.

    Every rank holds the same order and takes its own slice of each draw, so ranks refill with different rows.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.pos = 0

    def take(self, n: int, size: int, world: int = 1, rank: int = 0) -> list[int]:
        """n row indices in [0, size) for this rank (n·world drawn from the shared order)."""
        if size < 1:
            raise ValueError("refilling needs a non-empty train_dataset")
        picked = []
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


def rng_to_json(rng: random.Random) -> list[Any]:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def rng_from_json(data: list[Any]) -> tuple[Any, ...]:
    return (data[0], tuple(data[1]), data[2])


def sample_to_json(s: Sample) -> dict[str, Any]:
    return {
        "prompt_index": s.prompt_index,
        "prompt_ids": s.prompt_ids,
        "completion_ids": s.completion_ids,
        "finish_reason": s.finish_reason,
        "loss_mask": s.loss_mask,
        "logprobs": s.logprobs,
        "extras": s.extras,
    }
