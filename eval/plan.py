"""An evaluation's plan: every check that can fail cheaply, before a model is loaded (arguments, data, the model's
name and context, prompts, engine), and what they produce for generation and the summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from eval.config import EvalConfig, takes_columns
from eval.efficiency import problem_difficulty
from eval.metrics import noisy_warning
from eval.samples import opens_think
from rollouts.data import Problem, load_problems
from rollouts.engines import resolve_engine_name
from rollouts.templates import encode_prompt, render

logger = logging.getLogger("brevity.eval")


@dataclass
class Plan:
    """What the checks before generation produced: the problems, their prompt token ids and the model."""

    problems: dict[str, list[Problem]]
    prompts: dict[str, dict[str, list[int]]]  # benchmark -> problem id -> prompt token ids
    think_open: dict[str, bool]  # benchmark -> its prompts end inside a think block (the template opened it)
    model_path: str
    engine: str
    tokenizer: Any
    difficulty: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> problem id -> its value


def prepare(config: EvalConfig) -> Plan:
    """Everything that can fail cheaply, before a model is loaded: arguments, data, model, prompts, engine."""
    config.validate()
    engine = resolve_engine_name(config.engine)  # vllm not installed -> ModuleNotFoundError naming the extra
    if engine != "transformers" and config.engine_mode != "auto":
        raise ValueError(
            f"--engine-mode {config.engine_mode} needs the transformers engine; this machine resolves {engine}"
        )
    problems = {}
    for bench in config.benchmarks:
        columns = config.columns if takes_columns(bench) else None
        rows = load_problems(bench, size=config.size, seed=config.seed, columns=columns)
        if not rows:
            raise ValueError(f"benchmark {bench!r} has no rows")
        if any(p.answer is None for p in rows):
            raise ValueError(f"benchmark {bench!r} has problems without a reference answer; it cannot be graded")
        if len({p.id for p in rows}) < len(rows):
            raise ValueError(f"benchmark {bench!r} has duplicate problem ids; map a unique column with --columns id=")
        if (warning := noisy_warning(bench, config.k)) is not None:
            logger.warning(warning)
        problems[bench] = rows
    difficulty = {bench: _difficulty(bench, rows, config.difficulty_column) for bench, rows in problems.items()}
    from rollouts.models import load_config, load_tokenizer, resolve_model

    model_path = resolve_model(config.model)  # unknown alias / missing path -> error naming it
    context = getattr(load_config(model_path).get_text_config(), "max_position_embeddings", None)
    tokenizer = load_tokenizer(model_path)
    prompts: dict[str, dict[str, list[int]]] = {}
    for bench, rows in problems.items():
        prompts[bench] = {}
        for p in rows:
            # a raw template (think_raw, budget_raw) is a plain string: no chat template around it
            ids = prompts[bench][p.id] = encode_prompt(
                tokenizer, render(config.template, p.prompt, budget=config.budget)
            )
            if context and len(ids) + config.max_tokens > context:
                raise ValueError(
                    f"{bench} problem {p.id}: prompt ({len(ids)} tokens) + --max-tokens {config.max_tokens} exceeds "
                    f"the model's context of {context} tokens"
                )
    think_open = {bench: opens_think(tokenizer, next(iter(ids.values()))) for bench, ids in prompts.items()}
    return Plan(
        problems, prompts, think_open, model_path, engine, tokenizer, {b: d for b, d in difficulty.items() if d}
    )


def _difficulty(bench: str, rows: list[Problem], column: str | None) -> dict[str, Any]:
    """Problem id -> its value in `column` ({} without a column); a problem without one fails before generation."""
    if column is None:
        return {}
    values = {p.id: problem_difficulty(p.metadata, column) for p in rows}
    if missing := [pid for pid, v in values.items() if v is None]:
        raise ValueError(f"--difficulty-column {column!r}: benchmark {bench!r} has no such value for {missing[:3]}")
    return values
