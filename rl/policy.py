"""The policy model, loaded as TRL's example scripts load it from `ModelConfig` (trl/scripts/grpo.py).

`from_pretrained` gets the model revision, attention implementation and dtype, then GRPOConfig's
`model_init_kwargs` on top; `use_peft` with the `lora_*` keys becomes the trainer's `peft_config` (TRL's
`get_peft_config`), so GRPOTrainer wraps the model in LoRA adapters. brevity loads the model itself (its checks read the
model's context length before the trainer is built), so these keys are applied here rather than by TRL.
"""

from __future__ import annotations

from typing import Any

from rl.config import ExperimentConfig


def model_init_kwargs(config: ExperimentConfig) -> dict[str, Any]:
    """`from_pretrained` keyword arguments. dtype: the YAML's `dtype`, else bfloat16 under bf16 training and float32
    otherwise (TRL's scripts pass bf16 weights to a bf16 run too; rollouts then decode in bf16)."""
    import torch

    args = config.model_args
    dtype = args.dtype if "dtype" in config.grpo_keys_set else ("bfloat16" if config.grpo.bf16 else "float32")
    kwargs: dict[str, Any] = {
        "revision": args.model_revision,
        "attn_implementation": args.attn_implementation,
        "dtype": dtype,
        "trust_remote_code": config.grpo.trust_remote_code,
    }
    kwargs.update(config.grpo.model_init_kwargs or {})
    if isinstance(kwargs["dtype"], str) and kwargs["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    return kwargs


def load_policy(config: ExperimentConfig, path: str) -> Any:
    """The causal LM at `path` (a resolved folder or hub id), on the CPU; the Trainer moves it to its device."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **model_init_kwargs(config))


def peft_config(config: ExperimentConfig) -> Any:
    """TRL's LoraConfig for `use_peft: true` (None otherwise)."""
    from trl import get_peft_config

    return get_peft_config(config.model_args)
