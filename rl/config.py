"""Experiment config sections: `model`, `data`, `rollout`, `variant`, `rewards`, their errors and the YAML reader.

```yaml
model: smollm2-135m-instruct
data: {train: "rg:chain_sum", size: 256, seed: 0, template: boxed}
rollout: {engine: transformers}
variant: {name: grpo_lambda, lam: 0.2, alpha: 0.2}
rewards:
  - {name: correctness, weight: 1.0}
learning_rate: 1.0e-6          # any GRPOConfig or ModelConfig field, flat, so TRL's docs apply
num_generations: 8
```

Layering (no import circle): this module imports no other `rl` module, so the variants (`rl/variants/`) can import
`ConfigError` and `RewardSpec` from it; `rl/trl_args.py` parses the flat TRL keys through TRL's `TrlParser`, and
`rl/experiment.py` puts the sections, the variant and the TRL keys together (`load_config`, `parse_config`,
`validate`). Every error names the file and the key, and is raised before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
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
    grpo_keys_set: frozenset[str] = frozenset()  # GRPOConfig/ModelConfig keys the YAML or the command line set
    model_args: Any = None  # trl.ModelConfig: dtype, attention implementation, revision, PEFT/LoRA
    plan: Any = None  # the variant's Plan (rl/variants/base.py), built once when the config is checked


def type_ok(value: Any, annotation: Any) -> bool:
    """A small runtime check of YAML values against dataclass annotations (the types YAML can produce)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(type_ok(value, a) for a in typing.get_args(annotation))
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
        return isinstance(value, (list, tuple)) and (not args or all(type_ok(v, args[0]) for v in value))
    if origin is dict:
        args = typing.get_args(annotation)
        return isinstance(value, dict) and (not args or all(type_ok(v, args[1]) for v in value.values()))
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def type_name(annotation: Any) -> str:
    """An annotation as an error message writes it (`int`, `str | None`)."""
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
        if not type_ok(value, hints.get(key, Any)):
            raise ConfigError(
                source, f"{prefix}{key}", f"expected {type_name(hints[key])}, got {value!r} ({type(value).__name__})"
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


def check_model(model: str, source: str, key: str = "model") -> None:
    """The shapes `rollouts.models.resolve_model` accepts, checked without touching the model: an alias, an existing
    path, or a hub id `org/name`."""
    from rollouts.models import ALIASES

    if model in ALIASES or Path(model).expanduser().exists():
        return
    if model.startswith((".", "/", "~")) or model.endswith(".gguf"):
        raise ConfigError(source, key, f"no such file or folder: {model}")
    if model.count("/") != 1:
        raise ConfigError(
            source, key, f"{model!r} is not a path, a hub id (org/name) or an alias{suggest(model, ALIASES)}"
        )


def suggest(name: Any, known: typing.Iterable[str]) -> str:
    """The "; did you mean 'x'?" hint for the closest known name, else the names to choose from."""
    names = sorted(known)
    close = difflib.get_close_matches(str(name), names, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; choose one of {names}"


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
