"""`brevity demo`: the quickstart job on the embedded default model, offline, on a 2-core CPU in a few minutes.

Today it evaluates SmolLM2-135M-Instruct on a small seeded reasoning-gym set (two-term additions) and prints
accuracy and token statistics; the files land in `runs/demo/` (samples, summary.json, summary.md, a plot).
"""

from __future__ import annotations

import argparse
import logging
import sys

from eval.run import EvalConfig, evaluate, run_cli

DEMO_TASK = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=2"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brevity demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--task", default=DEMO_TASK, help="benchmark spec to evaluate on (default: %(default)s)")
    p.add_argument("--size", type=int, default=32, help="problems (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = EvalConfig(
        model=args.model,
        benchmarks=[args.task],
        out=args.out,
        size=args.size,
        max_tokens=args.max_tokens,
        temperature=0.0,
        template="boxed",
        answer_format="any",  # the untrained 135M model rarely boxes its answer; "any" also takes the last number
        engine="transformers",
        seed=args.seed,
        label="smollm2-135m",
    )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result: dict = {}
    code = run_cli(lambda: result.update(evaluate(config)), args.out)
    if code:
        return code
    s = result["benchmarks"][args.task]
    tok = s["tokens"]
    print(f"\n{args.model} on {s['num_problems']} problems of {args.task}")
    print(f"  accuracy       {100 * s['accuracy']:.1f}% ± {100 * s['accuracy_stderr']:.1f}")
    print(f"  tokens         mean {tok['mean']:.1f}, median {tok['median']:.0f}, p90 {tok['p90']:.0f}")
    print(f"  truncated      {100 * s['truncation_rate']:.1f}% (hit --max-tokens {args.max_tokens})")
    print(f"  acc/1k tokens  {s['accuracy_per_1k_tokens']:.2f}")
    print(f"  files          {args.out}/summary.json, summary.md, accuracy_vs_tokens.png, samples/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
