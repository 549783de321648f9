import pytest

from rollouts.templates import TEMPLATES, budget_text, render

PROBLEM = "Compute $\\frac{1}{2} + {x}$."  # braces must survive rendering


@pytest.mark.parametrize(
    ("name", "system", "user"),
    [
        ("plain", None, PROBLEM),
        ("boxed", None, PROBLEM + "\nPlease reason step by step, and put your final answer within \\boxed{}."),
        ("dler", None, PROBLEM + " Let's think step by step and output the final answer within \\boxed{}."),
        ("qwen_math", "Please reason step by step, and put your final answer within \\boxed{}.", PROBLEM),
    ],
)
def test_render_simple_templates(name: str, system: str | None, user: str) -> None:
    expected = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    assert render(name, PROBLEM) == expected


def test_think_template_is_r1_zero() -> None:
    system, user = render("think", PROBLEM)
    assert system["role"] == "system" and user == {"role": "user", "content": PROBLEM}
    assert system["content"].startswith("A conversation between User and Assistant.")
    assert "<think>reasoning process here</think> <answer>answer here</answer>." in system["content"]
    assert "IMPORTANT" not in system["content"]


def test_budget_slot_is_filled() -> None:
    system, user = render("budget", PROBLEM, budget=87)
    assert system["content"] == render("think", PROBLEM)[0]["content"] + " " + budget_text(87)
    assert budget_text(87) == "IMPORTANT: You should use exactly 87 tokens in your response."
    assert "{budget}" not in system["content"] and user["content"] == PROBLEM
    assert render("budget", PROBLEM, budget=256)[0]["content"].endswith("exactly 256 tokens in your response.")


def test_template_errors() -> None:
    with pytest.raises(ValueError, match="budget slot"):
        render("budget", PROBLEM)
    with pytest.raises(ValueError, match="no budget slot"):
        render("boxed", PROBLEM, budget=100)
    with pytest.raises(ValueError, match="positive int"):
        render("budget", PROBLEM, budget=0)
    with pytest.raises(ValueError, match="boxed.*budget.*dler"):
        render("nope", PROBLEM)
    assert {"plain", "boxed", "dler", "qwen_math", "think", "budget"} <= set(TEMPLATES)


def test_raw_templates_are_the_papers_plain_strings() -> None:
    """2508.08940 §3: "<instructions> IMPORTANT: You should use exactly {token budget} tokens in your response.
    User: {question} Assistant:", not wrapped in a chat template."""
    from rollouts.templates import R1_ZERO_SYSTEM

    text = render("budget_raw", PROBLEM, budget=87)
    assert text == f"{R1_ZERO_SYSTEM} {budget_text(87)} User: {PROBLEM} Assistant:"
    assert render("budget_raw", PROBLEM, keep_slot=True).count("{budget}") == 1
    assert render("think_raw", PROBLEM) == f"{R1_ZERO_SYSTEM} User: {PROBLEM} Assistant:"
    assert TEMPLATES["budget_raw"].has_budget_slot and not TEMPLATES["think_raw"].has_budget_slot


def test_encode_prompt_wraps_only_chat_messages(smollm2_path: str) -> None:
    from transformers import AutoTokenizer

    from rollouts.templates import encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    raw = encode_prompt(tokenizer, render("think_raw", PROBLEM))
    assert tokenizer.decode(raw) == render("think_raw", PROBLEM)
    chat = tokenizer.decode(encode_prompt(tokenizer, render("think", PROBLEM)))
    assert chat.startswith("<|im_start|>system") and chat.endswith("<|im_start|>assistant\n")
