"""Memory of the transformers engine over a long run: does it grow with the number of calls? (issue 15, item 4)

A training run calls the engine once or twice per step for thousands of steps, at batch sizes that change (a trace
call and an exits call alternate; refills are smaller), with a weight sync between steps. This benchmark makes
`--calls` calls that cycle through `--shapes` (rows x new tokens), syncs the weights every `--sync-every` calls
(`load_weights` with the model's own tensors, as the trainer's weight sync does), and records after every
`--record-every` calls the device memory (CUDA: allocated and reserved by torch's caching allocator; CPU: the
process's resident set) and how many static workspaces the engine holds.

Growth is measured after a warm phase (the first pass through every shape, plus `--warm-calls`): the least-squares
slope of memory over the remaining calls in bytes per call, and the difference between the mean of the last tenth
and the mean of the first tenth of those calls. The verdict `no_growth` is true when that difference is under
`--tolerance-mib` and the workspace count never exceeds the engine's `max_workspaces` (evicted, not accumulated).

    python experiments/bench/engine_memory.py --calls 1000 --out engine_memory.json          # GPU: SmolLM2, compiled
    python experiments/bench/engine_memory.py --model tiny --device cpu --calls 60 --shapes 4x8 2x4 3x6 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_args, commit, emit, environment, load_model, log, make_engine, save, setup  # noqa: E402

from rollouts.types import Request, SamplingParams  # noqa: E402


def parse_shape(text: str) -> tuple[int, int]:
    rows, _, tokens = text.partition("x")
    if not (rows.isdigit() and tokens.isdigit()) or int(rows) < 1 or int(tokens) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected ROWSxNEW_TOKENS, e.g. 128x512")
    return int(rows), int(tokens)


def memory_bytes(device: str) -> dict[str, int]:
    """Device memory now: torch's allocated/reserved bytes on CUDA, the resident set on a CPU."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        return {"allocated": torch.cuda.memory_allocated(), "reserved": torch.cuda.memory_reserved()}
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return {"rss": resident_pages * os.sysconf("SC_PAGE_SIZE")}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0.0 for fewer than two points)."""
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def growth(series: list[dict[str, Any]], key: str, start_call: int) -> dict[str, float]:
    """Slope (bytes/call) and last-tenth minus first-tenth mean (bytes) of `key` over the calls after `start_call`."""
    points = [(r["call"], r[key]) for r in series if r["call"] > start_call]
    if not points:
        return {"slope_bytes_per_call": 0.0, "growth_bytes": 0.0}
    tenth = max(1, len(points) // 10)
    first, last = points[:tenth], points[-tenth:]
    return {
        "slope_bytes_per_call": slope([c for c, _ in points], [v for _, v in points]),
        "growth_bytes": statistics.fmean(v for _, v in last) - statistics.fmean(v for _, v in first),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    setup(args)
    model, tokenizer = load_model(args.model, args.device, args.dtype)
    vocab = model.get_output_embeddings().weight.shape[0]
    max_rows = max(rows for rows, _ in args.shapes)
    max_len = args.prompt_len + max(tokens for _, tokens in args.shapes)
    engine = make_engine(model, tokenizer, args, max_batch_size=max_rows, ignore_eos=True, max_model_len=max_len)
    generator = torch.Generator().manual_seed(args.seed)
    weights = list(model.state_dict().items())
    warm_until = len(args.shapes) + args.warm_calls
    series: list[dict[str, Any]] = []
    max_workspaces_seen, start = 0, time.perf_counter()
    for call in range(1, args.calls + 1):
        rows, tokens = args.shapes[(call - 1) % len(args.shapes)]
        prompts = torch.randint(0, vocab, (rows, args.prompt_len), generator=generator).tolist()
        params = SamplingParams(max_tokens=tokens, temperature=1.0, seed=args.seed + call)
        out = engine.generate([Request(prompt_ids=p, params=params) for p in prompts])
        decoded = sum(len(c.token_ids) for group in out for c in group)
        if decoded != rows * tokens:
            raise RuntimeError(f"call {call}: decoded {decoded} tokens, expected {rows * tokens}")
        if args.sync_every and call % args.sync_every == 0:
            engine.load_weights(weights)
        max_workspaces_seen = max(max_workspaces_seen, len(engine._workspaces))
        if call % args.record_every == 0 or call == args.calls:
            series.append({"call": call, "workspaces": len(engine._workspaces), **memory_bytes(args.device)})
        if call % max(1, args.calls // 10) == 0:
            log(f"call {call}/{args.calls}: {series[-1] if series else ''}")
            if args.out and series:  # a run cut short (a device's time limit) keeps what it measured
                partial = report(args, model, engine, series, warm_until, max_workspaces_seen, start, call)
                save(partial, args.out)
    return report(args, model, engine, series, warm_until, max_workspaces_seen, start, args.calls)


def report(
    args: argparse.Namespace, model: Any, engine: Any, series: list[dict[str, Any]], warm_until: int,
    max_workspaces_seen: int, start: float, calls_done: int,
) -> dict[str, Any]:  # fmt: skip
    """The JSON report after `calls_done` of `args.calls` calls (`complete` false while the run goes on)."""
    keys = [k for k in series[0] if k not in ("call", "workspaces")]
    growths = {k: growth(series, k, warm_until) for k in keys}
    worst = max(g["growth_bytes"] for g in growths.values())
    return {
        "benchmark": "engine_memory",
        **environment(args.device),
        "commit": commit(),
        "command": " ".join(["experiments/bench/engine_memory.py", *sys.argv[1:]]),
        "model": args.model,
        "dtype": str(model.dtype),
        "engine_mode": engine.mode,
        "decode_attention": engine.decode_attention,
        "calls": args.calls,
        "calls_done": calls_done,
        "complete": calls_done == args.calls,
        "shapes": [f"{r}x{t}" for r, t in args.shapes],
        "prompt_len": args.prompt_len,
        "sync_every": args.sync_every,
        "warm_until_call": warm_until,
        "wall_s": time.perf_counter() - start,
        "max_workspaces": engine.max_workspaces,
        "max_workspaces_seen": max_workspaces_seen,
        "growth": growths,
        "tolerance_mib": args.tolerance_mib,
        "no_growth": worst < args.tolerance_mib * 2**20 and max_workspaces_seen <= engine.max_workspaces,
        "series": series,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument(
        "--shapes", type=parse_shape, nargs="+", default=[parse_shape(s) for s in ("128x512", "1024x128", "64x512")],
        help="ROWSxNEW_TOKENS cycled call by call (default: an S-GRPO trace call, its exits call, a refill)",
    )  # fmt: skip
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--sync-every", type=int, default=2, help="load_weights every N calls (0: never)")
    parser.add_argument("--record-every", type=int, default=1)
    parser.add_argument("--warm-calls", type=int, default=20, help="calls after the first pass left out of growth")
    parser.add_argument("--tolerance-mib", type=float, default=16.0)
    args = parser.parse_args()
    report = run(args)
    emit(report, args.out)
    if not report["no_growth"]:
        log(f"memory grew: {report['growth']}")


if __name__ == "__main__":
    main()
