"""Fails loudly when a TRL upgrade moves what rl/trainer.py relies on (names, parameters, output keys)."""

from __future__ import annotations

import inspect
import re

import pytest
import trl
from trl import GRPOConfig, GRPOTrainer

PRIVATE_METHODS = {
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
    "_generate_and_score_completions": ["self", "inputs"],
    "_get_per_token_logps_and_entropies": ["self", "model", "input_ids", "attention_mask", "logits_to_keep"],
    "_save_checkpoint": ["self", "model", "trial"],
    "_load_rng_state": ["self", "checkpoint"],
    "_tokenize_prompts": ["self", "prompts"],
    "_generate_single_turn": ["self", "prompt_ids", "images", "multimodal_fields", "num_generations"],
}


def test_trl_is_the_pinned_version() -> None:
    assert trl.__version__ == "1.16.0", "rl/trainer.py is written against TRL 1.16.0: re-check its seams"


@pytest.mark.parametrize("name, params", PRIVATE_METHODS.items())
def test_private_method_signatures(name: str, params: list[str]) -> None:
    method = getattr(GRPOTrainer, name)
    actual = list(inspect.signature(method).parameters)
    assert actual[: len(params)] == params, f"GRPOTrainer.{name} changed: {actual}"


def test_entropy_flag_and_rollout_func() -> None:
    assert "compute_entropy" in inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters
    assert "batch_size" in inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters
    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters


def test_generate_and_score_output_keys_and_env_mask() -> None:
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "num_items_in_batch"):
        assert f'"{key}"' in source, key
    assert 'output["tool_mask"]' in source
    generate = inspect.getsource(GRPOTrainer._generate)
    assert 'extra_fields.pop("env_mask", None)' in generate, "env_mask from rollout_func is how inducers are masked"
    loss = inspect.getsource(GRPOTrainer._compute_loss)
    assert re.search(r'completion_mask \* inputs\["tool_mask"\]', loss), "tool_mask must still scale the loss mask"


def test_calculate_rewards_returns_gathered_rewards() -> None:
    source = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert "rewards_per_func = gather(rewards_per_func)" in source
    assert 'reward_kwargs["trainer_state"] = self.state' in source


def test_config_fields_used() -> None:
    fields = GRPOConfig.__dataclass_fields__
    for name in (
        "scale_rewards",
        "loss_type",
        "epsilon_high",
        "delta",
        "mask_truncated_completions",
        "beta",
        "num_generations",
        "max_completion_length",
        "reward_weights",
        "steps_per_generation",
        "top_k",
    ):
        assert name in fields, name


def test_distributed_backend_tells_sharded_training_apart() -> None:
    """rl/trainer.py reads GRPOTrainer's `_dist` (TRL's own ZeRO-3 / FSDP check) to decide whether the rollout
    engine needs a whole copy of the policy."""
    from types import SimpleNamespace

    from trl.distributed import DistributedBackend

    assert "self._dist = DistributedBackend(self.accelerator)" in inspect.getsource(GRPOTrainer.__init__)

    def backend(zero_stage: int | None, fsdp_version: int | None) -> DistributedBackend:
        ds = None if zero_stage is None else SimpleNamespace(zero_stage=zero_stage)
        fsdp = None if fsdp_version is None else SimpleNamespace(fsdp_version=fsdp_version)
        return DistributedBackend(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=ds, fsdp_plugin=fsdp)))

    assert backend(3, None).is_zero3 and not backend(3, None).is_fsdp
    assert not backend(2, None).is_zero3 and not backend(None, None).is_fsdp
    fsdp2 = backend(None, 2)
    assert fsdp2.is_fsdp and fsdp2.fsdp_version == 2 and not fsdp2.is_zero3


def test_reward_kwargs_come_from_the_input_rows_and_eos_ids_from_the_generation_config() -> None:
    """rl/reward_fields.py: fields set on the input rows (or returned by the rollout function) reach every reward as
    kwargs; TRL's EOS ids include the generation config's list and cut TRL-generated completions."""
    rewards = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert 'keys = [key for key in inputs[0] if key not in ["prompt", "completion", "completion_ids"]]' in rewards
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "inp[key] = values[i]" in score, "rollout_func extra fields are merged into the input rows"
    assert score.index("inp[key] = values[i]") < score.index("self._calculate_rewards(")
    init = inspect.getsource(GRPOTrainer.__init__)
    assert "eos_token_ids = model.generation_config.eos_token_id" in init
    assert '"eos_token_id": self.eos_token_ids' in init and '"max_new_tokens": self.max_completion_length' in init
    assert "generation_kwargs.update(args.generation_kwargs)" in init
    single = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "torch.isin(completion_ids, torch.tensor(self.eos_token_ids" in single


def test_rounds_score_as_trl_would() -> None:
    """rl/trainer.py scores each generation round itself (TRL's `_calculate_rewards`, the completions decoded as
    `_generate` decodes them, `log_extra` values from `_pending_extra_logs`) and serves TRL the kept groups through
    `rollout_func`, which `_generate` reads at call time and nowhere else."""
    generate = inspect.getsource(GRPOTrainer._generate)
    assert "output = self.rollout_func(prompts, self)" in generate
    assert "parse_response(self._tokenizer, ids, prefix=prompt_ids[i]" in generate
    assert "self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)" in generate
    assert 'completions = [[{"role": "assistant", "content": content}] for content in contents]' in generate
    assert inspect.getsource(GRPOTrainer).count("self.rollout_func") == 3, "rollout_func read outside _generate"
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._pending_extra_logs.get(column, [None] * len(prompts))" in score
    assert "unscorable_mask = torch.isnan(rewards_per_func).all(dim=1)" in score, "inert rows are NaN rewards"


def test_trl_vllm_generation_names_brevity_uses() -> None:
    """rollouts/trl_vllm.py and rl/trainer.py's `_sync_vllm` / `_vllm_awake` read these off TRL's VLLMGeneration."""
    from trl.generation.vllm_generation import VLLMGeneration

    init = inspect.getsource(VLLMGeneration.__init__) + inspect.getsource(VLLMGeneration._init_vllm)
    for attribute in ("mode", "llm", "vllm_client", "tensor_parallel_size", "server_base_url", "server_host",
                      "server_port", "server_timeout", "model", "repetition_penalty", "min_p", "generation_kwargs",
                      "enable_sleep_mode", "_llm_weights_sleeping"):  # fmt: skip
        assert f"self.{attribute} =" in init, f"VLLMGeneration.{attribute} is gone"
    # reload_on_cpu intercepts the colocated sync at this call
    assert "driver_worker.model_runner.model.load_weights(" in inspect.getsource(VLLMGeneration.sync_weights)
    trainer = inspect.getsource(GRPOTrainer)
    assert "self._last_loaded_step = self.state.global_step" in trainer and "self.vllm_generation = " in trainer
