"""`brevity demo`: the quickstart job on the embedded default model, offline, on a 2-core CPU in a few minutes.

Evaluate SmolLM2-135M-Instruct on a seeded reasoning-gym set (two-term sums), train it a few GRPO steps with
`experiments/demo/train.yaml` (correctness + a 32-token budget reward), evaluate the trained model on the same
problems, and print the change in accuracy and tokens; `runs/demo/comparison.png` plots both runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from eval.run import EvalConfig, evaluate, run_cli

DEMO_TASK = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=2"
DEMO_TRAIN = Path(__file__).resolve().parent.parent / "experiments" / "demo" / "train.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="brevity demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--task", default=DEMO_TASK, help="benchmark spec to evaluate on (default: %(default)s)")
    p.add_argument("--size", type=int, default=16, help="evaluation problems (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--train-config", default=str(DEMO_TRAIN), help="experiment YAML to train with")
    p.add_argument("--steps", type=int, default=None, help="override max_steps of the training YAML")
    p.add_argument("--eval-only", action="store_true", help="skip training: evaluate the model and stop")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    return p


def _eval(args: argparse.Namespace, model: str, out: str, label: str) -> dict[str, Any]:
    config = EvalConfig(
        model=model,
        benchmarks=[args.task],
        out=out,
        size=args.size,
        max_tokens=args.max_tokens,
        temperature=0.0,
        template="boxed",
        answer_format="any",  # the untrained 135M model rarely boxes its answer; "any" also takes the last number
        engine="transformers",
        seed=args.seed,
        label=label,
    )
    result: dict[str, Any] = {}
    code = run_cli(lambda: result.update(evaluate(config)), out)
    if code:
        raise SystemExit(code)
    return result["benchmarks"][args.task]


def _train(args: argparse.Namespace, model_out: Path) -> None:
    from rl.config import load_config
    from rl.train import build_trainer

    config = load_config(args.train_config)
    config.model = args.model
    config.grpo.output_dir = str(model_out)
    if args.steps is not None:
        config.grpo.max_steps = args.steps
    trainer = build_trainer(config)
    trainer.train()
    trainer.save_model(str(model_out))
    trainer.processing_class.save_pretrained(str(model_out))


def _line(name: str, s: dict[str, Any]) -> str:
    tok = s["tokens"]
    return (
        f"  {name:<8} accuracy {100 * s['accuracy']:5.1f}% ± {100 * s['accuracy_stderr']:4.1f}   "
        f"tokens mean {tok['mean']:6.1f}  median {tok['median']:5.0f}  p90 {tok['p90']:5.0f}   "
        f"truncated {100 * s['truncation_rate']:5.1f}%"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    print(f"[1/3] evaluating {args.model} on {args.size} problems of {args.task}")
    before = _eval(args, args.model, str(out / "before"), "before")
    if args.eval_only:
        print(_line("before", before))
        return 0
    model_out = out / "model"
    if (model_out / "config.json").is_file():
        print(f"[2/3] {model_out} already holds a trained model: skipping training (delete it to retrain)")
    else:
        print(f"[2/3] training with {args.train_config}")
        _train(args, model_out)
    print("[3/3] evaluating the trained model on the same problems")
    after = _eval(args, str(model_out), str(out / "after"), "after")

    from eval.compare import main as compare

    compare([str(out / "before"), str(out / "after"), "--baseline", str(out / "before"), "--out", str(out)])
    ratio = after["tokens"]["mean"] / max(before["tokens"]["mean"], 1e-9)
    print(f"\n{args.model}, {args.task}, {before['num_problems']} problems, greedy, {args.max_tokens} max tokens")
    print(_line("before", before))
    print(_line("after", after))
    print(
        f"  change   accuracy {100 * (after['accuracy'] - before['accuracy']):+.1f} points, "
        f"mean tokens x{ratio:.2f} ({after['tokens']['mean'] - before['tokens']['mean']:+.1f})"
    )
    print(f"  files    {out}/comparison.png, comparison.md, before/, after/, model/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
