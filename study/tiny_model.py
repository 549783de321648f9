"""A character tokenizer fitted to the study's text and a small Llama trained from scratch (the `tiny` preset).

A 49k-entry vocabulary makes every step of a 135k-parameter model far too slow on 2 cores (the embedding and the
output layer dominate), so the `tiny` preset uses one token per printable ASCII character plus a few whole tokens
for the markup every trace repeats (`<think>`, `</think>`, `<answer>`, `</answer>`, `\\boxed{`) and the words of
the warm start's redundancy (`We need `, ` check `, ` again `), so a step costs its digits. Any text still
encodes (each other character is its own token, unknown ones map to `<unk>`), so rewards, S-GRPO's inducer and
eval's templates need nothing special.

The chat template renders what a toy model can use: the user turn as is, a newline, then the assistant turn. A system
turn is dropped, except the token budget of the curriculum's `budget` template, which becomes `budget 87\\n` before
the question so that B(t) is visible to the model (a 135k-parameter model cannot read the R1-zero instructions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["CHAT_TEMPLATE", "MARKUP", "build_tokenizer", "init_model"]

MARKUP = ("<think>", "</think>", "<answer>", "</answer>", "\\boxed{", "We need ", " check ", " again ")
EOS, PAD, UNK = "<|im_end|>", "<pad>", "<unk>"

CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' and 'tokens in your response' in m['content'] -%}"
    "{{ 'budget ' ~ m['content'].split('exactly ')[-1].split(' tokens')[0] ~ '\n' }}"
    "{%- elif m['role'] == 'user' -%}{{ m['content'] ~ '\n' }}"
    "{%- elif m['role'] == 'assistant' -%}{{ m['content'] ~ '" + EOS + "' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def build_tokenizer() -> Any:
    """A `PreTrainedTokenizerFast` with one token per character and whole tokens for the trace markup."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in (PAD, EOS, UNK)])
    # Markup is ordinary text (kept by skip_special_tokens decoding, seen by graders), one token each.
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in MARKUP])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=UNK, clean_up_tokenization_spaces=False
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def init_model(
    tokenizer: Any, *, hidden_size: int = 64, layers: int = 2, heads: int = 4, max_positions: int = 512, seed: int = 0
) -> Any:
    """A randomly initialised `LlamaForCausalLM` sized to the tokenizer (tied embeddings), in float32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_base(out: str | Path, **model_kwargs: Any) -> Path:
    """Write the tokenizer and a freshly initialised model to `out` (a normal HF folder every tool loads)."""
    out = Path(out)
    tokenizer = build_tokenizer()
    model = init_model(tokenizer, **model_kwargs)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
