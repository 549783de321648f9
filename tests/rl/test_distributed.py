"""A 2-process run (accelerate + gloo on CPU) computes the same group rewards and advantages as a 1-process run.

Group-level logic runs after the cross-process gather (docs/architecture.md), so splitting a group across processes
must not change the numbers. Both runs train the tiny model through `rl.train.build_trainer` with a scripted engine
and reward (tests/rl/scripted_run.py), so they see the same samples; 1 process × 12 rows and 2 processes × 6 rows give
the same global batch of 3 groups of 4, with the middle group split across the two processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rl.experiments import CHAIN_SUM, cpu_experiment

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CPU = REPO / "experiments" / "accelerate" / "cpu_2proc.yaml"
SCRIPTED_REWARD = [{"name": "tests.rl.scripted_run:correctness"}]
G = 4

SCHEDULE = {"type": "stepwise_exponential", "start": 8, "end": 4, "total_steps": 2, "n_drops": 1}

# name -> (variant section, rows per generation batch in 1 process, extra rewards, data template). 12 rows split
# 6 + 6 puts a group on both ranks; every one of the seven variants has a case.
CASES: dict[str, tuple[dict[str, Any], int, list[dict[str, Any]], str]] = {
    "grpo": ({"name": "grpo"}, 12, [], "boxed"),  # TRL's group advantage on the gathered batch
    "grpo_lambda": ({"name": "grpo_lambda", "lam": 0.34}, 12, [], "boxed"),  # top ceil(0.34·3) = 2 of 3 groups
    # serial decay per group (split groups, so no dynamic sampling, which keeps whole groups per process)
    "s_grpo": ({"name": "s_grpo", "num_exits": 3, "answer_max_tokens": 4, "dynamic_sampling": False}, 12, [], "boxed"),
    "dler": ({"name": "dler", "target_length": 16, "dynamic_sampling": False}, 12, [], "boxed"),  # batch whitening
    # B(t) in the prompt and the triangular reward at the trainer's step
    "curriculum_budget": (
        {"name": "curriculum_budget", "schedule": SCHEDULE},
        12,
        [{"name": "budget_triangular", "weight": 0.3, "params": {"schedule": SCHEDULE}}],
        "budget",
    ),
    # one segment holds a whole scripted completion (at most 10 tokens), so both runs release the same groups
    "ulorl": (
        {"name": "ulorl", "segment_length": 16, "max_total_tokens": 16, "dynamic_sampling": False},
        12,
        [],
        "boxed",
    ),
    "format_length": (
        {"name": "format_length", "max_tokens": 16},
        12,
        [{"name": "rise_fall_length", "weight": 0.5, "params": {"max_tokens": 16}}],
        "qwen_math",
    ),
    # dynamic sampling needs whole groups per process: 16 rows = 4 groups, 2 per process
    "dler_dynamic": ({"name": "dler", "target_length": 16, "max_resample_rounds": 2}, 16, [], "boxed"),
    # the same with a solve-rate band: 1 or 2 of 4 solved (the scripted groups have 0 to 4)
    "dler_band": (
        {"name": "dler", "target_length": 16, "max_resample_rounds": 2, "solve_rate_band": [0.25, 0.5]},
        16,
        [],
        "boxed",
    ),
}
SPLIT = [name for name in CASES if name not in ("dler_dynamic", "dler_band")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _experiment(
    model: str, variant: dict[str, Any], rows: int, output_dir: Path, rewards: list[dict[str, Any]], template: str
) -> dict[str, Any]:
    return cpu_experiment(
        model, output_dir,
        data={"train": CHAIN_SUM, "size": 32, "template": template},
        variant=variant, rewards=SCRIPTED_REWARD + rewards, num_generations=G, per_device_train_batch_size=rows,
        max_completion_length=16, max_steps=2, learning_rate=1.0e-4,
    )  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}",
        OMP_NUM_THREADS="1",  # two cores, three processes
        TOKENIZERS_PARALLELISM="false",
        ACCELERATE_USE_CPU="1",  # gloo on CPU even where a GPU exists
        HF_HUB_OFFLINE="1",
    )
    return env


@pytest.fixture(scope="module")
def runs(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Launch the 1-process and the 2-process run side by side; {processes: folder of per-rank JSON logs}."""
    root = tmp_path_factory.mktemp("distributed")
    commands: dict[int, list[str]] = {}
    for world in (1, 2):
        configs = []
        for name, (variant, rows, rewards, template) in CASES.items():
            path = root / f"w{world}" / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            out = root / f"w{world}" / "runs" / name
            experiment = _experiment(tiny_model_path, variant, rows // world, out, rewards, template)
            path.write_text(yaml.safe_dump(experiment))
            configs += ["--config", str(path)]
        driver = ["-m", "tests.rl.scripted_run", "--out", str(root / f"logs{world}"), *configs]
        if world == 1:
            commands[world] = [sys.executable, *driver]
        else:
            accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CPU)]
            commands[world] = [*accelerate, "--main_process_port", str(_free_port()), *driver]
    procs = {
        w: subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for w, cmd in commands.items()
    }
    for world, proc in procs.items():
        output, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{world}-process run failed:\n{output[-6000:]}"
    return {world: root / f"logs{world}" for world in (1, 2)}


def _global_records(folder: Path, name: str) -> list[dict[str, Any]]:
    """Per generation batch, the ranks' local slices concatenated in rank order (= TRL's global order)."""
    logs = [json.loads(p.read_text()) for p in sorted((folder / name).glob("rank*.json"))]
    assert [log["rank"] for log in logs] == list(range(logs[0]["world"])), "a rank wrote no log"
    merged = []
    for k in range(len(logs[0]["records"])):
        records = [log["records"][k] for log in logs]
        glob = {key: sum((r[key] for r in records), []) for key in ("prompt_ids", "completion_ids")}
        for key in ("rewards", "advantages", "lengths", "valid"):
            glob[key] = sum((r[key] or [] for r in records), [])
        glob["gathered_rewards"] = [r["gathered_rewards"] for r in records]
        glob["refill_rows"] = [r["refill_rows"] for r in records]
        glob["rounds"] = [r["rounds"] for r in records]
        glob["group_counts"] = [r["group_counts"] for r in records]
        glob["global_step"] = {r["global_step"] for r in records}
        glob["budget"] = {r["budget"] for r in records}
        merged.append(glob)
    return merged


@pytest.mark.slow
@pytest.mark.parametrize("name", SPLIT)
def test_two_processes_match_one(runs: dict[int, Path], name: str) -> None:
    one, two = _global_records(runs[1], name), _global_records(runs[2], name)
    assert len(one) == len(two) == 2, "expected one generation batch per step, 2 steps"
    for step, (a, b) in enumerate(zip(one, two)):
        assert a["global_step"] == b["global_step"] == {step}
        # the same samples in the same global order: the precondition of the comparison
        assert a["prompt_ids"] == b["prompt_ids"] and a["completion_ids"] == b["completion_ids"], step
        assert len(set(map(tuple, b["prompt_ids"][::G]))) == 3, "3 distinct groups per batch"
        assert b["rewards"] == pytest.approx(a["rewards"], abs=1e-6), f"{name} step {step}: group rewards differ"
        assert b["advantages"] == pytest.approx(a["advantages"], abs=1e-5), f"{name} step {step}: advantages differ"
        # every process transformed the same gathered batch
        for gathered in b["gathered_rewards"]:
            assert gathered == pytest.approx(a["gathered_rewards"][0], abs=1e-6)
    rewards = [r for rec in one for r in rec["rewards"]]
    if name == "grpo_lambda":  # the length penalty reached some groups
        assert any(0.0 < r < 1.0 for r in rewards)
    if name == "s_grpo":  # decay past the first correct exit happened
        assert 0.5 in rewards
    if name == "curriculum_budget":  # B(t) = 8, then 4 after the drop at step 1
        assert [rec["budget"] for rec in two] == [rec["budget"] for rec in one] == [{8}, {4}]


@pytest.mark.slow
def test_dynamic_sampling_refills_distinct_rows_and_whitens_the_gathered_batch(runs: dict[int, Path]) -> None:
    """Dynamic sampling keeps whole groups per process, so the kept set may differ from 1 process; what must hold:
    ranks refill from disjoint dataset rows (together the rows one process would draw), kept groups vary, and DLER's
    whitening runs over the whole gathered batch (only kept groups in its statistics)."""
    import torch

    from rl.advantages import group_center_batch_whiten

    one, two = _global_records(runs[1], "dler_dynamic"), _global_records(runs[2], "dler_dynamic")
    # step 0 starts from the same refill order: its first round draws the same rows, split across the ranks
    if one[0]["refill_rows"][0] and all(two[0]["refill_rows"]):
        assert set(one[0]["refill_rows"][0][0]) == set().union(*(set(r[0]) for r in two[0]["refill_rows"]))
    refilled = False
    for b in two:
        for k in range(max(map(len, b["refill_rows"]))):
            rows = [set(rounds[k]) for rounds in b["refill_rows"] if k < len(rounds)]
            assert not set.intersection(*rows), f"ranks refilled the same dataset rows in round {k}: {rows}"
            refilled = True
        rewards = torch.tensor(b["rewards"]).view(-1, G)
        valid = torch.tensor(b["valid"]).view(-1, G)[:, 0]
        assert bool((rewards[valid].std(dim=1) > 0).all()), "a kept group has zero reward variance"
        expected = group_center_batch_whiten(rewards, torch.tensor(b["lengths"]).view(-1, G), valid=valid)
        assert b["advantages"] == pytest.approx(expected.reshape(-1).tolist(), abs=1e-5)
    assert refilled, "no refill round happened: the case does not exercise dynamic sampling"


@pytest.mark.slow
def test_solve_rate_band_decides_each_group_alike_on_one_and_two_processes(runs: dict[int, Path]) -> None:
    """A step's first generation round is the same global batch in both runs (4 groups; 2 per process in the
    2-process run), and each process trains on the round-0 groups that pass its filter. So a round-0 group is trained
    on iff its solve rate is inside the band (1 or 2 of 4 solved; 0 < k < 4 also varies), in both runs alike; every
    trained group is inside the band; the logged counts are whole-batch sums every process agrees on."""
    one, two = _global_records(runs[1], "dler_band"), _global_records(runs[2], "dler_band")
    out_of_band_seen = False
    for a, b in zip(one, two, strict=True):
        assert [len(rounds[0]["prompt_ids"]) for rounds in b["rounds"]] == [2 * G, 2 * G], "2 groups per process"
        first = [_first_round(rec) for rec in (a, b)]
        assert first[0] == first[1], "round 0 is the same global batch in both runs"
        prompts, solved = first[0]
        out_of_band_seen |= any(k in (0, 3, 4) for k in solved)
        for rec in (a, b):
            trained = [p for p, v in zip(rec["prompt_ids"][::G], rec["valid"][::G]) if v]
            assert [p in trained for p in prompts] == [1 <= k <= 2 for k in solved], solved
            rewards = [rec["rewards"][g * G : (g + 1) * G] for g, v in enumerate(rec["valid"][::G]) if v]
            assert all(1 <= sum(r > 0 for r in group) <= 2 for group in rewards), "a trained group outside the band"
            counts = rec["group_counts"]
            assert len(counts[0]) == 4 and all(c == counts[0] for c in counts), "the same whole-batch counts"
            total = counts[0]
            assert total["brevity/groups_seen"] == total["brevity/groups_kept"] + total["brevity/groups_dropped"]
            assert total["brevity/groups_out_of_band"] >= sum(k in (0, 3, 4) for k in solved)
    assert out_of_band_seen, "no round-0 group fell outside the band: the case does not exercise it"


def _first_round(record: dict[str, Any]) -> tuple[list[list[int]], list[int]]:
    """Round 0 of a generation batch over all processes in rank order: each group's prompt ids and solved count."""
    prompts = sum((rounds[0]["prompt_ids"] for rounds in record["rounds"]), [])
    solved = sum((rounds[0]["solved"] for rounds in record["rounds"]), [])
    return prompts[::G], [sum(solved[g * G : (g + 1) * G]) for g in range(len(solved) // G)]
