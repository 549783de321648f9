"""Optimizer-step time of each brevity variant vs stock TRL `GRPOTrainer`, in one process, same settings; prints JSON.

Every run is a real training run (`trainer.train()`), built like `rl.train` builds it:
- variants: `experiments/smoke/<variant>.yaml` as a dict, with the overrides below, through `rl.experiment.parse_config`
  and `rl.train.build_trainer` (so the rollout engine, strategy, rewards and TRL settings are the production ones);
- stock: plain `trl.GRPOTrainer` (its own transformers `generate`, no rollout_func) on the *grpo* config: same model,
  dataset, rewards, batch, num_generations, max_completion_length and GRPOConfig. The other stock arms change only
  TRL's own generation settings:
  - stock_paged: `use_transformers_paged=True` (TRL 1.16 maps it to `use_transformers_continuous_batching`):
    `generate_batch` with `ContinuousBatchingConfig(max_memory_percent=0.5)` (`--cb-num-blocks` sizes the paged
    cache explicitly; transformers' auto-sizing takes ~30 s a call on a CPU);
  - stock_static: `cache_implementation="static"` (GRPOConfig), i.e. `generation_kwargs["cache_implementation"]`:
    a static cache, decoded eagerly, because TRL 1.16 builds `GenerationConfig(**generation_kwargs,
    disable_compile=True)` (putting `disable_compile` in `generation_kwargs` raises a TypeError there);
  - stock_static_compile: the same plus, after the trainer is built, `trainer.generation_config.disable_compile =
    False` and `compile_config = CompileConfig()` (inductor, "reduce-overhead"): the one-line patch a user needs for
    transformers' static cache + torch.compile in TRL 1.16 (transformers compiles on CUDA only; on a CPU this arm is
    stock_static).
Overrides for all runs: `max_steps` = 1 + `--steps` (the first step is a warm-up and is excluded: engine set-up,
CUDA-graph capture), `per_device_train_batch_size` = `--batch` completions, `num_generations` = `--num-generations`,
`max_completion_length` = `--max-completion-length`, gradient accumulation 1 (one generation round per optimizer
step), logging every step, no checkpoints, `data.train` = `--data` (default gsm8k: the offline GSM8K test set, which
the GPU machine has; `--data yaml` keeps each YAML's reasoning-gym task). Token lengths inside a YAML's `variant:`
(s_grpo answer cap, dler target, curriculum budgets, ulorl segment and total caps, format_length max) are scaled by
`--max-completion-length` / the YAML's own cap, so each variant keeps its smoke shape at the new length; s_grpo's
`num_exits` becomes num_generations - 1 (its group is the serial group).

Step time = `on_step_begin` -> `on_step_end` of a `TrainerCallback`, with a CUDA sync at both ends: generation,
rewards, the loss's forward/backward and the optimizer, per optimizer step. `rollout_s` is the part spent in
`_generate_and_score_completions` (generation + scoring + dynamic sampling's refill rounds). Dynamic sampling's extra
generation rounds per step come from the trainer's `_metrics["train"]["brevity/resample_rounds"]` (UloRL's extra
segments from "ulorl/extra_segments"), read at each step end, before TRL's logging clears them. A variant that fails
is recorded as {"error": ...} and the others still run.

GPU:  python experiments/bench/step_time.py --out step_time.json
CPU:  python experiments/bench/step_time.py --device cpu --model tiny --variants grpo stock --steps 1 --batch 4 \
          --num-generations 2 --max-completion-length 16 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import REPO, add_common_args, emit, environment, log, median, model_path, save, setup, sync  # noqa: E402

VARIANTS = ("grpo", "s_grpo", "grpo_lambda", "dler", "curriculum_budget", "ulorl", "format_length")
STOCK = ("stock", "stock_paged", "stock_static", "stock_static_compile")  # plain trl.GRPOTrainer arms
SMOKE = REPO / "experiments" / "smoke"
# token lengths inside each variant's section, scaled with max_completion_length (paths into the `variant:` dict)
LENGTH_KEYS = {
    "s_grpo": [("answer_max_tokens",)],
    "dler": [("target_length",)],
    "curriculum_budget": [("schedule", "start"), ("schedule", "end")],
    "ulorl": [("segment_length",), ("max_total_tokens",)],
    "format_length": [("max_tokens",)],
}
METRICS = {"resample_rounds": "brevity/resample_rounds", "extra_segments": "ulorl/extra_segments"}


def raw_config(name: str, args: argparse.Namespace, output_dir: str) -> dict[str, Any]:
    """The smoke YAML of `name` with the benchmark's overrides (see the module docstring)."""
    source = SMOKE / f"{name}.yaml"
    raw = yaml.safe_load(source.read_text())
    variant = raw.setdefault("variant", {"name": name})
    base = raw.get("max_completion_length") or variant.get("max_total_tokens") or 48
    scale = args.max_completion_length / base
    for path in LENGTH_KEYS.get(name, []):
        holder = variant
        for key in path[:-1]:
            holder = holder[key]
        if path[-1] in holder:
            holder[path[-1]] = max(1, round(holder[path[-1]] * scale))
    if name == "dler":
        variant["target_length"] = min(variant["target_length"], args.max_completion_length)
    if name == "s_grpo":
        variant["num_exits"] = args.num_generations - 1
    if args.max_resample_rounds is not None and "max_resample_rounds" in variant:
        variant["max_resample_rounds"] = args.max_resample_rounds
    prompts_needed = (args.steps + 2) * args.batch // args.num_generations * (1 + (args.max_resample_rounds or 4))
    data = raw.setdefault("data", {})
    if args.data != "yaml":
        data["train"] = args.data
        data.pop("columns", None)  # a YAML's column map belongs to its own file (format_length: label-free JSONL)
    elif (REPO / str(data.get("train", ""))).is_file():
        data["train"] = str(REPO / data["train"])  # YAML paths are relative to the repository root
    data["size"] = max(int(data.get("size") or 0), prompts_needed)
    raw.update(
        model=model_path(args.model), max_steps=args.steps + 1, per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, num_generations=args.num_generations,
        max_completion_length=args.max_completion_length, logging_steps=1, save_strategy="no", report_to="none",
        output_dir=output_dir, seed=args.seed, use_cpu=not args.device.startswith("cuda"),
    )  # fmt: skip
    return raw


class StepTimer(TrainerCallback):
    """Times each optimizer step, and the rollout inside it."""

    def __init__(self, device: str, budget_s: float | None = None) -> None:
        self.device = device
        self.budget_s = budget_s  # stop training once past it, after the warm-up and one timed step
        self.stopped_by_budget = False
        self._train_start: float | None = None
        self.trainer: Any = None
        self.steps: list[dict[str, float]] = []
        self._start = 0.0
        self._rollout = 0.0

    def wrap_rollout(self, trainer: Any) -> None:
        """Time `_generate_and_score_completions` (TRL calls it through the instance, so a wrapper sees it)."""
        inner = trainer._generate_and_score_completions

        def timed(*a: Any, **k: Any) -> Any:
            sync(self.device)
            start = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                sync(self.device)
                self._rollout += time.perf_counter() - start

        self.trainer = trainer
        trainer._generate_and_score_completions = timed

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        sync(self.device)
        if self._train_start is None:
            self._train_start = time.perf_counter()
        self._rollout = 0.0
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        sync(self.device)
        row = {"step_s": time.perf_counter() - self._start, "rollout_s": self._rollout}
        metrics = getattr(self.trainer, "_metrics", {}).get("train", {})
        for key, name in METRICS.items():
            if metrics.get(name):
                row[key] = float(sum(metrics[name]))
        self.steps.append(row)
        if self.budget_s and len(self.steps) >= 2 and time.perf_counter() - self._train_start > self.budget_s:
            if state.global_step < state.max_steps:
                self.stopped_by_budget = True
                control.should_training_stop = True


def build(name: str, args: argparse.Namespace, output_dir: str) -> Any:
    """A ready trainer: BrevityTrainer through rl.train for a variant, plain trl.GRPOTrainer for "stock"."""
    from rl.experiment import parse_config
    from rl.train import build_trainer

    variant = "grpo" if name in STOCK else name
    source = f"{SMOKE / f'{variant}.yaml'} (+ step_time overrides)"
    config = parse_config(raw_config(variant, args, output_dir), source)
    if name not in STOCK:
        return build_trainer(config)
    from trl import GRPOTrainer

    from rl.train import build_dataset, build_rewards, check_labels
    from rollouts.models import load_model, load_tokenizer, resolve_model

    dataset, rewards = build_dataset(config), build_rewards(config)
    check_labels(config, dataset, rewards)
    config.grpo.reward_weights = [r.weight for r in config.rewards]
    if name == "stock_paged":
        config.grpo.use_transformers_paged = config.grpo.use_transformers_continuous_batching = True
        if args.cb_num_blocks:
            config.grpo.transformers_continuous_batching_config = {
                "num_blocks": args.cb_num_blocks, "block_size": 32, "max_batch_tokens": 256,
            }  # fmt: skip
    if name in ("stock_static", "stock_static_compile"):
        config.grpo.cache_implementation = "static"
    path = resolve_model(config.model)
    trainer = GRPOTrainer(
        # Same weights dtype as rl.train.build_trainer (bf16 under bf16 training), so only the rollout path differs.
        model=load_model(path, dtype="bfloat16" if config.grpo.bf16 else "float32", device="cpu"),
        reward_funcs=rewards,
        args=config.grpo,
        train_dataset=dataset,
        processing_class=load_tokenizer(path),
    )
    if name == "stock_static_compile":
        from transformers import CompileConfig

        trainer.generation_config.disable_compile = False
        trainer.generation_config.compile_config = CompileConfig()
    return trainer


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    timer = StepTimer(args.device, args.arm_budget_s)
    trainer = None
    with tempfile.TemporaryDirectory(prefix=f"brevity-step-time-{name}-") as output_dir:
        try:
            torch.manual_seed(args.seed)
            trainer = build(name, args, output_dir)
            timer.wrap_rollout(trainer)
            trainer.add_callback(timer)
            start = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout carries the JSON
                trainer.train()
            total = time.perf_counter() - start
        except Exception as exc:  # noqa: BLE001 - one failing variant must not hide the others
            log(f"{name} failed: {type(exc).__name__}: {exc}")
            return {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=-6),
                "steps_done": len(timer.steps),
            }
        finally:
            trainer = timer.trainer = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    timed = timer.steps[1:]  # the first step is the warm-up
    step_s = [s["step_s"] for s in timed]
    out: dict[str, Any] = {
        "median_step_s": median(step_s),
        "mean_step_s": statistics.fmean(step_s) if step_s else None,
        "median_rollout_s": median([s["rollout_s"] for s in timed]),
        "warmup_step_s": timer.steps[0]["step_s"] if timer.steps else None,
        "train_wall_s": total,
        "steps": timer.steps,
        "stopped_by_budget": timer.stopped_by_budget,
    }
    for key in METRICS:
        values = [s.get(key, 0.0) for s in timed]
        out[f"{key}_per_step"] = values
        out[f"{key}_mean"] = statistics.fmean(values) if values else None
    rounds = [1 + s.get("resample_rounds", 0.0) for s in timed]
    out["median_step_s_per_generation_round"] = median([s / r for s, r in zip(step_s, rounds)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser, engine=False)
    parser.add_argument(
        "--variants", nargs="+", default=[*VARIANTS, "stock"], help=f"of {VARIANTS} and the stock arms {STOCK}"
    )
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=32, help="per_device_train_batch_size (completions per step)")
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=256)
    parser.add_argument("--data", default="gsm8k", help="data.train for every run; 'yaml' keeps each YAML's")
    parser.add_argument("--max-resample-rounds", type=int, default=None, help="override dler/ulorl's YAML cap")
    parser.add_argument(
        "--arm-budget-s", type=float, default=None,
        help="stop an arm's training after this many seconds (counted from its first step), once it has its warm-up "
        "and one timed step; `steps` then has fewer rows and `stopped_by_budget` is true",
    )  # fmt: skip
    parser.add_argument(
        "--cb-num-blocks", type=int, default=None,
        help="stock_paged: paged-cache blocks of 32 tokens (default: TRL's auto-sizing, 50%% of free GPU memory)",
    )  # fmt: skip
    args = parser.parse_args()
    setup(args)
    unknown = [v for v in args.variants if v not in (*VARIANTS, *STOCK)]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS} and {STOCK}")
    if args.batch % args.num_generations:
        parser.error(f"--batch {args.batch} must be a multiple of --num-generations {args.num_generations}")
    if args.dtype != "auto":
        parser.error(
            "--dtype: the trainers load bf16 weights and train with bf16 autocast on CUDA, float32 on CPU (GRPOConfig)"
        )
    # stock arms first (in the order given), then the variants
    order = [v for v in args.variants if v in STOCK] + [v for v in args.variants if v not in STOCK]
    report: dict[str, Any] = {
        "benchmark": "step_time", **environment(args.device), "model": args.model, "data": args.data,
        "steps_timed": args.steps, "warmup_steps": 1, "batch": args.batch, "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length, "commit": common.commit(), "command": " ".join(sys.argv),
        "results": {},
    }  # fmt: skip
    for name in order:
        log(f"{name}: training {args.steps + 1} steps")
        result = run(name, args)
        report["results"][name] = result
        if "error" not in result:
            log(f"{name}: median {result['median_step_s']:.3f} s/step (rollout {result['median_rollout_s']:.3f} s)")
        save(report, args.out)
    stock = report["results"].get("stock", {}).get("median_step_s")
    report["ratio_vs_stock"] = {
        name: (r["median_step_s"] / stock if stock and r.get("median_step_s") else None)
        for name, r in report["results"].items()
        if "error" not in r
    }
    stock_steps = {
        n: r["median_step_s"] for n, r in report["results"].items() if n in STOCK and r.get("median_step_s")
    }
    best = min(stock_steps, key=stock_steps.get) if stock_steps else None
    report["best_stock_arm"] = best
    report["ratio_vs_best_stock"] = {
        name: r["median_step_s"] / stock_steps[best]
        for name, r in report["results"].items()
        if best and r.get("median_step_s")
    }
    report["config_overrides"] = {name: _variant_section(name, args) for name in order if name not in STOCK}
    emit(report, args.out)


def _variant_section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    raw = copy.deepcopy(raw_config(name, args, "-"))
    return {"variant": raw["variant"], "data": raw["data"]}


if __name__ == "__main__":
    main()
