"""The policy model, loaded as TRL's example scripts load it from `ModelConfig` (trl/scripts/grpo.py).

`from_pretrained` gets the model revision, attention implementation and dtype, then GRPOConfig's
`model_init_kwargs` on top; `use_peft` with the `lora_*` keys becomes the trainer's `peft_config` (TRL's
`get_peft_config`), so GRPOTrainer wraps the model in LoRA adapters. brevity loads the model itself (its checks read the
model's context length before the trainer is built), so these keys are applied here rather than by TRL.
"""

from __future__ import annotations

from typing import Any

from rl.config import ConfigError, ExperimentConfig

DTYPES = ("auto", "bfloat16", "float16", "float32")


def from_pretrained_kwargs(model_args: Any, args: Any, set_keys: frozenset[str]) -> dict[str, Any]:
    """`from_pretrained` keyword arguments from a ModelConfig and a TRL training config (GRPOConfig, SFTConfig).
    dtype: `dtype` when the YAML or command line set it, else bfloat16 under bf16 training and float32 otherwise (TRL's
    scripts pass bf16 weights to a bf16 run too; rollouts then decode in bf16)."""
    import torch

    dtype = model_args.dtype if "dtype" in set_keys else ("bfloat16" if args.bf16 else "float32")
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": dtype,
        "trust_remote_code": args.trust_remote_code,
    }
    kwargs.update(args.model_init_kwargs or {})
    if isinstance(kwargs["dtype"], str) and kwargs["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    return kwargs


def model_init_kwargs(config: ExperimentConfig) -> dict[str, Any]:
    """`from_pretrained` keyword arguments of an experiment."""
    return from_pretrained_kwargs(config.model_args, config.grpo, config.grpo_keys_set)


def load_policy(config: ExperimentConfig, path: str) -> Any:
    """The causal LM at `path` (a resolved folder or hub id), on the CPU; the Trainer moves it to its device."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, **model_init_kwargs(config))


def peft_config(config: ExperimentConfig) -> Any:
    """TRL's LoraConfig for `use_peft: true` (None otherwise)."""
    from trl.trainer.utils import get_peft_config

    return get_peft_config(config.model_args)


def check_model_args(model_args: Any, source: str) -> None:
    """The ModelConfig settings brevity cannot honour, refused naming the key (train and sft)."""
    import importlib.util

    if model_args.dtype not in (*DTYPES, None):
        raise ConfigError(source, "dtype", f"expected one of {DTYPES}, got {model_args.dtype!r}")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        key = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
        raise ConfigError(
            source,
            key,
            "quantised (bitsandbytes) policies are not supported by brevity's rollout engines and weight sync",
        )
    if model_args.use_peft and importlib.util.find_spec("peft") is None:
        raise ConfigError(source, "use_peft", "needs the peft package: pip install peft")
