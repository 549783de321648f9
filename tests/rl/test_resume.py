"""A run stopped after step 1 and resumed from checkpoint-1 continues exactly like the uninterrupted run.

Run A trains 2 steps and saves after each; run B, a fresh process, resumes from A's checkpoint-1 and trains step 2.
B must restore the brevity state A saved (UloRL's pending pool, S-GRPO's exit RNG, DLER's refill order, the call
counter behind the sampling seeds), generate at global step 1 with the curriculum's B(1), see the samples, rewards
and advantages A saw at step 1, and end with A's checkpoint-2 state and weights. Both go through
`rl.train.build_trainer`; the scripted engine of tests/rl/scripted_run.py makes rollouts independent of the weights,
and the `*_real` case keeps the transformers engine to check that the seeded sampling continues too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rl.experiments import CHAIN_SUM, cpu_experiment

REPO = Path(__file__).resolve().parents[2]
SCRIPTED_REWARD = [{"name": "tests.rl.scripted_run:correctness"}]
SCHEDULE = {"type": "stepwise_exponential", "start": 48, "end": 24, "total_steps": 2, "n_drops": 1}  # B(1) = 24
CURRICULUM = {"variant": {"name": "curriculum_budget", "schedule": SCHEDULE, "cap_generation": True}}

# name -> (overrides of the base experiment, scripted engine?)
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    # 4-token segments, 12 tokens at most: groups finish over 2-3 steps, so checkpoint-1 holds a pending pool
    "ulorl": (
        {
            "variant": {"name": "ulorl", "segment_length": 4, "max_total_tokens": 12, "dynamic_sampling": False},
            "rewards": SCRIPTED_REWARD,
        },
        True,
    ),
    "curriculum_budget": ({**CURRICULUM, "data_template": "budget", "max_completion_length": 96}, True),
    "curriculum_budget_real": ({**CURRICULUM, "data_template": "budget", "max_completion_length": 96}, False),
    "s_grpo": (
        {"variant": {"name": "s_grpo", "num_exits": 3, "answer_max_tokens": 4}, "rewards": SCRIPTED_REWARD},
        True,
    ),
    "dler": (
        {"variant": {"name": "dler", "target_length": 16, "max_resample_rounds": 2}, "rewards": SCRIPTED_REWARD},
        True,
    ),
}


def _experiment(model: str, overrides: dict[str, Any], output_dir: Path, resume: Path | None) -> dict[str, Any]:
    overrides = dict(overrides)
    template = overrides.pop("data_template", "boxed")
    fields = {
        "data": {"train": CHAIN_SUM, "size": 32, "template": template},
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_completion_length": 16,
        "max_steps": 2,
        "save_strategy": "steps",
        "save_steps": 1,
        "learning_rate": 1.0e-4,
        **overrides,  # may replace any of the above (max_completion_length)
    }
    config = cpu_experiment(model, output_dir, **fields)
    if resume is not None:
        config["resume_from_checkpoint"] = str(resume)
    return config


def _run(args: list[str]) -> None:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tests.rl.scripted_run", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"run failed:\n{(proc.stdout + proc.stderr)[-6000:]}"


@pytest.fixture(scope="module")
def runs(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run A (uninterrupted, all cases in one process), then B (resumed, all cases in another)."""
    root = tmp_path_factory.mktemp("resume")
    for run in ("a", "b"):
        args = ["--out", str(root / "logs" / run)]
        for name, (overrides, scripted) in CASES.items():
            resume = root / "a" / name / "checkpoint-1" if run == "b" else None
            path = root / "configs" / run / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(_experiment(tiny_model_path, overrides, root / run / name, resume)))
            args += ["--config" if scripted else "--real-config", str(path)]
        _run(args)
    return root


def _log(root: Path, run: str, name: str) -> dict[str, Any]:
    return json.loads((root / "logs" / run / name / "rank0.json").read_text())


def _state(root: Path, run: str, name: str, step: int) -> dict[str, Any]:
    return json.loads((root / run / name / f"checkpoint-{step}" / "brevity_state.json").read_text())


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_resume_continues_exactly(runs: Path, name: str) -> None:
    a, b = _log(runs, "a", name), _log(runs, "b", name)
    saved = _state(runs, "a", name, 1)
    assert "loaded_state" in b, "the resumed run never loaded brevity_state.json"
    assert b["loaded_state"] == saved, "the restored brevity state differs from the saved one"

    # the resumed run generates at global step 1 what the uninterrupted run generated there
    assert [r["global_step"] for r in a["records"]] == [0, 1]
    assert [r["global_step"] for r in b["records"]] == [1]
    a1, b1 = a["records"][1], b["records"][0]
    assert b1["budget"] == a1["budget"]
    assert b1["prompt_ids"] == a1["prompt_ids"], "different prompts after resume"
    assert b1["completion_ids"] == a1["completion_ids"], "different completions after resume"
    assert b1["rewards"] == pytest.approx(a1["rewards"], abs=1e-6)
    assert b1["advantages"] == pytest.approx(a1["advantages"], abs=1e-5)

    # and ends where it ended: same step, same brevity state, same weights
    assert b["final_global_step"] == a["final_global_step"] == 2
    assert _state(runs, "b", name, 2) == _state(runs, "a", name, 2)
    wa, wb = _weights(runs / "a" / name / "checkpoint-2"), _weights(runs / "b" / name / "checkpoint-2")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] - wb[key]).abs().max().item() < 1e-6, key


@pytest.mark.slow
def test_cases_exercise_the_state(runs: Path) -> None:
    """Guards the test above: the saved states are not trivially empty and the budget did change at step 1."""
    pool = _state(runs, "a", "ulorl", 1)["strategy"]
    assert pool is not None and pool["groups"], "checkpoint-1 holds no pending UloRL groups"
    for name in ("curriculum_budget", "curriculum_budget_real"):
        budgets = [r["budget"] for r in _log(runs, "a", name)["records"]]
        assert budgets == [48, 24], budgets
    serial = _state(runs, "a", "s_grpo", 1)["strategy"]
    assert serial["name"] == "serial_exits" and serial["calls"] >= 1, serial  # the call count seeds exit positions
    dler = _log(runs, "a", "dler")["records"]
    assert dler[0]["refill_rows"], "DLER did not refill before checkpoint-1"
