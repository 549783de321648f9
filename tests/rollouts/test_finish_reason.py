"""The finish-reason rule (`rollouts.types.finish_reason`) and the transformers engine honouring a model's extra EOS
ids (its generation config's `eos_token_id` list), on the tiny real model."""

from __future__ import annotations

import pytest
import torch

from rollouts.hf_engine import HFEngine
from rollouts.types import Request, SamplingParams, finish_reason

EOS, EXTRA = 2, 77


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        ([5, 6, 7, 8], "length"),  # the cap without an EOS
        ([5, 6, 7, EOS], "stop"),  # an EOS that is also the cap-th token
        ([5, EOS], "stop"),
        ([5, 6, EXTRA], "stop"),  # the model's extra EOS
        ([5, 6], "stop"),  # ended below the cap without an EOS (a stop string): not cut by the cap
        ([], "stop"),
        ([5, 6, 7, 8, 9], "length"),
    ],
)
def test_finish_reason_is_length_exactly_at_the_cap_without_eos(ids: list[int], reason: str) -> None:
    assert finish_reason(ids, (EOS, EXTRA), max_tokens=4) == reason


def test_transformers_engine_stops_on_the_generation_configs_extra_eos(tiny_model_path: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=3)
    prompt = [1, 5, 6, 7, 8, 9]
    plain = HFEngine(model, tokenizer=tokenizer).generate([Request(prompt, params)])[0][0]
    assert plain.finish_reason == "length" and len(plain.token_ids) == 8 and EOS not in plain.token_ids
    cut = next(k for k in range(1, 8) if plain.token_ids[k] not in plain.token_ids[:k])
    extra = plain.token_ids[cut]
    assert extra != tokenizer.eos_token_id

    model.generation_config.eos_token_id = [tokenizer.eos_token_id, extra]  # as a generation_config.json declares
    engine = HFEngine(model, tokenizer=tokenizer)
    assert engine.eos_token_ids == (tokenizer.eos_token_id, extra)
    stopped = engine.generate([Request(prompt, params)])[0][0]
    assert stopped.token_ids == plain.token_ids[: cut + 1]
    assert stopped.finish_reason == "stop"
    assert finish_reason(stopped.token_ids, engine.eos_token_ids, 8) == "stop"
    assert finish_reason(plain.token_ids, engine.eos_token_ids, 8) == "length"
