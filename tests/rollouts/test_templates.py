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
