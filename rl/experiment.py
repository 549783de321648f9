"""An experiment: brevity's sections (`rl/config.py`) + the variant (`rl/variants/`) + TRL's flat keys (`rl/trl_args.py`).

`load_config(path, argv)` reads a YAML, applies command-line overrides of TRL's keys, fills the keys the YAML leaves out
with the variant's paper defaults, and checks what needs several sections at once (`validate`); every error names
the file (or the command line) and the key, before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rl.config import (
    ConfigError,
    DataSpec,
    ExperimentConfig,
    RewardSpec,
    RolloutSpec,
    build_dataclass,
    check_model,
    load_yaml_file,
    suggest,
)
from rl.trl_args import COMMAND_LINE, parse_trl_args
from rl.variants import VARIANTS
from rollouts.trl_vllm import request_field_clash

DEFAULT_MODEL = "smollm2-135m-instruct"
# GRPOConfig generation fields that only TRL's own generation applies (`rollout: {engine: trl}`), each with the value
# that changes nothing. brevity's engines apply temperature, top_p, top_k, max_completion_length and
# chat_template_kwargs; a YAML that sets one of these for them is refused rather than silently ignored.
TRL_GENERATION_ONLY: dict[str, Any] = {
    "min_p": None,
    "repetition_penalty": 1.0,
    "generation_kwargs": None,
    "cache_implementation": None,
    "use_transformers_paged": False,
    "use_transformers_continuous_batching": False,
    "ds3_gather_for_generation": True,  # brevity's engines always get whole weights (rl/weight_sync.py)
}
TRL_VLLM_SAMPLING = ("min_p", "repetition_penalty", "generation_kwargs")  # honoured on TRL's vLLM (use_vllm: true)


def parse_config(raw: Mapping[str, Any], source: str = "<config>", argv: Sequence[str] = ()) -> ExperimentConfig:
    """Turn a YAML mapping (and command-line overrides `argv` of its flat TRL keys) into an ExperimentConfig; the
    variant's paper defaults fill the GRPOConfig keys neither sets."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, "<top level>", "expected a mapping of keys")
    raw = dict(raw)
    model = raw.pop("model", None)
    if model is not None and not isinstance(model, str):
        raise ConfigError(source, "model", f"expected a path, hub id or alias, got {model!r}")
    data = build_dataclass(DataSpec, raw.pop("data", {}) or {}, source, "data.")
    rollout = build_dataclass(RolloutSpec, raw.pop("rollout", {}) or {}, source, "rollout.")
    variant_raw = raw.pop("variant", None) or {"name": "grpo"}
    if isinstance(variant_raw, str):  # `variant: dler` = the paper's settings
        variant_raw = {"name": variant_raw}
    if not isinstance(variant_raw, Mapping):
        raise ConfigError(source, "variant", f"expected a variant name or a mapping with `name`, got {variant_raw!r}")
    variant_raw = dict(variant_raw)
    name = variant_raw.pop("name", None)
    if name not in VARIANTS:
        raise ConfigError(source, "variant.name", f"unknown variant {name!r}{suggest(name, VARIANTS)}")
    variant_module = VARIANTS[name]
    spec = build_dataclass(variant_module.Spec, variant_raw, source, "variant.")
    rewards_raw = raw.pop("rewards", None)
    if rewards_raw is None:
        rewards = list(variant_module.default_rewards(spec))
    else:
        if not isinstance(rewards_raw, list) or not rewards_raw:
            raise ConfigError(source, "rewards", "expected a non-empty list of {name, weight, params}")
        rewards = [
            build_dataclass(RewardSpec, {"name": r} if isinstance(r, str) else r, source, f"rewards[{i}].")
            for i, r in enumerate(rewards_raw)
        ]
    yaml_keys = frozenset(raw)
    flat = {**variant_module.trl_defaults(spec), **raw}
    g = flat.get("num_generations", 8)
    if isinstance(g, int) and not isinstance(g, bool) and g < 2:
        key = "num_generations" if "num_generations" in raw else f"num_generations (variant {name}'s default)"
        raise ConfigError(
            source,
            key,
            f"must be >= 2, got {g}: a group of 1 has no variance, so GRPO advantages (and dynamic "
            "sampling, which drops zero-variance groups) have nothing to work with",
        )
    grpo, model_args, cli_keys = parse_trl_args(flat, source, yaml_keys, argv)
    model_args.model_name_or_path = _model_name(model, model_args.model_name_or_path, source, cli_keys)
    keys_set = yaml_keys | cli_keys
    model = model_args.model_name_or_path
    config = ExperimentConfig(source, model, data, rollout, name, spec, rewards, grpo, keys_set, model_args)
    validate(config)
    return config


def _model_name(model: str | None, model_name_or_path: str | None, source: str, cli_keys: frozenset[str]) -> str:
    """brevity's `model` or TRL's `model_name_or_path` (one of them; the default alias when neither), checked."""
    if model is not None and model_name_or_path is not None and model != model_name_or_path:
        where = COMMAND_LINE if "model_name_or_path" in cli_keys else source
        raise ConfigError(
            where, "model_name_or_path", f"{model_name_or_path!r} contradicts model: {model!r}; name the model once"
        )
    name = model or model_name_or_path or DEFAULT_MODEL
    check_model(name, source, "model" if model is not None else "model_name_or_path")
    return name


def validate(config: ExperimentConfig) -> None:
    """Checks that need several sections at once; each names the keys involved."""
    from rewards import REWARDS
    from rollouts.data import FILE_SUFFIXES
    from rollouts.templates import TEMPLATES

    src, grpo = config.source, config.grpo
    if config.data.template not in TEMPLATES:
        raise ConfigError(
            src,
            "data.template",
            f"unknown template {config.data.template!r}{suggest(config.data.template, TEMPLATES)}",
        )
    train = config.data.train
    if config.data.split is not None and (train.startswith("rg:") or train.lower().endswith(FILE_SUFFIXES)):
        raise ConfigError(src, "data.split", f"reasoning-gym tasks and files have no splits ({train!r})")
    for i, r in enumerate(config.rewards):
        if r.name not in REWARDS and "." not in r.name:
            raise ConfigError(
                src, f"rewards[{i}].name", f"unknown reward {r.name!r}{suggest(r.name, REWARDS)} (or a dotted path)"
            )
    names = {r.name for r in config.rewards}
    if grpo.mask_truncated_completions and names & {"truncation", "soft_overlong"}:
        raise ConfigError(
            src,
            "mask_truncated_completions",
            "must be false with a truncation reward: masking truncated samples removes the penalty (methods.md §3.7)",
        )
    if grpo.use_vllm and config.rollout.engine == "transformers":
        raise ConfigError(
            src,
            "use_vllm",
            "true generates with TRL's vLLM, but rollout.engine is 'transformers': set rollout: {engine: vllm} "
            "(brevity's rollouts on TRL's vLLM) or {engine: trl} (TRL's own plain groups), or use_vllm: false",
        )
    if grpo.eval_strategy != "no":
        raise ConfigError(
            src,
            "eval_strategy",
            "brevity train passes no eval dataset (evaluate checkpoints with `python -m eval.run`)",
        )
    _check_generation(config)
    _check_model_args(config)
    variant = VARIANTS[config.variant_name]
    variant.check(config)
    _check_band(config)
    try:
        plan = config.plan = variant.plan(config.variant)
    except (TypeError, ValueError) as e:
        raise ConfigError(src, "variant", str(e)) from None
    if config.rollout.engine == "trl" and (not plan.rollout.plain or plan.prompt is not None):
        raise ConfigError(
            src,
            "rollout.engine",
            f"'trl' leaves generation to TRL, which samples plain parallel groups; variant {config.variant_name!r} "
            "needs brevity's rollouts (serial exits, segments or a per-step budget): use 'transformers' or 'vllm'",
        )
    reward_names = [r.name.replace(":", ".").rsplit(".", 1)[-1] for r in config.rewards]  # TRL's names for them
    if plan.group_transform is not None and plan.transform_column not in reward_names:
        raise ConfigError(
            src,
            "rewards",
            f"variant {config.variant_name!r} rewrites the {plan.transform_column!r} reward on the gathered batch, "
            f"but the rewards are {reward_names}",
        )
    budget = config.data.budget
    if budget is not None:
        if len(budget) != 2 or not 1 <= budget[0] <= budget[1]:
            raise ConfigError(src, "data.budget", f"expected [low, high] tokens with 1 <= low <= high, got {budget}")
        if not TEMPLATES[config.data.template].has_budget_slot:
            raise ConfigError(
                src,
                "data.budget",
                f"per-prompt budgets are written into the prompt by a template with a budget slot ('budget' or "
                f"'budget_raw'), but data.template is {config.data.template!r}",
            )
        if plan.prompt is not None:
            raise ConfigError(
                src,
                "data.budget",
                f"variant {config.variant_name!r} states its own per-step budget B(t); per-prompt budgets would "
                "contradict it",
            )
    if TEMPLATES[config.data.template].has_budget_slot and plan.prompt is None and budget is None:
        raise ConfigError(
            src,
            "data.template",
            f"{config.data.template!r} states a token budget, which a budget schedule (curriculum_budget) or "
            f"per-prompt budgets (data.budget: [low, high]) fill in; variant {config.variant_name!r} would show the "
            "raw slot",
        )
    rows = grpo.per_device_train_batch_size * grpo.steps_per_generation  # one process's generation batch
    if plan.sample_filter is not None and rows % grpo.num_generations:
        raise ConfigError(
            src,
            "per_device_train_batch_size",
            f"variant {config.variant_name!r} uses dynamic sampling, which keeps or drops whole groups on each "
            f"process: per_device_train_batch_size × steps_per_generation = {rows} must be a multiple of "
            f"num_generations = {grpo.num_generations} (or set variant.dynamic_sampling: false)",
        )


def _check_generation(config: ExperimentConfig) -> None:
    """Generation settings brevity's rollouts would not apply are refused, naming the key."""
    engine = config.rollout.engine
    if engine == "trl":
        return
    honoured = set(TRL_VLLM_SAMPLING) if config.grpo.use_vllm else set()  # TRL's vLLM applies them to every request
    clash = request_field_clash(config.grpo.generation_kwargs) if config.grpo.use_vllm else []
    if clash:
        raise ConfigError(
            config.source,
            "generation_kwargs",
            f"{clash} are set per request by brevity's rollouts (from temperature, top_p, top_k, "
            "max_completion_length and the variant's caps): set those keys instead",
        )
    for key, neutral in TRL_GENERATION_ONLY.items():
        if key in honoured:
            continue
        value = getattr(config.grpo, key)
        if value != neutral and not (neutral is None and not value):
            raise ConfigError(
                config.source,
                key,
                f"{value!r} is applied by TRL's own generation only, which brevity's {engine!r} rollouts replace: "
                "drop it, or use rollout: {engine: trl} (plain GRPO groups)",
            )


def _check_model_args(config: ExperimentConfig) -> None:
    """TRL's ModelConfig settings brevity loads the model with (rl/policy.py), and the ones it cannot."""
    from rl.policy import check_model_args

    check_model_args(config.model_args, config.source)
    if config.model_args.use_peft and config.rollout.engine == "vllm" and not config.grpo.use_vllm:
        raise ConfigError(
            config.source,
            "use_peft",
            "brevity's own vLLM engine loads the policy's full weights each step, not LoRA adapters: use "
            "use_vllm: true (TRL's sync merges the adapters), rollout: {engine: transformers} or {engine: trl}",
        )


def _check_band(config: ExperimentConfig) -> None:
    """`variant.solve_rate_band` (dler, s_grpo, ulorl): a band dynamic sampling can keep groups of G in."""
    from rl.sampling import band_error

    band = getattr(config.variant, "solve_rate_band", None)
    if band is None:
        return
    key = "variant.solve_rate_band"
    if not getattr(config.variant, "dynamic_sampling", False):
        raise ConfigError(
            config.source,
            key,
            "filters dynamic sampling's groups: set variant.dynamic_sampling: true or drop the band",
        )
    problem = band_error(band, config.grpo.num_generations)
    if problem is not None:
        raise ConfigError(config.source, key, problem)


def load_config(path: str | Path, argv: Sequence[str] = ()) -> ExperimentConfig:
    """Read and validate an experiment YAML; `argv` overrides its flat TRL keys (`--learning_rate 2e-6`)."""
    return parse_config(load_yaml_file(path), str(path), argv)
