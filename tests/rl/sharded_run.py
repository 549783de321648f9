"""A training driver that records the rollout engine's weights at every weight sync; used by test_sharded.py and
experiments/accelerate/sharded_check.py (the same check on GPUs).

    accelerate launch --config_file <fsdp2, zero3 or ddp yaml> -m tests.rl.sharded_run --config a.yaml --out DIR

The run is the production path (`rl.train.build_trainer`, the experiment's engine, `trainer.train()`, then
`rl.train.finish`, which saves the model to the experiment's output_dir). After each
weight sync every rank checks the engine against the policy: a transformers engine's weights against the gathered
ones (`full_state`, a collective; rank 0 adds a fingerprint of the weights), an engine with weights of its own (vLLM)
through a probe (`probe`: its greedy tokens' log-probs against a forward pass of the sharded policy). Each rank writes
DIR/rank<r>.json: per sync the check's result, per generation batch its local completions.

CPU FSDP: accelerate builds its FSDP state only for GPU process types (`use_cpu` gives MULTI_CPU, the FSDP plugin is
dropped), although `fully_shard` works on CPU over gloo. `allow_cpu_fsdp()` puts the plugin back after accelerate
made its state; this is the only test-only change to the production path. ZeRO-3 needs none: DeepSpeed's CPU
accelerator joins the processes over gloo (rl/trl_args.py sets `ddp_backend: gloo` for it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

FINGERPRINT_VALUES = 8


def allow_cpu_fsdp() -> None:
    """Let `AcceleratorState` keep an FSDP plugin under `use_cpu` (see the module docstring)."""
    import accelerate.state as state
    from accelerate.utils import DistributedType

    original = state.AcceleratorState.__init__
    if getattr(original, "_brevity_cpu_fsdp", False):
        return

    def init(self: Any, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP  # what accelerate sets for GPU process types
            self.fsdp_plugin = fsdp_plugin
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # later states copy it

    init._brevity_cpu_fsdp = True  # type: ignore[attr-defined]
    state.AcceleratorState.__init__ = init


def even_tokens(completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
    """A reward that varies inside groups of a random model's samples: the fraction of even token ids."""
    return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def fingerprint(state: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per tensor: sum, norm and the first few values (float64), enough to tell two weight sets apart."""
    out = {}
    for name, tensor in state.items():
        t = tensor.detach().double().flatten()
        out[name] = [float(t.sum()), float(t.norm()), *t[:FINGERPRINT_VALUES].tolist()]
    return out


PROBE_PROMPT = [1, 17, 250, 3000, 42, 9, 777, 5]
PROBE_TOKENS = 8


def probe(engine: Any, live: torch.nn.Module, device: torch.device) -> dict[str, Any]:
    """Greedy tokens and their log-probs from the engine, against the live policy's log-probs of the same tokens (a
    forward pass: a collective under ZeRO-3 and FSDP2, so every rank probes together)."""
    from rl.engine_host import generating
    from rollouts.types import Request, SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=PROBE_TOKENS, logprobs=True)
    [[completion]] = engine.generate([Request(PROBE_PROMPT, params)])
    ids = torch.tensor([PROBE_PROMPT + completion.token_ids], device=device)
    with generating(live):  # eval mode, no autograd, as the trainer decodes
        logits = live(ids).logits[0, len(PROBE_PROMPT) - 1 : -1].double()
    policy = logits.log_softmax(-1).gather(1, ids[0, len(PROBE_PROMPT) :, None])[:, 0].cpu()
    engine_lp = torch.tensor(completion.logprobs, dtype=torch.float64)
    return {
        "tokens": completion.token_ids,
        "max_abs_logprob_diff": float((policy - engine_lp).abs().max()),
        "engine_logprobs": engine_lp.tolist(),
    }


def run(config_path: str, out_dir: Path) -> None:
    from rl.experiment import load_config
    from rl.train import build_trainer, finish
    from rl.weight_sync import full_state

    config = load_config(config_path)
    trainer = build_trainer(config)
    rank = trainer.accelerator.process_index
    log: dict[str, Any] = {
        "rank": rank, "world": trainer.accelerator.num_processes, "syncs": [], "batches": [],
        "distributed_type": str(trainer.accelerator.distributed_type), "zero_stage": trainer._dist.zero_stage,
        "output_dir": config.grpo.output_dir,
    }  # fmt: skip
    host = trainer.engine_host  # rl/engine_host.py; the rollout syncs before every round
    sync = trainer._groups.sync
    generate = trainer._generate_and_score_completions

    def recorded_sync() -> None:
        sync()
        live = trainer.accelerator.unwrap_model(trainer.model)
        record: dict[str, Any] = {
            "global_step": trainer.state.global_step,
            "synced_step": host.synced_step,
            "sharded": host.sharded,
            "live_param_types": sorted({type(p).__name__ for p in live.parameters()}),
            # elements this rank holds in the policy's parameters: 0 under ZeRO-3 outside a gather
            "live_local_numel": sum(p.numel() for p in live.parameters()),
        }
        engine_model = getattr(host.engine, "model", None)
        if engine_model is None:  # an engine with weights of its own (vLLM): probe them through its log-probs
            record.update(engine_is_live_model=False, probe=probe(host.engine, live, trainer.accelerator.device))
        else:
            held = engine_model.state_dict()
            record.update(
                engine_is_live_model=engine_model is live,
                engine_param_types=sorted({type(p).__name__ for p in engine_model.parameters()}),
                engine_numel=sum(p.numel() for p in engine_model.parameters()),
                mismatched=[  # the engine stores a weight in its own dtype (bf16 copy of FSDP2's fp32 masters on GPUs)
                    name
                    for name, full in full_state(live, trainer.accelerator.device)
                    if not torch.equal(held[name], full.to(held[name].dtype))
                ],
                fingerprint=fingerprint(held) if rank == 0 else None,
            )
        log["syncs"].append(record)

    def recorded_generate(inputs: Any) -> Any:
        out = generate(inputs)
        ids, mask = out["completion_ids"].tolist(), out["completion_mask"].tolist()
        completions = [[t for t, m in zip(row, mrow) if m] for row, mrow in zip(ids, mask)]
        log["batches"].append({"global_step": trainer.state.global_step, "completion_ids": completions})
        return out

    trainer._groups.sync = recorded_sync
    trainer._generate_and_score_completions = recorded_generate
    start = time.perf_counter()
    trainer.train()
    log["train_seconds"] = time.perf_counter() - start
    log["final_global_step"] = trainer.state.global_step
    if torch.cuda.is_available():
        log["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(log))
    finish(trainer, config)  # as `brevity train` ends: the whole model saved to output_dir (gathered when sharded)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    allow_cpu_fsdp()
    run(args.config, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
