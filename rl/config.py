"""Experiment config: TRL's flat GRPOConfig fields plus typed `model`, `data`, `rollout`, `variant`, `rewards`.

```yaml
model: smollm2-135m-instruct
data: {train: "rg:chain_sum", size: 256, seed: 0, template: boxed}
rollout: {engine: transformers}
variant: {name: grpo_lambda, lam: 0.2, alpha: 0.2}
rewards:
  - {name: correctness, weight: 1.0}
learning_rate: 1.0e-6          # any GRPOConfig field, flat, so TRL's docs apply
num_generations: 8
```

Every error names the file and the key, and is raised before any model is loaded: unknown keys (with the closest
known name), wrong types, and combinations that cannot work.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

SECTIONS = ("model", "data", "rollout", "variant", "rewards")


class ConfigError(ValueError):
    """A config problem, with the file and key it comes from."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}")
        self.source, self.key = source, key


@dataclass
class DataSpec:
    train: str = "rg:chain_sum"  # a `rollouts.data.load_problems` spec: rg:<task>, hf:<owner>/<name>, file, benchmark
    size: int | None = 256  # None: every row
    seed: int = 0
    template: str = "boxed"
    columns: dict[str, str | None] | None = None
    split: str | None = None  # hub datasets and benchmarks (e.g. gsm8k@hub, split train); None: the source's default
    # [low, high] tokens: every prompt gets its own budget, a uniform integer in [low, high] drawn with `seed` (L1,
    # arXiv 2503.04697: [100, 4000]), written into the prompt by a template with a budget slot and kept in the
    # `budget` column, which budget-reading rewards (budget_conditioned) get per completion
    budget: list[int] | None = None


@dataclass
class RolloutSpec:
    engine: Literal["transformers", "vllm", "trl"] = "transformers"


@dataclass
class RewardSpec:
    name: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    source: str
    model: str
    data: DataSpec
    rollout: RolloutSpec
    variant_name: str
    variant: Any  # the variant's own Spec dataclass (rl/variants/<name>.py)
    rewards: list[RewardSpec]
    grpo: Any  # trl.GRPOConfig
    grpo_keys_set: frozenset[str] = frozenset()  # GRPOConfig keys the YAML set explicitly


def _type_ok(value: Any, annotation: Any) -> bool:
    """A small runtime check of YAML values against dataclass annotations (the types YAML can produce)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if origin is Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and (not args or all(_type_ok(v, args[0]) for v in value))
    if origin is dict:
        args = typing.get_args(annotation)
        return isinstance(value, dict) and (not args or all(_type_ok(v, args[1]) for v in value.values()))
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "") if not isinstance(annotation, type) else annotation.__name__


def build_dataclass(cls: type, values: Mapping[str, Any], source: str, prefix: str) -> Any:
    """`cls(**values)` with unknown keys and wrong types reported as `source: prefix.key: ...`."""
    if not isinstance(values, Mapping):
        raise ConfigError(source, prefix.rstrip("."), f"expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(source, f"{prefix}{key}", f"unknown key{hint}")
        if isinstance(value, float) and hints.get(key) is int and value.is_integer():
            continue
        if not _type_ok(value, hints.get(key, Any)):
            raise ConfigError(
                source, f"{prefix}{key}", f"expected {_type_name(hints[key])}, got {value!r} ({type(value).__name__})"
            )
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(source, f"{prefix}{missing[0]}", "required key is missing")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(source, prefix.rstrip(".") or cls.__name__, str(e)) from None


def _grpo_config(flat: dict[str, Any], source: str, set_keys: frozenset[str] = frozenset()) -> Any:
    """GRPOConfig from the flat keys (paper defaults merged in); `set_keys` are the ones the YAML wrote."""
    from trl.trainer.grpo_config import GRPOConfig

    fields = {f.name: f for f in dataclasses.fields(GRPOConfig) if f.init}
    hints = typing.get_type_hints(GRPOConfig)
    for key, value in flat.items():
        if key not in fields:
            close = difflib.get_close_matches(key, [*fields, *SECTIONS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                source, key, f"unknown key (neither a brevity section {SECTIONS} nor a GRPOConfig field){hint}"
            )
        annotation = hints.get(key, Any)
        if isinstance(value, int) and not isinstance(value, bool) and _type_ok(1.0, annotation):
            continue  # YAML writes 1e-6 as a float but 1 as an int; TRL accepts ints for float fields
        if not _type_ok(value, annotation) and not (isinstance(value, str) and _type_ok("x", annotation)):
            quoted = isinstance(value, str) and _is_number(value) and _type_ok(1.0, annotation)
            hint = " (a quoted string: write the number without quotes)" if quoted else ""
            raise ConfigError(source, key, f"expected {_type_name(annotation)}, got {value!r}{hint}")
    flat.setdefault("output_dir", "runs/" + Path(source).stem)
    flat.setdefault("report_to", "none")
    import torch

    if "bf16" not in flat:  # TRL defaults to bf16, which a CPU refuses: the same YAML runs on both
        flat["bf16"] = torch.cuda.is_available()
    if "dataloader_pin_memory" not in flat and not torch.cuda.is_available():
        flat["dataloader_pin_memory"] = False  # nothing to pin for; torch warns about it on every run otherwise
    if "use_cpu" not in flat and not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # several processes on a CPU machine (experiments/accelerate/cpu_2proc.yaml): accelerate only picks its
        # MULTI_CPU (gloo) mode when told it is on a CPU; otherwise each process would train alone
        flat["use_cpu"] = True
    try:
        return GRPOConfig(**flat)
    except (TypeError, ValueError) as e:
        raise ConfigError(source, _keys_named(str(e), fields, set_keys), str(e)) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _keys_named(message: str, fields: Mapping[str, Any], set_keys: frozenset[str]) -> str:
    """The GRPOConfig keys a TRL error message talks about, as the user would fix them (else "GRPOConfig")."""
    named = [k for k in fields if re.search(rf"\b{re.escape(k)}\b", message)]
    if "generation_batch_size" in named and "generation_batch_size" not in set_keys:
        # TRL derives it from per_device_train_batch_size × processes × steps_per_generation
        named = [k for k in named if k != "generation_batch_size"]
        named = ["per_device_train_batch_size", *(k for k in ("steps_per_generation",) if k in set_keys), *named]
    return ", ".join(dict.fromkeys(named)) or "GRPOConfig"


def parse_config(raw: Mapping[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Turn a YAML mapping into an ExperimentConfig; the variant's paper defaults fill GRPOConfig keys not set."""
    from rl.variants import VARIANTS

    if not isinstance(raw, Mapping):
        raise ConfigError(source, "<top level>", "expected a mapping of keys")
    raw = dict(raw)
    model = raw.pop("model", "smollm2-135m-instruct")
    if not isinstance(model, str):
        raise ConfigError(source, "model", f"expected a path, hub id or alias, got {model!r}")
    _check_model(model, source)
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
        raise ConfigError(source, "variant.name", f"unknown variant {name!r}{_suggest(name, VARIANTS)}")
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
    keys_set = frozenset(raw)
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
    grpo = _grpo_config(flat, source, keys_set)
    config = ExperimentConfig(source, model, data, rollout, name, spec, rewards, grpo, keys_set)
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Checks that need several sections at once; each names the keys involved."""
    from rewards import REWARDS
    from rl.variants import VARIANTS
    from rollouts.data import FILE_SUFFIXES
    from rollouts.templates import TEMPLATES

    src, grpo = config.source, config.grpo
    if config.data.template not in TEMPLATES:
        raise ConfigError(
            src,
            "data.template",
            f"unknown template {config.data.template!r}{_suggest(config.data.template, TEMPLATES)}",
        )
    train = config.data.train
    if config.data.split is not None and (train.startswith("rg:") or train.lower().endswith(FILE_SUFFIXES)):
        raise ConfigError(src, "data.split", f"reasoning-gym tasks and files have no splits ({train!r})")
    for i, r in enumerate(config.rewards):
        if r.name not in REWARDS and "." not in r.name:
            raise ConfigError(
                src, f"rewards[{i}].name", f"unknown reward {r.name!r}{_suggest(r.name, REWARDS)} (or a dotted path)"
            )
    names = {r.name for r in config.rewards}
    if grpo.mask_truncated_completions and names & {"truncation", "soft_overlong"}:
        raise ConfigError(
            src,
            "mask_truncated_completions",
            "must be false with a truncation reward: masking truncated samples removes the penalty (methods.md §3.7)",
        )
    if grpo.use_vllm and config.rollout.engine != "trl":
        raise ConfigError(
            src, "use_vllm", "brevity's rollouts replace TRL's generation: use `rollout: {engine: vllm}` instead"
        )
    if grpo.eval_strategy != "no":
        raise ConfigError(
            src,
            "eval_strategy",
            "brevity train passes no eval dataset (evaluate checkpoints with `python -m eval.run`)",
        )
    variant = VARIANTS[config.variant_name]
    variant.check(config)
    _check_band(config)
    try:
        plan = variant.plan(config.variant)
    except (TypeError, ValueError) as e:
        raise ConfigError(src, "variant", str(e)) from None
    if config.rollout.engine == "trl" and (plan.strategy != "standard" or plan.budget_schedule is not None):
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
        if plan.budget_schedule is not None:
            raise ConfigError(
                src,
                "data.budget",
                f"variant {config.variant_name!r} states its own per-step budget B(t); per-prompt budgets would "
                "contradict it",
            )
    if TEMPLATES[config.data.template].has_budget_slot and plan.budget_schedule is None and budget is None:
        raise ConfigError(
            src,
            "data.template",
            f"{config.data.template!r} states a token budget, which a budget schedule (curriculum_budget) or "
            f"per-prompt budgets (data.budget: [low, high]) fill in; variant {config.variant_name!r} would show the "
            "raw slot",
        )
    rows = grpo.per_device_train_batch_size * grpo.steps_per_generation  # one process's generation batch
    if plan.dynamic_sampling and rows % grpo.num_generations:
        raise ConfigError(
            src,
            "per_device_train_batch_size",
            f"variant {config.variant_name!r} uses dynamic sampling, which keeps or drops whole groups on each "
            f"process: per_device_train_batch_size × steps_per_generation = {rows} must be a multiple of "
            f"num_generations = {grpo.num_generations} (or set variant.dynamic_sampling: false)",
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


def _check_model(model: str, source: str) -> None:
    """The shapes `rollouts.models.resolve_model` accepts, checked without touching the model: an alias, an existing
    path, or a hub id `org/name`."""
    from rollouts.models import ALIASES

    if model in ALIASES or Path(model).expanduser().exists():
        return
    if model.startswith((".", "/", "~")) or model.endswith(".gguf"):
        raise ConfigError(source, "model", f"no such file or folder: {model}")
    if model.count("/") != 1:
        raise ConfigError(
            source, "model", f"{model!r} is not a path, a hub id (org/name) or an alias{_suggest(model, ALIASES)}"
        )


def _suggest(name: Any, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; choose one of {sorted(known)}"


class YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: `1e-5`, `5E+3` and `1_000.5e-2` are numbers, not strings.

    PyYAML follows YAML 1.1, whose floats need a dot (`1.0e-5`), so the `learning_rate: 1e-5` people write (and TRL's
    docs show) would load as the string "1e-5".
    """


YAMLLoader.add_implicit_resolver(  # added after PyYAML's own float resolver, which still handles `.inf`, `1.5` ...
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML text with YAML 1.2 numbers (see `YAMLLoader`)."""
    return yaml.load(text, Loader=YAMLLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_file(path: str | Path, what: str = "experiment config") -> Any:
    """The mapping in a YAML file (YAML 1.2 numbers); a missing file or bad YAML is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return read_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "<yaml>", f"not valid YAML: {e}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML."""
    return parse_config(load_yaml_file(path), str(path))
