"""`accelerate launch ... -m rl.train --config experiments/<...>.yaml` (also `brevity train`).

Order matters for users: the whole config is parsed and checked (keys, types, combinations, reward names, data
columns) before the model is loaded, so a typo costs seconds, not a model load.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rl.config import ExperimentConfig, load_config

logger = logging.getLogger("brevity.train")


def build_dataset(config: ExperimentConfig) -> Any:
    """Problems -> a `datasets.Dataset` with `prompt` (chat messages), `answer` and `problem_id` columns."""
    from datasets import Dataset

    from rollouts.data import DataSourceError, load_problems
    from rollouts.templates import render

    spec = config.data
    try:
        problems = load_problems(spec.train, size=spec.size, seed=spec.seed, columns=spec.columns, split=spec.split)
    except (ValueError, FileNotFoundError, DataSourceError) as e:
        raise ValueError(f"{config.source}: data.train: {e}") from None
    if not problems:
        raise ValueError(f"{config.source}: data.train: {spec.train!r} produced no rows")
    rows = {
        "prompt": [render(spec.template, p.prompt, keep_slot=True) for p in problems],
        "answer": [p.answer for p in problems],
        "problem_id": [p.id for p in problems],
    }
    return Dataset.from_dict(rows)


def build_rewards(config: ExperimentConfig) -> list[Any]:
    from rewards import make_reward

    funcs = []
    for i, spec in enumerate(config.rewards):
        try:
            funcs.append(make_reward(spec.name, **spec.params))
        except (ValueError, TypeError, ImportError, AttributeError) as e:
            raise ValueError(f"{config.source}: rewards[{i}] ({spec.name}): {e}") from None
    return funcs


def check_labels(config: ExperimentConfig, dataset: Any, rewards: list[Any]) -> None:
    """A reward that reads reference answers needs them: fail before the model is loaded."""
    needs = [r.__name__ for r in rewards if hasattr(r, "answer_column")]
    if needs and any(a is None for a in dataset["answer"]):
        raise ValueError(
            f"{config.source}: rewards {needs} grade against reference answers, but data.train "
            f"{config.data.train!r} has rows without one (label-free data needs the format_length variant)"
        )


def build_trainer(config: ExperimentConfig) -> Any:
    """Everything cheap first (data, rewards, checks), then the model, then the trainer."""
    from rl.progress import ProgressLine
    from rl.trainer import BrevityTrainer
    from rl.variants import VARIANTS
    from rollouts.models import load_model, load_tokenizer, resolve_model

    plan = VARIANTS[config.variant_name].plan(config.variant)
    check_engine(config, plan)
    dataset = build_dataset(config)
    rewards = build_rewards(config)
    check_labels(config, dataset, rewards)
    config.grpo.reward_weights = [r.weight for r in config.rewards]
    model_path = resolve_model(config.model)
    tokenizer = load_tokenizer(model_path)
    # bf16 weights under bf16 training (TRL's examples do the same): rollouts then decode in bf16 too. On the CPU
    # here; the Trainer/accelerate moves it to the right device.
    model = load_model(model_path, dtype="bfloat16" if config.grpo.bf16 else "float32", device="cpu")
    engine_name = config.rollout.engine

    def engine_factory(rollout_model: Callable[[], Any]) -> Any:
        """vLLM loads its own weights (synced each step); transformers decodes on the trainer's rollout model."""
        from rollouts.engines import make_engine

        if engine_name == "vllm":
            return make_engine("vllm", model_path)
        return make_engine("transformers", rollout_model(), tokenizer=tokenizer)

    return BrevityTrainer(
        model=model,
        reward_funcs=rewards,
        args=config.grpo,
        train_dataset=dataset,
        processing_class=tokenizer,
        plan=plan,
        engine_factory=None if engine_name == "trl" else engine_factory,
        callbacks=[ProgressLine()],
    )


def check_engine(config: ExperimentConfig, plan: Any) -> None:
    """`rollout.engine: trl` leaves generation to TRL itself, which knows plain parallel groups only."""
    if config.rollout.engine != "trl":
        return
    if plan.strategy != "standard" or plan.budget_schedule is not None:
        raise ValueError(
            f"{config.source}: rollout.engine: 'trl' generates plain groups; variant {config.variant_name!r} needs "
            "brevity's rollouts (serial exits, segments or a per-step budget): use 'transformers' or 'vllm'"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="brevity train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="experiment YAML")
    p.add_argument("--resume", default=None, help="checkpoint folder, or 'latest' for the newest in output_dir")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_config(args.config)
        trainer = build_trainer(config)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    resume = args.resume
    if resume == "latest":
        ckpts = sorted(Path(config.grpo.output_dir).glob("checkpoint-*"), key=lambda q: int(q.name.split("-")[1]))
        resume = str(ckpts[-1]) if ckpts else None
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.grpo.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
