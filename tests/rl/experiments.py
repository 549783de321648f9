"""The experiment YAML the multi-process CPU tests launch: a tiny reasoning-gym task, float32, no progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAIN_SUM = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=2"


def cpu_experiment(model: str, output_dir: Path, **fields: Any) -> dict[str, Any]:
    """Fields every CPU training test shares, updated with the test's own (`data`, rewards, sizes, steps...)."""
    return {
        "model": model,
        "data": {"train": CHAIN_SUM, "size": 32},
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 0,
        "bf16": False,
        "disable_tqdm": True,
        "output_dir": str(output_dir),
        **fields,
    }
