"""Update-selective merging (DLER §4.6): top-k selection, per-tensor vs global, the `brevity merge` CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rl.merge as merge_mod
from rl.merge import main, update_selective_merge


def test_keeps_top_quarter_scaled() -> None:
    base = {"w": torch.ones(8)}
    delta = torch.tensor([1.0, -8.0, 3.0, -2.0, 7.0, 5.0, -6.0, 4.0])
    tuned = {"w": base["w"] + delta}
    merged = update_selective_merge(base, tuned, keep=0.25, scale=0.7)
    # k = ceil(0.25 · 8) = 2 -> |Δ| top 2 are −8 and 7: θ = 1 + 0.7·[0, −8, 0, 0, 7, 0, 0, 0]
    expected = torch.tensor([1.0, 1 - 5.6, 1.0, 1.0, 1 + 4.9, 1.0, 1.0, 1.0])
    torch.testing.assert_close(merged["w"], expected)
    assert torch.equal(base["w"], torch.ones(8))  # inputs untouched


def test_per_tensor_vs_global() -> None:
    base = {"a": torch.zeros(4), "b": torch.zeros(2, 2)}
    tuned = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([[10.0, 20.0], [30.0, 40.0]])}
    per = update_selective_merge(base, tuned, keep=0.25, scale=1.0)
    torch.testing.assert_close(per["a"], torch.tensor([0.0, 0.0, 0.0, 4.0]))
    torch.testing.assert_close(per["b"], torch.tensor([[0.0, 0.0], [0.0, 40.0]]))
    # global: k = ceil(0.25 · 8) = 2 over both tensors -> 30 and 40 of b, nothing of a
    glob = update_selective_merge(base, tuned, keep=0.25, scale=1.0, per_tensor=False)
    torch.testing.assert_close(glob["a"], torch.zeros(4))
    torch.testing.assert_close(glob["b"], torch.tensor([[0.0, 0.0], [30.0, 40.0]]))


@pytest.mark.parametrize("per_tensor", [True, False])
def test_exact_count_on_random_tensors_across_chunks(monkeypatch: pytest.MonkeyPatch, per_tensor: bool) -> None:
    monkeypatch.setattr(merge_mod, "_CHUNK", 37)  # many chunks per tensor
    gen = torch.Generator().manual_seed(0)
    shapes = {"x": (30, 20), "y": (7,), "z": (5, 3, 4)}
    base = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    # magnitudes across many binades, both signs, so both radix passes matter
    tuned = {
        n: t + torch.randn(t.shape, generator=gen) * 10.0 ** torch.randint(-6, 3, t.shape, generator=gen)
        for n, t in base.items()
    }
    merged = update_selective_merge(base, tuned, keep=0.25, scale=0.7, per_tensor=per_tensor)
    changed = {n: merged[n] != base[n] for n in shapes}
    deltas = {n: (tuned[n] - base[n]).abs() for n in shapes}
    if per_tensor:
        for n in shapes:
            k = -(-deltas[n].numel() // 4)  # ceil(numel / 4)
            assert int(changed[n].sum()) == k
            assert torch.equal(changed[n].flatten(), deltas[n].flatten() >= deltas[n].flatten().topk(k).values[-1])
    else:
        flat = torch.cat([deltas[n].flatten() for n in shapes])
        k = -(-flat.numel() // 4)
        assert sum(int(c.sum()) for c in changed.values()) == k
        threshold = flat.topk(k).values[-1]
        for n in shapes:
            assert torch.equal(changed[n], deltas[n] >= threshold)
    for n in shapes:
        torch.testing.assert_close(merged[n], base[n] + 0.7 * (tuned[n] - base[n]) * changed[n])


def test_ties_keep_all_and_keep_one_is_full_update() -> None:
    base, tuned = {"w": torch.zeros(4)}, {"w": torch.ones(4)}
    torch.testing.assert_close(update_selective_merge(base, tuned, keep=0.25, scale=0.5)["w"], torch.full((4,), 0.5))
    tuned = {"w": torch.tensor([1.0, -2.0, 3.0, 0.0])}
    torch.testing.assert_close(update_selective_merge(base, tuned, keep=1.0, scale=1.0)["w"], tuned["w"])


def test_dtypes_and_non_float_tensors() -> None:
    base = {"w": torch.zeros(4, dtype=torch.float32), "steps": torch.tensor([1, 2])}
    tuned = {"w": torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.bfloat16), "steps": torch.tensor([5, 6])}
    merged = update_selective_merge(base, tuned, keep=0.25, scale=0.5)
    assert merged["w"].dtype == torch.bfloat16
    torch.testing.assert_close(merged["w"], torch.tensor([0.0, 0.0, 0.0, 2.0], dtype=torch.bfloat16))
    assert torch.equal(merged["steps"], tuned["steps"]) and merged["steps"] is not tuned["steps"]


def test_errors_name_the_problem() -> None:
    base, tuned = {"w": torch.zeros(4)}, {"w": torch.ones(4)}
    for keep in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="keep"):
            update_selective_merge(base, tuned, keep=keep)
    with pytest.raises(ValueError, match=r"layers\.0\.weight"):
        update_selective_merge({"layers.0.weight": torch.zeros(2, 3)}, {"layers.0.weight": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="extra"):
        update_selective_merge(base, {**tuned, "extra": torch.zeros(1)})


def _tiny_llama(path: Path, seed: int, dtype: torch.dtype, layers: int = 2, intermediate: int = 64) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).to(dtype).save_pretrained(path)


def _tiny_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(62)}}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>").save_pretrained(path)


def test_cli_merges_two_tiny_models(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    base_dir, tuned_dir, out_dir = tmp_path / "base", tmp_path / "tuned", tmp_path / "out"
    _tiny_llama(base_dir, seed=0, dtype=torch.float32)
    _tiny_llama(tuned_dir, seed=1, dtype=torch.bfloat16)
    _tiny_tokenizer(tuned_dir)
    assert main([str(base_dir), str(tuned_dir), str(out_dir), "--keep", "0.25", "--scale", "0.7"]) == 0

    base = load_file(base_dir / "model.safetensors")
    tuned = load_file(tuned_dir / "model.safetensors")
    merged = load_file(out_dir / "model.safetensors")
    assert set(merged) == set(tuned)
    for name, t in tuned.items():
        assert merged[name].dtype == torch.bfloat16  # the tuned model's dtype
        delta = t.float() - base[name].float()
        k = -(-delta.numel() // 4)
        selected = delta.abs() >= delta.abs().flatten().topk(k).values[-1]
        expected = (base[name].float() + 0.7 * delta * selected).to(torch.bfloat16)
        assert torch.equal(merged[name], expected), name
    assert AutoTokenizer.from_pretrained(out_dir).convert_tokens_to_ids("w3") == 5


def test_cli_missing_folders_fail_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing_base, missing_tuned = tmp_path / "no-base", tmp_path / "no-tuned"
    assert main([str(missing_base), str(missing_tuned), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(missing_base) in err and str(missing_tuned) in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "t").mkdir()
    assert main([str(tmp_path / "b"), str(tmp_path / "t"), str(tmp_path / "out"), "--keep", "0"]) == 2
    assert "--keep" in capsys.readouterr().err


@pytest.mark.parametrize("scale", ["0", "-0.5", "1.5", "nan"])
def test_cli_scale_out_of_range_is_refused(tmp_path: Path, scale: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), str(tmp_path), str(tmp_path / "out"), "--scale", scale]) == 2
    assert "--scale must be in (0, 1]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scale"):
        update_selective_merge({"w": torch.zeros(2)}, {"w": torch.ones(2)}, scale=float(scale))


@pytest.mark.parametrize(
    ("base_kwargs", "expected"),
    [
        ({"layers": 3}, r"only in base: model\.layers\.2\."),  # a layer the tuned model lacks is never dropped
        (
            {"intermediate": 48},
            r"shapes differ \(base vs tuned\): model\.layers\.0\.mlp\.gate_proj\.weight \(48, 32\) vs \(64, 32\)",
        ),
    ],
)
def test_cli_architecture_mismatch_fails_before_writing(
    tmp_path: Path, base_kwargs: dict, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    base_dir, tuned_dir, out_dir = tmp_path / "base", tmp_path / "tuned", tmp_path / "out"
    _tiny_llama(base_dir, seed=0, dtype=torch.float32, **base_kwargs)
    _tiny_llama(tuned_dir, seed=1, dtype=torch.float32)
    capsys.readouterr()
    assert main([str(base_dir), str(tuned_dir), str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert re.search(expected, err) and " more" in err  # the first few names, and how many more
    assert "Traceback" not in err and [line for line in err.splitlines() if "error" in line] == [err.splitlines()[-1]]
    assert not out_dir.exists()


def test_cli_bad_folders_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, not_model = tmp_path / "model", tmp_path / "empty"
    _tiny_llama(model, seed=0, dtype=torch.float32)
    not_model.mkdir()
    capsys.readouterr()
    assert main([str(model), str(not_model), str(tmp_path / "out")]) == 2
    assert "not a Hugging Face model folder" in capsys.readouterr().err
    assert main([str(model), str(model), str(model)]) == 2
    err = capsys.readouterr().err
    assert "must differ from the input folders" in err and err.count("\n") == 1
