"""TRL's conventions (issue 14 item 4): TrlParser command-line overrides, ModelConfig reaching the model, generation
settings brevity's engines do not apply refused at load, resume_from_checkpoint in the YAML, and the run's end (model,
state, the variant's model card, push_to_hub)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

import rl.train
from rl.config import ConfigError
from rl.experiment import load_config, parse_config
from tests.rl.test_train_cli import FakeTrainer

RG = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=2"
BASE: dict[str, Any] = {
    "data": {"train": RG, "size": 8},
    "variant": {"name": "grpo", "answer_format": "any"},
    "num_generations": 4,
    "per_device_train_batch_size": 8,
    "max_completion_length": 16,
    "max_steps": 1,
    "learning_rate": 1.0e-5,
    "save_strategy": "no",
}


def _write(tmp_path: Path, **changes: Any) -> Path:
    config = copy.deepcopy(BASE)
    config["output_dir"] = str(tmp_path / "run")
    config.update(changes)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ---- TrlParser: the command line overrides the YAML ---------------------------------------------------------------
def test_command_line_overrides_yaml_keys(tmp_path: Path) -> None:
    path = _write(tmp_path)
    argv = ["--learning_rate", "2e-6", "--max_steps=3", "--dtype", "bfloat16", "--no_shuffle_dataset"]
    config = load_config(path, argv)
    assert (config.grpo.learning_rate, config.grpo.max_steps) == (2e-6, 3)
    assert config.model_args.dtype == "bfloat16" and config.grpo.shuffle_dataset is False
    assert {"learning_rate", "max_steps", "dtype", "shuffle_dataset"} <= config.grpo_keys_set
    assert load_config(path).grpo.learning_rate == 1e-5  # the YAML's value without the override


def test_command_line_json_dict_field(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path), ["--chat_template_kwargs", '{"enable_thinking": false}'])
    assert config.grpo.chat_template_kwargs == {"enable_thinking": False}


def test_command_line_overrides_a_paper_default(tmp_path: Path) -> None:
    """A variant's paper default yields to the command line as it yields to the YAML, and the key counts as set."""
    path = _write(tmp_path, variant={"name": "dler", "target_length": 16})
    assert load_config(path).grpo.beta == 5e-4
    config = load_config(path, ["--beta", "0.01"])
    assert config.grpo.beta == 0.01 and "beta" in config.grpo_keys_set


COMMAND_LINE_MISTAKES = {
    "unknown option": (["--learning_rat", "1e-6"], "--learning_rat", "did you mean 'learning_rate'"),
    "old spelling": (["--torch_dtype", "bfloat16"], "--torch_dtype", "TRL calls it 'dtype'"),
    "a section is no option": (["--variant", "dler"], "--variant", "unknown option"),
    "bad value": (["--num_generations", "eight"], "num_generations", "invalid int value"),
    "bad choice": (["--lr_scheduler_type", "cosin"], "lr_scheduler_type", "invalid choice"),
    "stray value": (["--max_steps", "3", "4"], "4", "write --key value"),
}


@pytest.mark.parametrize("argv, key, fragment", COMMAND_LINE_MISTAKES.values(), ids=COMMAND_LINE_MISTAKES.keys())
def test_command_line_mistakes_name_the_option(tmp_path: Path, argv: list[str], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path), argv)
    assert info.value.source == "command line" and info.value.key == key, str(info.value)
    assert fragment in str(info.value)


def test_yaml_torch_dtype_names_the_new_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TRL calls it 'dtype'") as info:
        load_config(_write(tmp_path, torch_dtype="bfloat16"))
    assert info.value.key == "torch_dtype"


def test_brevity_train_passes_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def build(config: Any) -> FakeTrainer:
        seen["config"] = config
        return FakeTrainer()

    monkeypatch.setattr(rl.train, "build_trainer", build)
    assert rl.train.main(["--config", str(_write(tmp_path)), "--learning_rate", "3e-6", "--max_steps", "2"]) == 0
    assert (seen["config"].grpo.learning_rate, seen["config"].grpo.max_steps) == (3e-6, 2)


# ---- ModelConfig ------------------------------------------------------------------------------------------------
def test_model_name_or_path_is_model_in_trl_spelling(tmp_path: Path, tiny_model_path: str) -> None:
    config = load_config(_write(tmp_path, model_name_or_path=tiny_model_path))
    assert config.model == config.model_args.model_name_or_path == tiny_model_path
    with pytest.raises(ConfigError, match="name the model once") as info:
        load_config(_write(tmp_path, model="smollm2-135m-instruct", model_name_or_path=tiny_model_path))
    assert info.value.key == "model_name_or_path"
    with pytest.raises(ConfigError, match="no such file") as info:
        load_config(_write(tmp_path), ["--model_name_or_path", "./no/such/model"])
    assert info.value.key == "model_name_or_path"


def test_model_config_reaches_from_pretrained(tmp_path: Path, tiny_model_path: str) -> None:
    import torch

    from rl.policy import load_policy

    config = load_config(_write(tmp_path, model=tiny_model_path, dtype="bfloat16", attn_implementation="eager"))
    model = load_policy(config, tiny_model_path)
    assert model.dtype == torch.bfloat16 and model.config._attn_implementation == "eager"
    plain = load_policy(load_config(_write(tmp_path, model=tiny_model_path)), tiny_model_path)
    assert plain.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)  # follows bf16 training


MODEL_CONFIG_MISTAKES = {
    "unknown dtype": ({"dtype": "float8"}, "dtype", "expected one of"),
    "4-bit": ({"load_in_4bit": True}, "load_in_4bit", "bitsandbytes"),
    "LoRA on brevity's vLLM engine": ({"use_peft": True, "rollout": {"engine": "vllm"}}, "use_peft", "LoRA"),
}


@pytest.mark.parametrize("changes, key, fragment", MODEL_CONFIG_MISTAKES.values(), ids=MODEL_CONFIG_MISTAKES.keys())
def test_model_config_mistakes(tmp_path: Path, changes: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, **changes))
    assert info.value.key == key and fragment in str(info.value)


def first_token_parity(completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
    """A reward a random model's groups always vary on (so the advantages, and the gradient, are not zero)."""
    return [float(ids[0] % 2) if ids else 0.0 for ids in completion_ids]


def test_lora_trains_the_adapters_only(tmp_path: Path, tiny_model_path: str) -> None:
    """use_peft: GRPOTrainer wraps the policy in LoRA adapters (TRL's get_peft_config); one step moves the adapters
    and leaves the base weights as they were."""
    pytest.importorskip("peft")
    import torch

    from tests.rl.variant_helpers import build

    rewards = [{"name": "tests.rl.test_trl_args:first_token_parity"}]
    lora = {"use_peft": True, "lora_r": 4, "lora_target_modules": ["q_proj", "v_proj"]}
    trainer = build(tiny_model_path, tmp_path, {"name": "grpo"}, rewards=rewards, **lora)
    assert type(trainer.model).__name__ == "PeftModelForCausalLM"
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed), sorted(changed)


# ---- generation settings brevity's engines do not apply -----------------------------------------------------------
@pytest.mark.parametrize(
    "key, value",
    [
        ("min_p", 0.1),
        ("repetition_penalty", 1.1),
        ("generation_kwargs", {"no_repeat_ngram_size": 3}),
        ("cache_implementation", "static"),
        ("use_transformers_paged", True),
        ("use_transformers_continuous_batching", True),
        ("ds3_gather_for_generation", False),
    ],
)
def test_generation_settings_only_trl_applies(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match="TRL's own generation only") as info:
        load_config(_write(tmp_path, **{key: value}))
    assert info.value.key == key
    assert getattr(load_config(_write(tmp_path, rollout={"engine": "trl"}, **{key: value})).grpo, key) == value


def test_generation_settings_at_their_neutral_values_pass(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, min_p=0.0, repetition_penalty=1.0, top_k=5, generation_kwargs={}))
    assert config.grpo.top_k == 5  # brevity's engines apply top_k (and temperature, top_p)


def test_chat_template_kwargs_reach_the_template(smollm2_path: str) -> None:
    """encode_prompt passes them to the chat template: here a template that reads `enable_thinking`, as Qwen3's does."""
    from transformers import AutoTokenizer

    from rollouts.templates import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    )
    messages = [{"role": "user", "content": "2+2?"}]
    off = tokenizer.decode(encode_prompt(tokenizer, messages, enable_thinking=False))
    assert off.endswith("<think></think>") and "<think>" not in tokenizer.decode(encode_prompt(tokenizer, messages))


# ---- resume_from_checkpoint and the end of a run ------------------------------------------------------------------
@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeTrainer]:
    made: dict[str, FakeTrainer] = {}

    def build(config: Any) -> FakeTrainer:
        made["trainer"] = FakeTrainer()
        return made["trainer"]

    monkeypatch.setattr(rl.train, "build_trainer", build)
    return made


def test_resume_from_checkpoint_in_the_yaml(tmp_path: Path, fake: dict[str, FakeTrainer], capsys) -> None:
    (tmp_path / "run" / "checkpoint-4").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    checkpoint = str(tmp_path / "run" / "checkpoint-4")
    assert rl.train.main(["--config", str(_write(tmp_path, resume_from_checkpoint=checkpoint))]) == 0
    assert fake["trainer"].resumed_from == checkpoint
    assert rl.train.main(["--config", str(_write(tmp_path, resume_from_checkpoint="latest"))]) == 0
    assert fake["trainer"].resumed_from == checkpoint
    assert rl.train.main(["--config", str(_write(tmp_path, resume_from_checkpoint=str(tmp_path / "nope")))]) == 2
    assert "resume_from_checkpoint" in capsys.readouterr().err


def test_run_ends_with_model_state_and_the_variants_card(tmp_path: Path, fake: dict[str, FakeTrainer]) -> None:
    path = _write(tmp_path, variant={"name": "dler", "target_length": 16})
    assert rl.train.main(["--config", str(path)]) == 0
    trainer = fake["trainer"]
    assert trainer.saved and trainer.state_saved and not trainer.pushed
    card = (tmp_path / "run" / "README.md").read_text()
    assert "`dler` variant of GRPO" in card and "https://huggingface.co/papers/2510.15110" in card
    assert "- dler" in card and "- brevity" in card  # tags


def test_push_to_hub_pushes_at_the_end(tmp_path: Path, fake: dict[str, FakeTrainer]) -> None:
    """`push_to_hub: true` ends with trainer.push_to_hub(), as TRL's scripts do (a fake trainer: nothing is sent)."""
    assert rl.train.main(["--config", str(_write(tmp_path, push_to_hub=True, hub_model_id="me/tiny"))]) == 0
    assert fake["trainer"].pushed


def test_trainer_card_writes_are_the_variants(tmp_path: Path) -> None:
    """TRL writes a card at every checkpoint and before push_to_hub through `create_model_card`: it gets ours."""
    from types import SimpleNamespace

    from rl.model_card import use_variant_card

    variant = {"name": "s_grpo", "num_exits": 3}
    config = parse_config({**BASE, "variant": variant, "output_dir": str(tmp_path / "o")})
    trainer = SimpleNamespace(args=config.grpo, is_world_process_zero=lambda: True)
    use_variant_card(trainer, config)
    trainer.create_model_card(model_name="o", dataset_name="me/data")
    card = (tmp_path / "o" / "README.md").read_text()
    assert "`s_grpo` variant of GRPO" in card and "2505.07686" in card and "me/data" in card


def test_trl_model_card_contract() -> None:
    """rl/model_card.py calls TRL's card builder with these arguments (TRL 1.16)."""
    import inspect

    from trl.trainer.utils import generate_model_card

    wanted = {"base_model", "model_name", "hub_model_id", "dataset_name", "tags", "wandb_url", "trackio_url"}
    wanted |= {"trainer_name", "paper_title", "paper_id"}
    assert wanted <= set(inspect.signature(generate_model_card).parameters)


def test_sft_config_takes_the_same_trl_conventions(tmp_path: Path) -> None:
    """`brevity sft`: SFTConfig + ModelConfig keys through TrlParser, command-line overrides, the same refusals."""
    from rl.sft import parse_sft_config

    data = tmp_path / "sft.jsonl"
    data.write_text('{"prompt": "1+1=?", "completion": "2"}\n')
    raw = {"model": "m", "data": {"train": str(data)}, "learning_rate": 1e-3, "output_dir": str(tmp_path / "o")}
    config = parse_sft_config(raw, "s.yaml", ["--learning_rate", "2e-3", "--dtype", "bfloat16", "--use_peft"])
    assert (config.sft.learning_rate, config.model_args.dtype, config.model_args.use_peft) == (2e-3, "bfloat16", True)
    assert {"learning_rate", "dtype", "use_peft"} <= config.keys_set
    with pytest.raises(ConfigError, match="did you mean 'max_length'") as info:
        parse_sft_config(raw, "s.yaml", ["--max_lenght", "64"])
    assert info.value.source == "command line"
    with pytest.raises(ConfigError, match="bitsandbytes"):
        parse_sft_config({**raw, "load_in_8bit": True}, "s.yaml")


def test_trl_parser_contract() -> None:
    """rl/trl_args.py runs TrlParser's two steps itself (TRL 1.16): these names and parameters must exist."""
    import inspect

    from trl import TrlParser

    assert {"args", "return_remaining_strings", "look_for_args_file"} <= set(
        inspect.signature(TrlParser.parse_args_into_dataclasses).parameters
    )
    parser = TrlParser([], exit_on_error=False, allow_abbrev=False)
    parser.add_argument("--x", type=float, default=0.0)
    assert parser.set_defaults_with_config(x="2e-6", y=1) == ["--y", "1"]  # unknown keys come back as strings
    (namespace, rest) = parser.parse_args_into_dataclasses(args=[], return_remaining_strings=True)
    assert namespace.x == 2e-6 and rest == []  # a string default is converted with the option's type


def test_baseline_card_cites_grpo_and_names_a_local_base_model(tmp_path: Path) -> None:
    from rl.model_card import write_model_card

    card = write_model_card(load_config(_write(tmp_path)), str(tmp_path / "card")).read_text()
    assert "`grpo` variant of GRPO" in card and "https://huggingface.co/papers/2402.03300" in card
    assert "fine-tuned version of `smollm2-135m-instruct`" in card and "huggingface.co/None" not in card


def test_chat_template_kwargs_reach_the_rollout_prompts(tmp_path: Path, tiny_model_path: str) -> None:
    """Through the production path (parse_config + build_trainer + one generation round): the prompt ids the rollout
    decodes from carry what the chat template writes for `enable_thinking: false` (Qwen3's switch)."""
    import shutil

    from tests.rl.variant_helpers import build, inputs, problems

    model = tmp_path / "model"
    shutil.copytree(tiny_model_path, model)
    template = model / "chat_template.jinja"
    switch = "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}"
    template.write_text(template.read_text().rstrip() + switch)

    def prompt_text(**grpo: Any) -> str:
        folder = tmp_path / f"run{len(grpo)}"
        folder.mkdir()
        trainer = build(str(model), folder, {"name": "grpo"}, **grpo)
        out = trainer._generate_and_score_completions(inputs(problems(1), 4))
        ids = out["prompt_ids"][0][out["prompt_mask"][0].bool()]
        return trainer.processing_class.decode(ids)

    assert prompt_text(chat_template_kwargs={"enable_thinking": False}).endswith("<think>\n\n</think>\n\n")
    assert "<think>" not in prompt_text()


# ---- several processes on a CPU machine ------------------------------------------------------------------------------
@pytest.mark.parametrize("deepspeed", [False, True])
def test_several_cpu_processes_get_a_gloo_mode(monkeypatch: pytest.MonkeyPatch, deepspeed: bool) -> None:
    """DDP on CPUs needs accelerate's MULTI_CPU mode (`use_cpu`); DeepSpeed must not get it (accelerate then drops
    DeepSpeed and ZeRO-3's partitioned weights reach an engine that reads them as empty): it gets gloo instead."""
    import torch

    from rl.trl_args import environment_defaults

    if torch.cuda.is_available():
        pytest.skip("the CPU-machine defaults apply without CUDA")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true" if deepspeed else "false")
    flat: dict[str, Any] = {}
    monkeypatch.setenv("WORLD_SIZE", "1")
    environment_defaults(flat, "x.yaml")
    assert "use_cpu" not in flat and "ddp_backend" not in flat, "one process: nothing to join"
    monkeypatch.setenv("WORLD_SIZE", "2")
    environment_defaults(flat, "x.yaml")
    assert flat.get("use_cpu") is (None if deepspeed else True)
    assert flat.get("ddp_backend") == ("gloo" if deepspeed else None)
