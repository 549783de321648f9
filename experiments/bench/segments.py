"""UloRL segment rollouts vs one-shot rollouts on a long-tailed length distribution: finished samples/s; prints JSON.

Both arms decode the same `--samples` samples (same prompts, same lengths, same order) on one `HFEngine` with the same
batch width B = `--slots`:
- one_shot: batches of B samples in arrival order, each batch one engine call that runs until its longest member
  finishes (what a non-segmented rollout does: the batch waits for the tail); `StandardStrategy` with per-prompt caps;
- segments S: `SegmentStrategy` (G = 1, `max_pending` = B, segment length L_seg = ceil(L_max / S)): every call
  decodes at most L_seg tokens for each of the B pooled samples; finished samples leave, queued ones take their
  slots, unfinished ones resume next call from prompt + their tokens so far (the engine copies their cached KV and
  prefills only what it does not hold: the new prompts, and each resumed sample's last token).
  S = 1 is the same rollout as one_shot through the strategy's machinery (a check: its ratio should be ~1).

Lengths are synthetic, on purpose: sample i must stop after exactly `length[i]` tokens, drawn once from a lognormal
(median `--median-frac` x L_max, log-sd `--sigma`; default) or a Pareto (`--dist pareto`, x_min = `--median-frac` x
L_max, tail index `--alpha`), capped at L_max (a capped sample is truncated, finish "length"). An untrained model's own
EOS gives neither a long tail nor the same lengths in both arms; forcing them makes the comparison exact and the tail
a knob. The engine runs with `ignore_eos=True`; one_shot caps each request at its length, and for the segment arms a
thin engine wrapper caps each request at the sample's remaining tokens and reports "stop" when it reaches its
length, as an EOS there would. Prompts are random token ids (lengths uniform in [P/2, P]); only shapes matter.

Reported per arm: wall time, finished samples/s (`throughput`), `speedup` over one_shot, the steady-state rate
(samples finished while the queue still filled every slot, per second until then; `steady_speedup`), `drain_s` (the
time after that: the pool's last long samples finishing in calls with free slots), and what was computed (tokens
prefilled and decoded, decode slots = rows x steps, slot utilization). Each arm is preceded by one untimed call of B
rows x L_max tokens, so CUDA graphs for every KV window exist before timing (the paper: 4 segments, 2.06x).

Which number compares with the paper: UloRL's 2.06x is seconds per training step in a run whose pool persists, so
new prompts fill every slot each step and the pool never drains: `steady_speedup`. It is conservative (it includes
the first calls, whose pool of fresh samples finishes fewer of them than an equilibrium pool does, and leaves the
pool's partly decoded samples uncounted). `speedup` also pays the drain of a finite batch, which training never does.

GPU:  python experiments/bench/segments.py --out segments.json
CPU:  python experiments/bench/segments.py --device cpu --model tiny --samples 16 --slots 4 --max-len 32
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CountingEngine,
    add_common_args,
    calls_json,
    emit,
    environment,
    load_model,
    log,
    make_engine,
    save,
    setup,
    sync,
    totals,
)

from rollouts.strategies import SegmentStrategy, StandardStrategy  # noqa: E402
from rollouts.types import Completion, Request, SamplingParams  # noqa: E402


class ForcedLengths:
    """Engine wrapper: a request for prompt p never decodes past `lengths[p]` tokens in all, and reports "stop" when
    it gets there (below the global cap), as if the sample had emitted EOS at that point."""

    def __init__(self, engine: CountingEngine, lengths: dict[tuple[int, ...], int], cap: int) -> None:
        self.engine, self.lengths, self.cap = engine, lengths, cap
        self.eos_token_ids, self.max_model_len = engine.eos_token_ids, engine.max_model_len

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        capped = []
        for r in requests:
            left = self.lengths[tuple(r.prompt_ids)] - len(r.prefix_ids)
            capped.append(replace(r, params=replace(r.params, max_tokens=max(1, min(r.params.max_tokens, left)))))
        out = self.engine.generate(capped)
        for r, completions in zip(requests, out):
            target = self.lengths[tuple(r.prompt_ids)]
            for c in completions:
                if len(r.prefix_ids) + len(c.token_ids) >= target and target < self.cap:
                    c.finish_reason = "stop"
        return out

    def load_weights(self, weights: Any) -> None:
        self.engine.load_weights(weights)


def draw_lengths(args: argparse.Namespace) -> list[int]:
    rng = random.Random(args.seed)
    scale = args.median_frac * args.max_len
    out = []
    for _ in range(args.samples):
        if args.dist == "lognormal":
            x = scale * math.exp(args.sigma * rng.gauss(0.0, 1.0))
        else:
            x = scale * (1.0 - rng.random()) ** (-1.0 / args.alpha)
        out.append(max(1, min(args.max_len, round(x))))
    return out


def draw_prompts(args: argparse.Namespace, vocab: int) -> list[list[int]]:
    """Distinct random prompts (the wrapper finds a request's length by its prompt)."""
    g = torch.Generator().manual_seed(args.seed + 1)
    seen: set[tuple[int, ...]] = set()
    out = []
    while len(out) < args.samples:
        n = int(torch.randint(max(1, args.prompt_len // 2), args.prompt_len + 1, (), generator=g))
        ids = torch.randint(16, vocab, (n,), generator=g).tolist()
        if tuple(ids) not in seen:
            seen.add(tuple(ids))
            out.append(ids)
    return out


def warm_up(engine: CountingEngine, args: argparse.Namespace, vocab: int) -> float:
    """B rows x L_max tokens with the widest prompt: the static workspace and every KV window's graph get built;
    then B/4 rows: a second batch size makes torch.compile build its dynamic-batch graph now, not when a draining
    pool first calls with fewer rows (about 35 s on an H200)."""
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_len)
    g = torch.Generator().manual_seed(7)
    requests = [Request(torch.randint(16, vocab, (args.prompt_len,), generator=g).tolist(), params)] * args.slots
    sync(args.device)
    start = time.perf_counter()
    engine.generate(requests)
    engine.generate(requests[: max(1, args.slots // 4)])
    sync(args.device)
    engine.take()
    return time.perf_counter() - start


def one_shot(engine: CountingEngine, prompts: list[list[int]], lengths: list[int], args: argparse.Namespace):
    params = SamplingParams(temperature=args.temperature, max_tokens=args.max_len)
    strategy = StandardStrategy(engine, params, 1)
    finished, timeline = 0, []
    sync(args.device)
    start = time.perf_counter()
    for i in range(0, len(prompts), args.slots):
        samples = strategy.generate(prompts[i : i + args.slots], max_tokens=lengths[i : i + args.slots])
        finished += len(samples)
        timeline.append((time.perf_counter() - start, finished, i + args.slots < len(prompts)))
    sync(args.device)
    return time.perf_counter() - start, finished, timeline, None


def segmented(engine: CountingEngine, prompts: list[list[int]], lengths: list[int], args: argparse.Namespace, S: int):
    seg = math.ceil(args.max_len / S)
    forced = ForcedLengths(engine, {tuple(p): n for p, n in zip(prompts, lengths)}, args.max_len)
    params = SamplingParams(temperature=args.temperature, max_tokens=seg)
    strategy = SegmentStrategy(forced, params, 1, seg, args.max_len, max_pending=args.slots)
    finished, timeline, samples = 0, [], []
    sync(args.device)
    start = time.perf_counter()
    batch = strategy.generate(prompts)
    while True:
        samples += batch
        finished += len(batch)
        # the queue was non-empty at this call's admission iff it still is now, or it emptied only now
        timeline.append((time.perf_counter() - start, finished, strategy.queued > 0))
        if strategy.pending == 0 and strategy.queued == 0:
            break
        batch = strategy.generate([])
    sync(args.device)
    return time.perf_counter() - start, finished, timeline, samples


def check_lengths(samples: list[Any], prompts: list[list[int]], lengths: list[int]) -> int:
    """How many finished samples do not have their drawn length (must be 0)."""
    want = {tuple(p): n for p, n in zip(prompts, lengths)}
    return sum(len(s.completion_ids) != want[tuple(s.prompt_ids)] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--samples", type=int, default=512, help="samples decoded by every arm")
    parser.add_argument("--slots", type=int, default=64, help="batch width B, the same in every arm")
    parser.add_argument("--max-len", type=int, default=1024, help="L_max, the cap of every sample")
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 2, 4, 8], help="S values; L_seg = L_max/S")
    parser.add_argument("--dist", choices=("lognormal", "pareto"), default="lognormal")
    parser.add_argument("--median-frac", type=float, default=0.25, help="lognormal median (pareto x_min) / L_max")
    parser.add_argument("--sigma", type=float, default=0.8, help="lognormal log-sd")
    parser.add_argument("--alpha", type=float, default=1.5, help="pareto tail index")
    parser.add_argument("--prompt-len", type=int, default=128, help="longest prompt; lengths uniform in [P/2, P]")
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args()

    setup(args)
    model, tokenizer = load_model(args.model, args.device, args.dtype)
    vocab = model.get_output_embeddings().weight.shape[0]
    lengths = draw_lengths(args)
    prompts = draw_prompts(args, vocab)
    engine = CountingEngine(make_engine(model, tokenizer, args, max_batch_size=args.slots, ignore_eos=True))
    q = statistics.quantiles(lengths, n=20)
    report: dict[str, Any] = {
        "benchmark": "segments", **environment(args.device), "model": args.model, "dtype": str(model.dtype),
        "engine_mode": engine.engine.mode, "samples": args.samples, "slots": args.slots, "max_len": args.max_len,
        "prompt_len": args.prompt_len, "temperature": args.temperature,
        "lengths": {
            "dist": args.dist, "median_frac": args.median_frac, "sigma": args.sigma, "alpha": args.alpha,
            "mean": statistics.fmean(lengths), "p50": statistics.median(lengths), "p90": q[17], "p95": q[18],
            "max": max(lengths), "capped_fraction": sum(n >= args.max_len for n in lengths) / len(lengths),
        },
        "goal": "segments throughput >= 2x one_shot (paper: 2.06x with 4 segments)", "arms": [],
    }  # fmt: skip
    arms: list[tuple[str, int | None]] = [("one_shot", None)] + [(f"segments_{s}", s) for s in args.segments]
    base = None
    for name, S in arms:
        warm = warm_up(engine, args, vocab) if args.warmup else None
        engine.take()
        engine.engine.clear_prefix_cache()
        if S is None:
            wall, finished, timeline, samples = one_shot(engine, prompts, lengths, args)
        else:
            wall, finished, timeline, samples = segmented(engine, prompts, lengths, args, S)
        calls = engine.take()
        steady = [(t, n) for t, n, queue_left in timeline if queue_left]
        row: dict[str, Any] = {
            "arm": name, "segments": S, "segment_length": math.ceil(args.max_len / S) if S else args.max_len,
            "warmup_s": warm, "wall_s": wall, "finished": finished, "throughput": finished / wall,
            "steady_throughput": steady[-1][1] / steady[-1][0] if steady else None,
            "drain_s": wall - steady[-1][0] if steady else None, **totals(calls),
            "calls": calls_json(calls),
        }  # fmt: skip
        if samples is not None:
            row["length_mismatches"] = check_lengths(samples, prompts, lengths)
            row["segments_per_sample_mean"] = statistics.fmean(s.extras["segments"] for s in samples)
        if S is None:
            base = row
        row["speedup"] = row["throughput"] / base["throughput"]
        if base.get("steady_throughput") and row["steady_throughput"]:
            row["steady_speedup"] = row["steady_throughput"] / base["steady_throughput"]
        report["arms"].append(row)
        log(f"{name}: {wall:.2f} s, {row['throughput']:.2f} samples/s, speedup {row['speedup']:.2f}x")
        save(report, args.out)
    seg4 = next((a for a in report["arms"] if a["segments"] == 4), None)
    report["speedup_4_segments"] = seg4["speedup"] if seg4 else None
    emit(report, args.out)


if __name__ == "__main__":
    main()
