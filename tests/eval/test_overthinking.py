"""Tokens after the first correct answer, counted by hand with the study's character tokenizer (one token per
character, one per markup string), and checked against grading every prefix of real BPE tokenisations."""

from __future__ import annotations

import math

import pytest

from eval.overthinking import first_correct_tokens, mark_first_correct, overthinking_stats, token_ends
from rewards.grading import grade
from study.tiny_model import build_tokenizer

# The study's verbose trace shape (study/traces.py): 4+5+3, restated, one re-check, a second pass.
TRACE = "<think>We need 4+5+3. 4+5=9. check 4+5=9. 9+3=12. again 4+5=9. 9+3=12.</think>\n<answer>\\boxed{12}</answer>"
# <think> | We need | 4+5+3. (6) | ' ' | 4+5=9. (6) | ' check ' | 4+5=9. (6) | ' ' | 9+3=12 (6)  -> 29 tokens to "12";
# . | ' again ' | 4+5=9. (6) | ' ' | 9+3=12. (7) | </think> | \n | <answer> | \boxed{ | 1 2 | } | </answer> -> 24 more
TRACE_TOKENS, FIRST_NUMBER, FIRST_BOX = 53, 29, 52


@pytest.fixture(scope="module")
def char_tokenizer():
    return build_tokenizer()


def _record(pid: str, i: int, completion: str, reference: str, correct: bool, tokens: int) -> dict:
    """A record in eval's samples schema (eval/samples.py RECORD_KEYS)."""
    return {
        "benchmark": "eval.jsonl",
        "problem_id": pid,
        "sample_index": i,
        "completion": completion,
        "num_tokens": tokens,
        "num_think_tokens": None,
        "answer": reference if correct else "0",
        "reference": reference,
        "correct": correct,
        "finish_reason": "stop",
    }


@pytest.mark.parametrize(
    ("answer_format", "first"),
    [
        ("any", FIRST_NUMBER),  # the first pass's running sum already is the answer
        ("boxed", FIRST_BOX),  # the box closes one token before </answer>
        ("answer_tag", TRACE_TOKENS),  # the tag closes at the very end: nothing after
    ],
)
def test_first_correct_tokens_by_hand(char_tokenizer, answer_format: str, first: int) -> None:
    assert token_ends(char_tokenizer, TRACE)[:3] == [7, 15, 16]  # "<think>", "We need ", "4"
    assert first_correct_tokens(TRACE, "12", char_tokenizer, answer_format) == (first, TRACE_TOKENS)


def test_an_answer_boxed_while_thinking_counts_and_a_wrong_one_does_not(char_tokenizer) -> None:
    text = "<think>\\boxed{11} no: \\boxed{12} yes</think>\\boxed{12}"
    # <think> | \boxed{ | 1 1 } | ' ' n o : ' ' | \boxed{ | 1 2 }  -> 1 + 1 + 3 + 5 + 1 + 3 = 14
    assert first_correct_tokens(text, "12", char_tokenizer, "boxed") == (14, len(token_ends(char_tokenizer, text)))


def test_overthinking_stats_by_hand(char_tokenizer) -> None:
    short = "<think>4+5=9.</think>\\boxed{9}"  # <think> | 4+5=9 (5) -> 6 to the answer; . </think> \boxed{ 9 } -> 11
    records = [
        _record("p1", 0, TRACE, "12", True, TRACE_TOKENS + 1),
        _record("p1", 1, "9+3=11. \\boxed{11}", "12", False, 15),  # wrong: never searched
        _record("p2", 0, short, "9", True, 12),
        _record("p2", 1, short, "9", True, 12),
    ]
    mark_first_correct(records, char_tokenizer, "any")
    assert [r.get("first_correct_tokens") for r in records] == [29, None, 6, 6]
    assert [r.get("retokenized_tokens") for r in records] == [53, None, 11, 11]
    stats = overthinking_stats(records)
    assert stats["samples"] == 3
    assert stats["tokens_after_first_correct"] == pytest.approx(34 / 3)  # (24 + 5 + 5) / 3
    assert stats["tokens_after_first_correct_median"] == 5.0
    assert stats["tokens_after_first_correct_p90"] == pytest.approx(20.2)  # numpy: 5, 5, 24 at q=0.9 -> 5 + 0.8 * 19
    assert stats["share_after_first_correct"] == pytest.approx(34 / 75)  # 34 / (53 + 11 + 11)
    assert stats["outcome_efficiency"] == pytest.approx((29 / 53 + 6 / 11 + 6 / 11) / 4)  # the wrong sample adds 0


def test_overthinking_stats_without_correct_samples() -> None:
    stats = overthinking_stats([_record("p", 0, "x", "1", False, 2)])
    assert stats["samples"] == 0 and stats["outcome_efficiency"] == 0.0
    assert math.isnan(stats["tokens_after_first_correct"]) and math.isnan(stats["share_after_first_correct"])


@pytest.mark.parametrize(
    ("text", "reference", "answer_format"),
    [
        ("Natalia sold 48/2 = 24 clips in May, 48+24 = 72 in all. Let me check: 72. So \\boxed{72}.", "72", "any"),
        (
            "Natalia sold 48/2 = 24 clips in May, 48+24 = 72 in all. So \\boxed{72} clips; let me check it.",
            "72",
            "boxed",
        ),
        (
            "<think>Is it \\boxed{70}? No, 48+24=72, \\boxed{72}. Check again.</think> <answer>72</answer>",
            "72",
            "boxed",
        ),
    ],
)
def test_matches_grading_every_prefix_with_a_bpe_tokenizer(smollm2_path: str, text, reference, answer_format) -> None:
    """The shortcut (grade only where the extracted answer changes) finds what grading every prefix finds."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    ends = token_ends(tokenizer, text)
    stripped = [text[:end].replace("<think>", " ").replace("</think>", " ") for end in ends]
    brute = next(n for n, p in enumerate(stripped, 1) if grade(p, reference, answer_format=answer_format).correct)
    assert first_correct_tokens(text, reference, tokenizer, answer_format) == (brute, len(ends))
    assert len(ends) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert brute < len(ends)  # each of these texts goes on after its first correct answer
