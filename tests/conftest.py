"""Shared fixtures: the offline SmolLM2 folder and a tiny random Qwen2 (head_dim 64, as vLLM's CPU kernels need)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """The converted SmolLM2-135M-Instruct folder (converted once into the brevity cache)."""
    from rollouts.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_path(smollm2_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random Qwen2 with SmolLM2's tokenizer and chat template, built here (no download)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (Path(smollm2_path) / name).is_file():
            shutil.copy(Path(smollm2_path) / name, out / name)
    return str(out)


def redraw_weights(model: Any, seed: int, std: float = 0.2) -> None:
    """Re-draw all non-norm weights. The std-0.02 init gives near-uniform logits whose greedy output repeats one token,
    which would make continuation and weight-update checks vacuous; std 0.2 gives varied greedy output."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


@pytest.fixture(scope="session")
def peaked_model_path(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny Qwen2 with std-0.2 weights (`redraw_weights`), saved with its tokenizer: for vLLM checks."""
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-qwen2-peaked")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    redraw_weights(model, seed=0)
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (Path(tiny_model_path) / name).is_file():
            shutil.copy(Path(tiny_model_path) / name, out / name)
    return str(out)
