"""The study preset YAML (`experiments/study/<preset>.yaml`): task, model, warm start, shared RL settings, methods.

```yaml
name: tiny
task: {min_terms: 2, max_terms: 4, digits: 2, redundancy: {restate: 0.5, max_checks: 2, second_pass: 0.5}}
sizes: {sft: 76800, train: 4096, eval: 200, hard: 200}
hard_terms: 4                       # the harder split: sums with this many terms only
model: {init: {hidden_size: 64, layers: 2, heads: 4}}   # or {base: smollm2-135m-instruct}
sft: {learning_rate: 3.0e-3, max_steps: 1200, ...}      # SFTConfig fields (brevity sft)
train: {learning_rate: 1.0e-3, max_steps: 60, ...}      # GRPOConfig fields every arm shares (brevity train)
methods:                            # the arms; `grpo` is the control and must be there
  grpo: {variant: {name: grpo}}
  dler: {variant: {name: dler, target_length: 64}, train: {...overrides}, eval: {...overrides}}
eval: {k: 4, temperature: 0.6, top_p: 0.95, max_tokens: 256}
parallel: 2                         # arms (and evaluations) run side by side, one process each
```

Every error names the file and the key, and is raised before any stage runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl.config import ConfigError, build_dataclass, load_yaml_file
from study.traces import Redundancy, SumTask

__all__ = ["EvalSpec", "Method", "StudyConfig", "load_study"]


@dataclass
class Sizes:
    sft: int = 76800  # warm-start traces (= SFT steps × batch is enough: one pass)
    train: int = 4096  # RL prompts
    eval: int = 200  # held-out in-distribution problems
    hard: int = 200  # held-out problems of the harder split


@dataclass
class EvalSpec:
    k: int = 4
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 256
    batch_size: int = 256
    template: str = "plain"
    budget: int | None = None
    answer_format: str = "boxed"
    engine_mode: str = "auto"  # the transformers engine's mode; "static" skips compiling (see eval --engine-mode)


@dataclass
class Method:
    name: str
    experiment: dict[str, Any]  # the arm's experiment YAML minus model/data paths, which the runner fills in
    eval: EvalSpec


@dataclass
class StudyConfig:
    source: str
    name: str
    task: SumTask
    hard_terms: int
    sizes: Sizes
    model: dict[str, Any]  # {init: {...}} (from scratch, character tokenizer) or {base: alias/path}
    sft: dict[str, Any]
    train: dict[str, Any]
    template: str  # the prompt template every arm trains with unless its method says otherwise
    methods: list[Method]
    eval: EvalSpec
    parallel: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_TOP = (
    "extends", "name", "task", "hard_terms", "sizes", "model", "sft", "train", "template", "methods", "eval", "parallel",
)  # fmt: skip
_MERGED = ("task", "sizes", "sft", "train", "eval")  # `extends`: these sections merge key by key; the rest replace
_METHOD_KEYS = ("variant", "rewards", "train", "eval", "data", "rollout")


def _section(raw: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(source, key, f"expected a mapping, got {value!r}")
    return dict(value)


def parse_study(raw: Any, source: str = "<study>") -> StudyConfig:
    if not isinstance(raw, dict):
        raise ConfigError(source, "<top level>", "expected a mapping of keys")
    for key in raw:
        if key not in _TOP:
            raise ConfigError(source, key, f"unknown key; known keys: {', '.join(_TOP)}")
    task_raw = _section(raw, "task", source)
    redundancy = build_dataclass(Redundancy, task_raw.pop("redundancy", {}) or {}, source, "task.redundancy.")
    task = build_dataclass(SumTask, {**task_raw, "redundancy": redundancy}, source, "task.")
    hard_terms = raw.get("hard_terms", task.max_terms)
    if not isinstance(hard_terms, int) or hard_terms < 2:
        raise ConfigError(source, "hard_terms", f"expected an int >= 2, got {hard_terms!r}")
    model = _section(raw, "model", source)
    if len(model) != 1 or next(iter(model)) not in ("init", "base"):
        raise ConfigError(source, "model", "expected {init: {hidden_size, layers, heads}} or {base: <model>}")
    eval_spec = build_dataclass(EvalSpec, _section(raw, "eval", source), source, "eval.")
    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, dict) or "grpo" not in methods_raw:
        raise ConfigError(source, "methods", "expected a mapping of arms that includes the control, `grpo`")
    methods = []
    for name, spec in methods_raw.items():
        spec = dict(spec or {})
        for key in spec:
            if key not in _METHOD_KEYS:
                raise ConfigError(source, f"methods.{name}.{key}", f"unknown key; known keys: {_METHOD_KEYS}")
        overrides = spec.pop("eval", None) or {}
        method_eval = build_dataclass(EvalSpec, {**vars(eval_spec), **overrides}, source, f"methods.{name}.eval.")
        spec.setdefault("variant", {"name": name})
        methods.append(Method(name=name, experiment=spec, eval=method_eval))
    parallel = raw.get("parallel", 1)
    if not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(source, "parallel", f"expected an int >= 1, got {parallel!r}")
    return StudyConfig(
        source=source,
        name=str(raw.get("name") or Path(source).stem),
        task=task,
        hard_terms=hard_terms,
        sizes=build_dataclass(Sizes, _section(raw, "sizes", source), source, "sizes."),
        model=model,
        sft=_section(raw, "sft", source),
        train=_section(raw, "train", source),
        template=str(raw.get("template", "plain")),
        methods=methods,
        eval=eval_spec,
        parallel=parallel,
    )


def resolve_extends(raw: Any, path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """A preset with `extends: <preset.yaml>` (relative to its own file) is that preset with this one's keys on top:
    `task`, `sizes`, `sft`, `train` and `eval` merge key by key, every other key (`methods` included) replaces the
    parent's. Lets a preset that adds arms or changes one setting share the warm start recipe without copying it."""
    if not isinstance(raw, dict) or "extends" not in raw:
        return raw
    parent_path = (path.parent / str(raw["extends"])).resolve()
    if parent_path in seen or parent_path == path.resolve():
        raise ConfigError(str(path), "extends", f"{raw['extends']!r} extends itself (a cycle)")
    if not parent_path.is_file():
        raise ConfigError(str(path), "extends", f"no preset file {parent_path}")
    parent = resolve_extends(load_yaml_file(parent_path, "study config"), parent_path, (*seen, path.resolve()))
    if not isinstance(parent, dict):
        raise ConfigError(str(parent_path), "<top level>", "expected a mapping of keys")
    merged = {k: v for k, v in parent.items() if k != "name"}
    for key, value in raw.items():
        if key == "extends":
            continue
        if key in _MERGED and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def load_study(path: str | Path) -> StudyConfig:
    path = Path(path)
    return parse_study(resolve_extends(load_yaml_file(path, "study config"), path), str(path))
