"""Deterministic reward functions and a trainer builder for tests/rl/test_variants.py.

The rewards are real TRL reward functions (loaded by dotted path, as a user's own would be); they make groups vary
on demand instead of depending on what a random tiny model writes:
- `correctness`: 1/0 by the sample's position in its group, from a `pattern` column ("1100": first two correct);
- `checksum`: a reward that varies inside every group (token-id sum mod 97), or 0.0 for rows flagged `flat`;
- `parity`: 1/0 by the parity of the token-id sum, so a random model's groups have every solve rate;
- `Probe`: records the reward kwargs TRL passes (rollout extra fields, dataset columns) and scores 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from rollouts.templates import render

_TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "prompts")


def correctness(completions: Sequence[Any], pattern: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """1.0 where position i % len(p) of the row's pattern p is "1" (default pattern "10": every other sample)."""
    patterns = pattern if pattern is not None else ["10"] * len(completions)
    return [float(p[i % len(p)] == "1") for i, p in enumerate(patterns)]


def checksum(
    completion_ids: Sequence[Sequence[int]], flat: Sequence[bool] | None = None, **kwargs: Any
) -> list[float]:
    """(Σ ids mod 97) / 97: distinct random completions score differently; rows with `flat` True score 0.0."""
    flags = flat if flat is not None else [False] * len(completion_ids)
    return [0.0 if f else (sum(ids) % 97) / 97 for ids, f in zip(completion_ids, flags, strict=True)]


def parity(completion_ids: Sequence[Sequence[int]], **kwargs: Any) -> list[float]:
    """1.0 when the completion's token ids sum to an even number: a coin flip per sampled completion, so groups of
    a random model get every solve rate."""
    return [float(sum(ids) % 2 == 0) for ids in completion_ids]


class Probe:
    """Records every call's kwargs (minus TRL's callbacks) in `calls`; reward 0.0 (give it weight 0)."""

    __name__: ClassVar[str] = "probe"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, completions: Sequence[Any], completion_ids: Sequence[Sequence[int]], **kwargs: Any
    ) -> list[float]:
        seen = {k: v for k, v in kwargs.items() if k not in _TRL_KWARGS}
        self.calls.append({**seen, "completion_ids": [list(ids) for ids in completion_ids]})
        return [0.0] * len(completion_ids)


def ours(name: str, weight: float = 1.0) -> dict[str, Any]:
    """A YAML `rewards:` entry for one of this module's rewards."""
    return {"name": f"{__name__}:{name}", "weight": weight}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def problems(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Rows whose answer can be read off the prompt: "Problem k: ..." has answer str(1000 + k)."""
    return [{"prompt": f"Problem {k}: compute 1000 + {k}.", "answer": str(1000 + k)} for k in range(start, start + n)]


def build(
    model_path: str,
    tmp_path: Path,
    variant: dict[str, Any],
    *,
    rewards: list[dict[str, Any]] | None = None,
    data: dict[str, Any] | None = None,
    **grpo: Any,
) -> Any:
    """A BrevityTrainer through the production path (`parse_config` + `build_trainer`) with tiny settings."""
    from rl.experiment import parse_config
    from rl.train import build_trainer

    raw: dict[str, Any] = {
        "model": model_path,
        "data": data or {"train": write_jsonl(tmp_path / "train.jsonl", problems(16, start=100)), "template": "plain"},
        "rollout": {"engine": "transformers"},
        "variant": variant,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 12,
        "max_steps": 1,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 0,
        "temperature": 1.0,
        "output_dir": str(tmp_path / "out"),
        **grpo,
    }
    if rewards is not None:
        raw["rewards"] = rewards
    trainer = build_trainer(parse_config(raw, f"{tmp_path}/test.yaml"))
    trainer.model.train()  # as the training loop does: generation seams treat an eval-mode model as evaluation
    return trainer


def inputs(rows: list[dict[str, Any]], G: int, template: str = "plain") -> list[dict[str, Any]]:
    """TRL's generation-batch layout: each row repeated G times, the prompt as chat messages."""
    out = []
    for row in rows:
        prompt = render(template, row["prompt"], keep_slot=True)
        out += [{**row, "prompt": prompt} for _ in range(G)]
    return out


def unpadded(values: Any, mask: Any, cast: Any = int) -> list[list[Any]]:
    """Each row of a padded (N, T) tensor without its masked-out positions, as `cast` values."""
    return [[cast(v) for v, m in zip(r, mr) if m] for r, mr in zip(values.tolist(), mask.tolist())]
