"""The one definition of the thinking span (rewards/thinking.py): by id sequence, by decoded text, unclosed."""

from __future__ import annotations

import pytest

from rewards.thinking import ThinkSpan, opens_think, prompt_opens_think, think_span

VOCAB = {1: "Let", 2: " me", 3: " think.", 4: "</", 5: "think", 6: ">", 7: " 42", 8: ".</", 0: "<eos>"}
CLOSE = [4, 5, 6]  # "</think>" as the tokenizer encodes it alone


def decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


@pytest.mark.parametrize(
    ("ids", "kwargs", "expected"),
    [
        ([1, 2, 9, 7], {"close_ids": [9]}, ThinkSpan(2, 3, True)),  # a `</think>` token
        ([1, 2, 3, *CLOSE, 7], {"close_ids": CLOSE}, ThinkSpan(3, 6, True)),  # several BPE ids
        ([1, *CLOSE, 2, *CLOSE, 7], {"close_ids": CLOSE}, ThinkSpan(1, 4, True)),  # the first tag ends it
        ([1, 2, 3, 0], {"close_ids": CLOSE, "stop_ids": {0}}, ThinkSpan(3, 3, False)),  # unclosed: not the stop token
        ([1, 2, 3, 0], {"close_ids": CLOSE}, ThinkSpan(4, 4, False)),
        ([1, 8, 5, 6, 7], {"close_ids": CLOSE}, ThinkSpan(5, 5, False)),  # ".</" merged: the ids miss it
        ([1, 8, 5, 6, 7], {"close_ids": CLOSE, "decode": decode}, ThinkSpan(1, 4, True)),  # the text finds it
        ([1, 2, 3, *CLOSE, 7], {"decode": decode}, ThinkSpan(3, 6, True)),  # text and ids agree when aligned
        ([], {"close_ids": CLOSE, "decode": decode}, ThinkSpan(0, 0, False)),
    ],
)
def test_think_span(ids: list[int], kwargs: dict, expected: ThinkSpan) -> None:
    assert think_span(ids, **kwargs) == expected


def test_prompt_opens_think() -> None:
    assert opens_think("<|im_start|>assistant\n<think>\n")
    assert not opens_think("use <think></think> tags<|im_start|>assistant\n")
    assert not opens_think("no tags")
    vocab = {1: "<think>", 2: "</think>", 3: "x"}
    text = lambda ids: "".join(vocab[i] for i in ids)  # noqa: E731
    assert prompt_opens_think([3] * 40 + [1], text) and not prompt_opens_think([1] + [3] * 40, text, tail=16)
