"""Whole weights for a rollout engine while training shards them (DeepSpeed ZeRO-3, FSDP2).

The engines decode with whole weights. Unsharded (DDP, ZeRO-1/2) the transformers engine runs on the live policy
itself; sharded, each rank keeps one unsharded copy of the policy (`full_copy`) and loads the current weights into it
once per optimizer step from `full_state`, which gathers one tensor at a time: a rank never holds more than the copy
plus one gathered parameter. Gathering is a collective, so every rank must walk `full_state` to the end, together.
Names are plain Hugging Face state-dict names, as TRL's vLLM weight sync sends them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any, cast

import torch
from torch import nn

# Wrappers that insert a path component (activation checkpointing, FSDP1's flat-parameter unit); TRL strips the same.
WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")


def clean_name(name: str) -> str:
    """The Hugging Face name of a parameter seen through wrapper modules."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def plain_class(model: nn.Module) -> type[nn.Module]:
    """The model's own class: FSDP2's `fully_shard` swaps in a subclass `FSDP<Name>(FSDPModule, <Name>)`."""
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(model).__mro__ if issubclass(c, nn.Module) and not issubclass(c, FSDPModule))


def _gathered(tensor: torch.Tensor) -> Any:
    """A context that makes a ZeRO-3 partitioned parameter whole (none for other tensors)."""
    if hasattr(tensor, "ds_id"):  # DeepSpeed marks its partitioned parameters with ds_* attributes
        import deepspeed

        return deepspeed.zero.GatheredParameters([tensor])
    return nullcontext()


def full_state(model: nn.Module, device: torch.device | str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, whole tensor) for each state-dict entry of `model`, gathered one at a time.

    FSDP2 parameters are DTensors (`full_tensor()` all-gathers one); ZeRO-3 parameters are gathered by DeepSpeed
    for as long as the consumer holds the item (copy it before asking for the next); other tensors pass as they are.
    Tied weights appear under each of their names, like `state_dict()`. `device`: where CPU-offloaded shards are
    moved before gathering (the collective runs on the training device).
    """
    from torch.distributed.tensor import DTensor

    for name, tensor in model.state_dict(keep_vars=True).items():
        name = clean_name(name)
        if isinstance(tensor, DTensor):
            if tensor.is_cpu and device is not None and torch.device(device).type != "cpu":
                tensor = cast(DTensor, tensor.to(device))
            with torch.no_grad():  # closed before the yield: grad mode must not leak into the consumer
                full = tensor.full_tensor()
            yield name, full
            continue
        with _gathered(tensor):
            yield name, tensor.detach()


def full_copy(model: nn.Module, device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    """An unsharded, frozen model of `model`'s class and config on `device`: buffers copied (FSDP2 and ZeRO-3 leave
    them whole), weights left uninitialised (fill them with `full_state`). The class is called directly:
    `from_config` would build it under ZeRO-3's `zero.Init` and partition the copy too."""
    from transformers.initialization import no_init_weights

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():
            clone = plain_class(model)(copy.deepcopy(model.config))
    finally:
        torch.set_default_dtype(previous)
    for name, buffer in model.named_buffers():  # non-persistent ones (RoPE inv_freq) are in no state dict
        owner, _, leaf = clean_name(name).rpartition(".")
        clone.get_submodule(owner)._buffers[leaf] = buffer.detach().to(device).clone()
    if getattr(model, "generation_config", None) is not None:
        clone.generation_config = copy.deepcopy(model.generation_config)
    tie_weights = getattr(clone, "tie_weights", None)
    if callable(tie_weights):
        tie_weights()
    clone.requires_grad_(False)
    return clone.eval()
