"""Experiment YAMLs: every shipped file loads; every mistake is a ConfigError naming the file and the key, raised
before any model is loaded; paper defaults fill the GRPOConfig keys a YAML leaves out, and YAML keys win."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from rl.config import ConfigError
from rl.experiment import load_config, parse_config, validate
from rl.variants import VARIANTS

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p for d in ("smoke", "testbed", "papers") for p in (REPO / "experiments" / d).glob("*.yaml"))
ACCELERATE = sorted((REPO / "experiments" / "accelerate").glob("*.yaml"))
RG = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=2"

BASE: dict[str, Any] = {
    "model": "smollm2-135m-instruct",
    "data": {"train": RG, "size": 8, "template": "boxed"},
    "variant": {"name": "grpo", "answer_format": "any"},
    "num_generations": 4,
    "per_device_train_batch_size": 8,
    "max_completion_length": 48,
    "max_steps": 1,
    "save_strategy": "no",
}


def _write(tmp_path: Path, **changes: Any) -> Path:
    """BASE with top-level keys replaced (None deletes one), written as a YAML file."""
    config = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---- every shipped file -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_experiment_yaml_loads(path: Path) -> None:
    config = load_config(path)  # papers name hub models and data: load_config touches neither
    assert config.variant_name in VARIANTS
    assert config.grpo.generation_batch_size % config.grpo.num_generations == 0


def test_every_variant_has_smoke_testbed_and_paper_files() -> None:
    for folder in ("smoke", "testbed", "papers"):
        stems = {p.stem for p in EXPERIMENTS if p.parent.name == folder}
        assert stems >= set(VARIANTS), f"experiments/{folder} lacks {sorted(set(VARIANTS) - stems)}"
        for stem in set(VARIANTS):
            assert load_config(REPO / "experiments" / folder / f"{stem}.yaml").variant_name == stem


def test_readme_lists_every_experiment() -> None:
    readme = (REPO / "experiments" / "README.md").read_text()
    for path in EXPERIMENTS:
        assert f"`{path.parent.name}/{path.name}" in readme, path
    for path in ACCELERATE:
        assert path.stem in readme, path


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_parse(path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 1 and config.num_machines == 1


# ---- mistakes: ConfigError with the file and the key ------------------------------------------------------------


def _band(band: Any, **spec: Any) -> dict[str, Any]:
    """DLER with `variant.solve_rate_band` set (and other spec keys)."""
    return {"variant": {"name": "dler", "target_length": 48, "solve_rate_band": band, **spec}}


SCHEDULE = {"type": "stepwise_exponential", "start": 256, "end": 64, "total_steps": 4, "n_drops": 1}
CURRICULUM = {"name": "curriculum_budget", "schedule": SCHEDULE}
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    # id: (changes to BASE, key named, a fragment of the message)
    "unknown top-level key": ({"num_generation": 4}, "num_generation", "did you mean 'num_generations'"),
    "unknown section-like key": ({"reward": [{"name": "correctness"}]}, "reward", "did you mean 'rewards'"),
    "unknown variant key": ({"variant": {"name": "grpo_lambda", "lamda": 0.3}}, "variant.lamda", "did you mean 'lam'"),
    "unknown data key": ({"data": {"train": RG, "tempalte": "boxed"}}, "data.tempalte", "did you mean 'template'"),
    "wrong type, GRPOConfig": ({"num_generations": "eight"}, "num_generations", "expected int"),
    "wrong type, variant": ({"variant": {"name": "grpo_lambda", "lam": "x"}}, "variant.lam", "expected float"),
    "wrong type, data": ({"data": {"train": RG, "size": "big"}}, "data.size", "expected"),
    "wrong type, bool": ({"mask_truncated_completions": "yes"}, "mask_truncated_completions", "expected bool"),
    "variant not a mapping": ({"variant": 3}, "variant", "expected a variant name"),
    "unknown variant": ({"variant": {"name": "grpo_lamda"}}, "variant.name", "did you mean 'grpo_lambda'"),
    "unknown reward": ({"rewards": [{"name": "corectness"}]}, "rewards[0].name", "did you mean 'correctness'"),
    "reward not a mapping": ({"rewards": [3]}, "rewards[0]", "expected a mapping"),
    "unknown reward field": ({"rewards": [{"name": "correctness", "wieght": 1}]}, "rewards[0].wieght", "weight"),
    "unknown template": ({"data": {"train": RG, "template": "boxd"}}, "data.template", "did you mean 'boxed'"),
    "unknown model alias": ({"model": "smollm2"}, "model", "not a path, a hub id"),
    "missing model path": ({"model": "./no/such/model"}, "model", "no such file"),
    "dynamic sampling, G = 1": (
        {"variant": {"name": "dler", "target_length": 48}, "num_generations": 1},
        "num_generations",
        ">= 2",
    ),
    "s_grpo default G < 2": (
        {"variant": {"name": "s_grpo", "num_exits": 0}, "num_generations": None},
        "num_generations",
        ">= 2",
    ),
    "budget > max_completion_length": (
        {"variant": CURRICULUM, "data": {"train": RG, "template": "budget"}, "max_completion_length": 128},
        "variant.schedule",
        "exceeds max_completion_length 128",
    ),
    "curriculum without the budget template": (
        {"variant": CURRICULUM, "max_completion_length": 512},
        "data.template",
        "budget",
    ),
    "budget template without a schedule": ({"data": {"train": RG, "template": "budget"}}, "data.template", "raw slot"),
    "truncation reward + masked truncation": (
        {"variant": {"name": "dler", "target_length": 48}, "mask_truncated_completions": True},
        "mask_truncated_completions",
        "removes the penalty",
    ),
    "soft overlong + masked truncation": (
        {
            "rewards": [{"name": "soft_overlong", "params": {"max_tokens": 48, "cache": 8}}],
            "mask_truncated_completions": True,
        },
        "mask_truncated_completions",
        "must be false",
    ),
    "s_grpo G != m + 1": (
        {"variant": {"name": "s_grpo", "num_exits": 3}, "num_generations": 8},
        "num_generations",
        "num_exits + 1 = 4",
    ),
    "dler target > cap": (
        {"variant": {"name": "dler", "target_length": 64}},
        "variant.target_length",
        "exceeds max_completion_length",
    ),
    "grpo_lambda lam out of range": ({"variant": {"name": "grpo_lambda", "lam": 1.5}}, "variant.lam", "(0, 1]"),
    "ulorl segment > total": (
        {"variant": {"name": "ulorl", "segment_length": 64, "max_total_tokens": 32}},
        "variant.segment_length",
        "max_total_tokens",
    ),
    "group transform without its reward": (
        {"variant": {"name": "grpo_lambda"}, "rewards": [{"name": "answer_format"}]},
        "rewards",
        "rewrites the 'correctness' reward",
    ),
    "partial groups (TRL's check)": (
        {"per_device_train_batch_size": 6},
        "per_device_train_batch_size",
        "divisible by num_generations",
    ),
    "bf16 on a CPU": ({"bf16": True}, "bf16", "bf16"),
    "split of an rg task": ({"data": {"train": RG, "split": "train"}}, "data.split", "no splits"),
    "TRL's own vLLM": ({"use_vllm": True}, "use_vllm", "rollout: {engine: vllm}"),
    "eval without a dataset": ({"eval_strategy": "steps", "eval_steps": 1}, "eval_strategy", "eval dataset"),
    # dynamic sampling's solve-rate band (issue 16): G = 4, so a varying group has a rate of 1/4, 2/4 or 3/4
    "band upside down": (_band([0.8, 0.2]), "variant.solve_rate_band", "0 <= low <= high <= 1"),
    "band above 1": (_band([0.2, 1.5]), "variant.solve_rate_band", "0 <= low <= high <= 1"),
    "band of one number": (_band([0.5]), "variant.solve_rate_band", "two numbers [low, high]"),
    "band as a string": (_band("0.2-0.8"), "variant.solve_rate_band", "expected list[float]"),
    "band between G's rates": (_band([0.3, 0.45]), "variant.solve_rate_band", "admits no solve rate"),
    "band of solved groups only": (_band([1.0, 1.0]), "variant.solve_rate_band", "1/4, 2/4, 3/4"),
    "band without dynamic sampling": (
        _band([0.2, 0.8], dynamic_sampling=False),
        "variant.solve_rate_band",
        "dynamic_sampling: true",
    ),
    "band on plain grpo": (
        {"variant": {"name": "grpo", "solve_rate_band": [0.2, 0.8]}},
        "variant.solve_rate_band",
        "unknown key",
    ),
}


@pytest.mark.parametrize("changes, key, fragment", BAD.values(), ids=BAD.keys())
def test_mistakes_name_file_and_key(tmp_path: Path, changes: dict[str, Any], key: str, fragment: str) -> None:
    import torch

    if "bf16" in changes and torch.cuda.is_available():
        pytest.skip("bf16 is fine on a GPU")
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert info.value.source == str(path) and message.startswith(f"{path}: ")
    assert key in info.value.key, f"expected key {key!r}, got {info.value.key!r}: {message}"
    assert fragment in message, message


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("variant: {name: grpo\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["a", "list"], "list.yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", ["dler", "ulorl"])
def test_dynamic_sampling_needs_whole_groups_per_process(tmp_path: Path, variant: str) -> None:
    """With N processes TRL only checks the global batch; each process must hold whole groups. One process cannot
    reach that state through TRL's checks, so the per-process numbers are set after parsing."""
    spec = {"name": variant, **({"target_length": 48} if variant == "dler" else {"segment_length": 16})}
    config = load_config(_write(tmp_path, variant=spec))
    config.grpo.per_device_train_batch_size, config.grpo.steps_per_generation = 6, 1  # e.g. 2 processes × 6 = 12
    with pytest.raises(ConfigError, match="whole groups") as info:
        validate(config)
    assert info.value.key == "per_device_train_batch_size" and str(config.source) in str(info.value)
    config.grpo.per_device_train_batch_size, config.grpo.steps_per_generation = 2, 2  # 4 rows = one group of 4
    validate(config)
    config.variant.dynamic_sampling = False  # without dynamic sampling, split groups are fine
    config.grpo.per_device_train_batch_size, config.grpo.steps_per_generation = 6, 1
    validate(config)


def test_shorthands(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, variant="dler", max_completion_length=4000, rewards=["truncation"]))
    assert config.variant_name == "dler" and config.rewards[0].name == "truncation"
    assert load_config(_write(tmp_path, variant=None)).variant_name == "grpo"


# ---- paper defaults ---------------------------------------------------------------------------------------------
PAPER_DEFAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # variant section -> GRPOConfig values its trl_defaults must give when the YAML does not set them
    "s_grpo": (
        {"name": "s_grpo", "num_exits": 3},
        {"scale_rewards": "none", "loss_type": "grpo", "beta": 0.0, "num_generations": 4},
    ),
    "dler": (
        {"name": "dler", "target_length": 48},
        {
            "epsilon": 0.2,
            "epsilon_high": 0.28,
            "delta": 10.0,
            "mask_truncated_completions": False,
            "beta": 5e-4,
            "loss_type": "dapo",
            "max_completion_length": 48,
        },
    ),
    "grpo_lambda": ({"name": "grpo_lambda"}, {"scale_rewards": "group", "beta": 0.0}),
    "curriculum_budget": (
        {"name": "curriculum_budget", "schedule": {**SCHEDULE, "start": 32, "end": 16}},
        {"scale_rewards": "group", "loss_type": "grpo", "beta": 0.04, "num_generations": 8},
    ),
    "ulorl": (
        {"name": "ulorl", "segment_length": 16, "max_total_tokens": 48},
        {"loss_type": "dapo", "beta": 0.0, "epsilon": 0.2, "temperature": 0.85, "max_completion_length": 16},
    ),
    "format_length": ({"name": "format_length", "max_tokens": 48}, {"beta": 1e-3, "max_completion_length": 48}),
}


@pytest.mark.parametrize("variant, expected", PAPER_DEFAULTS.values(), ids=PAPER_DEFAULTS.keys())
def test_paper_defaults_fill_unset_keys(tmp_path: Path, variant: dict[str, Any], expected: dict[str, Any]) -> None:
    unset = {k: None for k in expected if k in BASE}  # let the variant decide these
    template = "budget" if variant["name"] == "curriculum_budget" else "boxed"
    config = load_config(_write(tmp_path, variant=variant, data={"train": RG, "template": template}, **unset))
    for key, value in expected.items():
        assert getattr(config.grpo, key) == value, key
        assert key not in config.grpo_keys_set


def test_yaml_keys_win_over_paper_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        variant={"name": "dler", "target_length": 48},
        beta=0.01,
        epsilon_high=0.3,
        delta=None,
        loss_type="grpo",
        max_completion_length=64,
    )
    config = load_config(path)
    assert (config.grpo.beta, config.grpo.epsilon_high, config.grpo.loss_type) == (0.01, 0.3, "grpo")
    assert config.grpo.max_completion_length == 64 and config.grpo.delta == 10.0  # unset: still the paper's
    assert {"beta", "epsilon_high", "loss_type", "max_completion_length"} <= config.grpo_keys_set
    s_grpo = load_config(_write(tmp_path, variant={"name": "s_grpo", "num_exits": 3}, epsilon=0.3))
    assert (s_grpo.grpo.scale_rewards, s_grpo.grpo.loss_type, s_grpo.grpo.epsilon) == ("none", "grpo", 0.3)
    # S-GRPO's mean-only advantage is the variant's, not a default a YAML may override (issue 13)
    with pytest.raises(ConfigError, match="scale_rewards"):
        load_config(_write(tmp_path, variant={"name": "s_grpo", "num_exits": 3}, scale_rewards="group"))


# ---- before any model is loaded -----------------------------------------------------------------------------------
@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading anything model-related fails the test loudly (not an error rl.train reports as a config error)."""
    import rollouts.models

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model or tokenizer was loaded before the config error was reported")

    for name in ("load_model", "load_tokenizer", "resolve_model"):
        monkeypatch.setattr(rollouts.models, name, refuse)


EARLY: dict[str, tuple[dict[str, Any], str]] = {
    # id: (changes to BASE, what the message names besides the file)
    "config: unknown key": ({"num_generation": 4}, "num_generation"),
    "config: impossible combination": (
        {"variant": {"name": "s_grpo", "num_exits": 3}, "num_generations": 8},
        "num_generations",
    ),
    "reward: unknown parameter": ({"rewards": [{"name": "truncation", "params": {"target_lenght": 8}}]}, "rewards[0]"),
    "reward: bad dotted path": ({"rewards": [{"name": "no_such_pkg.module:reward"}]}, "rewards[0]"),
    "reward: bad answer format": ({"variant": {"name": "grpo", "answer_format": "latex"}}, "rewards[0]"),
    "data: no reference answers": (
        {
            "data": {
                "train": str(REPO / "experiments/smoke/questions.jsonl"),
                "columns": {"prompt": "question", "answer": None},
            }
        },
        "data.train",
    ),
    "dynamic sampling: a band no group can be in": (
        {"variant": {"name": "ulorl", "segment_length": 48, "max_total_tokens": 48, "solve_rate_band": [0.3, 0.4]}},
        "variant.solve_rate_band",
    ),
    "engine: trl cannot run serial exits": (
        {"variant": {"name": "s_grpo", "num_exits": 3}, "rollout": {"engine": "trl"}},
        "rollout.engine",
    ),
}


@pytest.mark.parametrize("changes, key", EARLY.values(), ids=EARLY.keys())
def test_errors_come_before_the_model(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], key: str
) -> None:
    from rl.train import main

    path = _write(tmp_path, **changes)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err, err


@pytest.mark.parametrize("train", ["rg:no_such_task", "no_such_file.jsonl"])
def test_data_errors_come_before_the_model(
    tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str], train: str
) -> None:
    from rl.train import main

    path = _write(tmp_path, data={"train": train})
    assert main(["--config", str(path)]) == 2
    assert train.split(":")[-1] in capsys.readouterr().err


def test_data_errors_name_file_and_key(tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    from rl.train import main

    path = _write(tmp_path, data={"train": "rg:no_such_task"})
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "data.train" in err, err


def test_data_split_reaches_the_loader(tmp_path: Path, no_model: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The offline GSM8K copy has only the test split: asking for train must fail, not load the test split."""
    from rl.train import main

    path = _write(tmp_path, data={"train": "gsm8k", "split": "train", "size": 4})
    assert main(["--config", str(path)]) == 2
    assert "split" in capsys.readouterr().err


# ---- YAML 1.2 numbers -----------------------------------------------------------------------------------------------
def test_yaml_numbers_as_people_write_them(tmp_path: Path) -> None:
    """PyYAML alone (YAML 1.1) reads `1e-5` as a string; the loader follows YAML 1.2 numbers."""
    path = tmp_path / "experiment.yaml"
    text = yaml.safe_dump(BASE, sort_keys=False)
    path.write_text(text + "learning_rate: 1e-5\nbeta: 5E-4\nmax_grad_norm: 1e0\n")
    config = load_config(path)
    assert config.grpo.learning_rate == 1e-5 and isinstance(config.grpo.learning_rate, float)
    assert (config.grpo.beta, config.grpo.max_grad_norm) == (5e-4, 1.0)
    path.write_text(text + 'learning_rate: "1e-5"\n')  # quoted: still a string, and the message says so
    with pytest.raises(ConfigError, match="without quotes") as info:
        load_config(path)
    assert info.value.key == "learning_rate"
