"""S-GRPO serial groups vs parallel groups, one engine, same prompts: wall time and tokens computed; prints JSON.

Arms (methods.md §1; rollouts/strategies):
- parallel: `StandardStrategy` with G = num_exits + 1 independent full samples per prompt (one engine call);
- serial: `SerialExitStrategy`, one full trace per prompt, then num_exits exits per trace, each continuing from
  prompt + trace prefix + inducer and answered within `--answer-max-tokens` (two engine calls); the engine copies
  the trace's cached KV for prompt + prefix and prefills only the inducer (HFEngine prefix reuse);
- serial_prefill: the same with prefix reuse off, so every exit prefills prompt + trace prefix + inducer again.
Both sample at `--temperature` (default 1) with top_p 1 and top_k 0, full traces capped at `--max-tokens`, on one
`HFEngine` (static mode with CUDA graphs on a GPU) shared by both arms, as the trainer shares it across steps.
SmolLM2 has no `</think>`, so the whole trace counts as thinking (the strategy's unclosed-trace rule).

Cost is reported as computed, not as ideal: `prefill_tokens` counts the prompt + prefix tokens each arm prefilled and
`reused_tokens` those copied from the cache (each arm starts with an empty prefix cache, as a training step does after
a weight update); `decode_tokens` counts new tokens returned;
`decode_slots` counts rows x steps the batch ran (a row that finished early waits for its chunk). Each arm runs once
untimed (CUDA-graph capture), then `--repeats` timed runs in alternating order; the median wall time is reported and
`ratio.wall` = serial / parallel (the issue's goal: <= 0.35).

GPU:  python experiments/bench/serial_exits.py --out serial_exits.json
CPU:  python experiments/bench/serial_exits.py --device cpu --model tiny --prompts 2 --max-tokens 24 \
          --answer-max-tokens 8 --num-exits 3 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CountingEngine,
    add_common_args,
    calls_json,
    emit,
    environment,
    load_model,
    load_prompts,
    log,
    make_engine,
    median,
    save,
    setup,
    sync,
    totals,
)

from rollouts.strategies import SerialExitStrategy, StandardStrategy  # noqa: E402
from rollouts.types import SamplingParams  # noqa: E402

ARMS = ("parallel", "serial", "serial_prefill")


def run_arm(arm: str, engine: CountingEngine, tokenizer: Any, prompts: list[list[int]], args: argparse.Namespace):
    """One rollout of every prompt; returns (wall seconds, samples, per-call stats)."""
    params = SamplingParams(temperature=args.temperature, top_p=1.0, top_k=0, max_tokens=args.max_tokens)
    engine.engine.clear_prefix_cache()  # only reuse within the arm (across steps, the weights would have changed)
    engine.engine.prefix_reuse = arm != "serial_prefill" and args.prefix_reuse
    if arm == "parallel":
        strategy: Any = StandardStrategy(engine, params, args.num_exits + 1)
    else:
        strategy = SerialExitStrategy(
            engine, tokenizer, params, num_exits=args.num_exits, answer_max_tokens=args.answer_max_tokens,
            seed=args.seed,
        )  # fmt: skip
    engine.take()
    sync(args.device)
    start = time.perf_counter()
    samples = strategy.generate(prompts)
    sync(args.device)
    return time.perf_counter() - start, samples, engine.take()


def describe(arm: str, samples: list[Any]) -> dict[str, Any]:
    """Lengths of what was generated (they set the cost): full traces, and exit answers for the serial arm."""
    full = [s for s in samples if arm == "parallel" or s.extras.get("is_full_trace")]
    out: dict[str, Any] = {
        "samples": len(samples),
        "full_traces": len(full),
        "full_trace_len_mean": statistics.fmean(len(s.completion_ids) for s in full),
        "full_trace_len_max": max(len(s.completion_ids) for s in full),
        "full_trace_stopped": sum(s.finish_reason == "stop" for s in full) / len(full),
    }
    if arm != "parallel":
        exits = [s for s in samples if not s.extras.get("is_full_trace")]
        answers = [len(s.completion_ids) - s.extras["exit_position"] - s.extras["num_inserted"] for s in exits]
        out["exit_answer_len_mean"] = statistics.fmean(answers) if answers else 0.0
        out["exit_position_mean"] = statistics.fmean(s.extras["exit_position"] for s in exits) if exits else 0.0
        out["exit_answer_stopped"] = sum(s.finish_reason == "stop" for s in exits) / max(len(exits), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--data", default="gsm8k", help="rollouts.data spec (gsm8k: the offline GSM8K test set)")
    parser.add_argument("--template", default="boxed")
    parser.add_argument("--num-exits", type=int, default=8, help="m; the parallel arm samples m + 1 per prompt")
    parser.add_argument("--max-tokens", type=int, default=512, help="cap of every full trace")
    parser.add_argument("--answer-max-tokens", type=int, default=128, help="cap of every exit's answer")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-batch-size", type=int, default=None, help="engine chunk; default all rows at once")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--arms", nargs="+", choices=ARMS, default=list(ARMS), help="parallel and serial are needed for the ratio"
    )
    args = parser.parse_args()
    if not {"parallel", "serial"} <= set(args.arms):
        parser.error("--arms needs parallel and serial (the ratio is serial / parallel)")

    setup(args)
    model, tokenizer = load_model(args.model, args.device, args.dtype)
    prompts, source = load_prompts(tokenizer, args.prompts, args.data, args.template)
    rows = args.prompts * (args.num_exits + 1)
    # three batch sizes (parallel rows, traces, exits): a workspace each, so no arm recaptures graphs every repeat
    engine = CountingEngine(
        make_engine(model, tokenizer, args, max_batch_size=args.max_batch_size or rows, max_workspaces=3)
    )
    report: dict[str, Any] = {
        "benchmark": "serial_exits", **environment(args.device), "model": args.model, "dtype": str(model.dtype),
        "engine_mode": engine.engine.mode, "data": source, "prompts": args.prompts,
        "prompt_len_mean": statistics.fmean(map(len, prompts)), "num_exits": args.num_exits,
        "group_size": args.num_exits + 1, "max_tokens": args.max_tokens, "answer_max_tokens": args.answer_max_tokens,
        "temperature": args.temperature, "max_batch_size": engine.engine.max_batch_size, "repeats": args.repeats,
        "goal": "serial wall time <= 0.35 x parallel", "runs": [],
    }  # fmt: skip
    arms = tuple(a for a in ARMS if a in args.arms)
    if args.warmup:
        for arm in arms:
            wall, _, _ = run_arm(arm, engine, tokenizer, prompts, args)
            report[f"warmup_{arm}_s"] = wall
            log(f"warm-up {arm}: {wall:.2f} s")
    for r in range(args.repeats):
        for arm in arms if r % 2 == 0 else arms[::-1]:
            wall, samples, calls = run_arm(arm, engine, tokenizer, prompts, args)
            run = {"arm": arm, "repeat": r, "wall_s": wall, **totals(calls), **describe(arm, samples)}
            run["calls"] = calls_json(calls)
            report["runs"].append(run)
            save(report, args.out)  # a run cut off by a time limit keeps what it measured
            log(f"{arm} #{r}: {wall:.2f} s, {run['decode_tokens']} decoded, {run['prefill_tokens']} prefilled")

    summary: dict[str, Any] = {}
    for arm in arms:
        runs = [x for x in report["runs"] if x["arm"] == arm]
        keys = ("decode_tokens", "prefill_tokens", "reused_tokens", "decode_slots", "rows", "engine_calls")
        summary[arm] = {"wall_s_median": median([x["wall_s"] for x in runs])}
        summary[arm].update({f"{k}_mean": statistics.fmean(x[k] for x in runs) for k in keys})
    report["summary"] = summary
    p, s = summary["parallel"], summary["serial"]
    report["ratio"] = {
        "wall": s["wall_s_median"] / p["wall_s_median"],
        "decode_tokens": s["decode_tokens_mean"] / p["decode_tokens_mean"],
        "prefill_tokens": s["prefill_tokens_mean"] / p["prefill_tokens_mean"],
        "decode_slots": s["decode_slots_mean"] / p["decode_slots_mean"],
    }
    if "serial_prefill" in summary:
        report["ratio"]["wall_without_prefix_reuse"] = summary["serial_prefill"]["wall_s_median"] / p["wall_s_median"]
    report["meets_goal"] = report["ratio"]["wall"] <= 0.35
    emit(report, args.out)


if __name__ == "__main__":
    main()
