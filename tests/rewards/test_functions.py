"""Reward functions called the way TRL 1.16's GRPOTrainer calls them, graded by the real grader (no mocks)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from transformers import TrainerState

from rewards import REWARDS, make_reward
from rewards.correctness import Correctness, completion_text
from rewards.format import AnswerFormat, AnswerTagFormat, ThinkFormat
from rewards.length_rewards import (
    BudgetBand,
    BudgetTriangular,
    PolylineLength,
    RiseFallLength,
    SoftOverlong,
    Truncation,
)
from rewards.schedules import Constant, StepwiseExponential
from tests.rewards.user_reward_example import ContainsWord, length_bonus

PAPER_SCHEDULE = StepwiseExponential(start=256, end=87, total_steps=600, n_drops=3)
USER_MODULE = "tests.rewards.user_reward_example"


def ids(n: int) -> list[int]:
    return list(range(n))


def trl_kwargs(step: int = 0, **columns: Any) -> dict[str, Any]:
    """The extra kwargs TRL adds besides prompts/completions/completion_ids."""
    return {"trainer_state": TrainerState(global_step=step), "log_extra": None, "log_metric": None, **columns}


# --- completion text -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("plain \\boxed{1}", "plain \\boxed{1}"),
        ([{"role": "assistant", "content": "chat \\boxed{1}"}], "chat \\boxed{1}"),
        (
            [{"role": "assistant", "content": "\\boxed{4}", "reasoning_content": "2+2"}],
            "<think>\n2+2\n</think>\n\n\\boxed{4}",
        ),
        (
            [
                {"role": "assistant", "content": "call"},
                {"role": "tool", "content": "result"},
                {"role": "assistant", "content": None},
            ],
            "call\n",
        ),
    ],
)
def test_completion_text(completion: Any, text: str) -> None:
    assert completion_text(completion) == text


# --- correctness -----------------------------------------------------------------------------------------------------

TEXTS = ["The answer is \\boxed{12}.", "So it is \\boxed{13}.", "no box here", "Thus \\boxed{\\frac{1}{2}}."]
REFS = ["12", "12", "12", "0.5"]


def test_correctness_strings() -> None:
    assert Correctness()(prompts=["q"] * 4, completions=TEXTS, completion_ids=None, **trl_kwargs(answer=REFS)) == [
        1.0,
        0.0,
        0.0,
        1.0,
    ]


def test_correctness_chat_messages_and_options() -> None:
    chat = [[{"role": "assistant", "content": t}] for t in TEXTS]
    assert Correctness()(completions=chat, **trl_kwargs(answer=REFS)) == [1.0, 0.0, 0.0, 1.0]
    assert Correctness(answer_column="solution")(completions=TEXTS[:2], solution=["13", "13"]) == [0.0, 1.0]
    # a list of accepted answers, and a non-string reference
    assert Correctness()(completions=TEXTS[:2], answer=[["10", "12"], 13]) == [1.0, 1.0]


def test_correctness_missing_column_names_it() -> None:
    with pytest.raises(
        ValueError, match=r"needs the dataset column 'answer'; columns passed: \['problem', 'solution'\]"
    ):
        Correctness()(completions=TEXTS[:1], **trl_kwargs(solution=["12"], problem=["p"]))


def test_column_size_mismatch() -> None:
    with pytest.raises(ValueError, match="has 1 values for 2 completions"):
        Correctness()(completions=TEXTS[:2], answer=["12"])


# --- format ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "require_open_tag", "expected"),
    [
        ("<think>2+2=4</think> 4", True, 1.0),
        ("<think>\nok\n</think>\n\nThe answer is \\boxed{4}.", True, 1.0),
        ("<think>2+2=4</think>", True, 0.0),  # no answer after the block
        ("<think>2+2=4</think>  \n", True, 0.0),
        ("<think>2+2=4", True, 0.0),  # never closed (truncated)
        ("2+2=4</think> 4", True, 0.0),
        ("2+2=4</think> 4", False, 1.0),  # template put <think> in the prompt
        ("<think>a</think></think> 4", False, 0.0),
        ("<think><think>a</think> 4", False, 0.0),
        ("<think>a</think> 4 <think>b", False, 0.0),
    ],
)
def test_think_format(text: str, require_open_tag: bool, expected: float) -> None:
    assert ThinkFormat(require_open_tag=require_open_tag)(completions=[text]) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>x</think><answer>4</answer>", 1.0),
        ("<think>x</think>\n<answer> 4 </answer>\n", 1.0),
        ("<answer>4</answer>", 1.0),
        ("<think>x</think><answer> </answer>", 0.0),
        ("<think><answer>4</answer>", 0.0),  # inside an unclosed think block
        ("<think>x<answer>4</answer></think> done", 0.0),
        ("<answer>4</answer><answer>5</answer>", 0.0),
        ("</answer>4<answer>", 0.0),
    ],
)
def test_answer_tag_format(text: str, expected: float) -> None:
    assert AnswerTagFormat()(completions=[text]) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the paper's valid / invalid examples (2505.19439 App. A.8)
        ("So \\boxed{1}", 1.0),
        ("So \\boxed{\\frac{3}{2}}", 1.0),
        ("So \\boxed{x^2 + 12y = 1}", 1.0),
        ("So \\boxed{(0,\\infty)}", 1.0),
        ("So \\boxed{}", 0.0),
        ("So \\boxed{x +* 2}", 0.0),
        ("So \\boxed{(0,1 }", 0.0),
        ("no answer at all", 0.0),
    ],
)
def test_answer_format(text: str, expected: float) -> None:
    assert AnswerFormat()(completions=[text]) == [expected]


# --- unfinished completions are never correct (issue 13, item 1) -----------------------------------------------------

# R1-distill templates end the generation prompt with "<think>\n": the completion only closes the block.
BOXED_WHILE_THINKING = "Let me try 12: 6*2 = 12, so \\boxed{12} maybe. Wait"
ANSWERED = "6*2 = 12.\n</think>\n\nThe answer is \\boxed{12}."


@pytest.mark.parametrize(
    ("text", "opens", "finish", "expected"),
    [
        (BOXED_WHILE_THINKING, True, "length", 0.0),  # the reproduced bug: a box inside unfinished thinking
        (BOXED_WHILE_THINKING, True, "stop", 0.0),  # still thinking: no answer even if the model stopped
        (BOXED_WHILE_THINKING, False, "stop", 1.0),  # no think block anywhere: the whole text is the answer
        (ANSWERED, True, "stop", 1.0),
        (ANSWERED, True, "length", 0.0),  # cut at the length cap after boxing: still unfinished
        (ANSWERED, False, "stop", 1.0),
    ],
)
def test_correctness_unfinished_is_never_correct(text: str, opens: bool, finish: str, expected: float) -> None:
    kwargs = trl_kwargs(answer=["12"], finish_reason=[finish], prompt_opens_think=[opens])
    assert Correctness()(completions=[text], completion_ids=[ids(5)], **kwargs) == [expected]


def test_correctness_truncated_is_wrong_is_configurable() -> None:
    kwargs = trl_kwargs(answer=["12"], finish_reason=["length"], prompt_opens_think=[True])
    assert Correctness(truncated_is_wrong=False)(completions=[ANSWERED], **kwargs) == [1.0]
    # an open think block is never answered, whatever the truncation setting
    assert Correctness(truncated_is_wrong=False)(completions=[BOXED_WHILE_THINKING], **kwargs) == [0.0]


def test_dler_and_correctness_agree_on_an_r1_template() -> None:
    """The reproduced case: correctness said 1.0 where DLER's reward said 0.0 for a length-capped trace."""
    kwargs = trl_kwargs(answer=["12"], finish_reason=["length"], prompt_opens_think=[True])
    batch = {"completions": [BOXED_WHILE_THINKING], "completion_ids": [ids(50)]}
    assert Correctness()(**batch, **kwargs) == [0.0]
    assert Truncation(target_length=100, stop_properly_scale=0.1)(**batch, **kwargs) == [0.0]


def test_format_rewards_read_the_think_block_the_prompt_opened() -> None:
    kwargs = {"prompt_opens_think": [True, True]}
    texts = ["reasoning</think> <answer>12</answer>", "reasoning, never closed <answer>12</answer>"]
    assert ThinkFormat()(completions=texts, **kwargs) == [1.0, 0.0]
    assert AnswerTagFormat()(completions=texts, **kwargs) == [1.0, 0.0]
    assert AnswerFormat()(completions=[BOXED_WHILE_THINKING, ANSWERED], **kwargs) == [0.0, 1.0]


def test_truncation_reads_the_answer_after_the_first_think_close() -> None:
    """DLER's fork: `model_response.split("</think>")[1]`, not the text after the last `</think>`."""
    text = "think</think> The answer is \\boxed{12}. </think> Actually \\boxed{13}."
    batch = {"completions": [text], "completion_ids": [ids(10)], "finish_reason": ["stop"]}
    assert Truncation(target_length=100)(**batch, answer=["12"]) == [1.0]
    assert Truncation(target_length=100)(**batch, answer=["13"]) == [0.0]


# --- DLER truncation -------------------------------------------------------------------------------------------------

RIGHT = "<think>6*2</think> The answer is \\boxed{12}."
WRONG = "<think>6*2</think> The answer is \\boxed{13}."


@pytest.mark.parametrize(
    ("text", "length", "finish", "scale", "expected"),
    [
        (RIGHT, 3000, "stop", 0.0, 1.0),
        (RIGHT, 4000, "stop", 0.0, 1.0),  # L = L_T still counts
        (RIGHT, 4001, "stop", 0.0, 0.0),  # finished but over the target
        (RIGHT, 4001, "stop", 0.1, 0.0),  # the stop-properly scale does not rescue over-target
        (RIGHT, 3000, "length", 0.0, 0.0),  # hit the cap: paper gives 0
        (RIGHT, 3000, "length", 0.1, 0.1),  # authors' code keeps 10%
        (WRONG, 100, "stop", 0.1, 0.0),
        (WRONG, 100, "length", 0.1, 0.0),
    ],
)
def test_truncation_with_finish_reason(text: str, length: int, finish: str, scale: float, expected: float) -> None:
    reward = Truncation(target_length=4000, stop_properly_scale=scale)
    out = reward(completions=[text], completion_ids=[ids(length)], **trl_kwargs(answer=["12"], finish_reason=[finish]))
    assert out == [pytest.approx(expected)]


def test_truncation_max_tokens_fallback() -> None:
    reward = Truncation(target_length=4000, max_tokens=4000)
    batch = {"completions": [RIGHT, RIGHT, WRONG], "completion_ids": [ids(3999), ids(4000), ids(10)]}
    assert reward(**batch, answer=["12"] * 3) == [1.0, 0.0, 0.0]
    assert Truncation(target_length=4000, max_tokens=4000, stop_properly_scale=0.1)(**batch, answer=["12"] * 3) == [
        1.0,
        pytest.approx(0.1),
        0.0,
    ]


def test_truncation_requires_think_close_by_default() -> None:
    batch = {"completions": ["The answer is \\boxed{12}."], "completion_ids": [ids(10)], "finish_reason": ["stop"]}
    assert Truncation(target_length=100)(**batch, answer=["12"]) == [0.0]  # DLER code: no </think> = format error
    assert Truncation(target_length=100, require_think_close=False)(**batch, answer=["12"]) == [1.0]


def test_truncation_errors() -> None:
    with pytest.raises(ValueError, match="needs `completion_ids`"):
        Truncation(target_length=10, max_tokens=10)(completions=[RIGHT], answer=["12"])
    with pytest.raises(ValueError, match="finish_reason"):
        Truncation(target_length=10)(completions=[RIGHT], completion_ids=[ids(5)], answer=["12"])
    with pytest.raises(ValueError, match="stop_properly_scale"):
        Truncation(target_length=10, stop_properly_scale=2.0)
    with pytest.raises(ValueError, match="answer_format must be one of"):
        Truncation(target_length=10, answer_format="latex")


# --- curriculum budget rewards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "lengths", "expected"),
    [
        (0, [128, 256, 384, 512], [0.5, 1.0, 0.5, 0.0]),  # B = 256
        (150, [0, 179, 358], [0.0, 1.0, 0.0]),  # B = 179
        (450, [0, 29, 87, 174, 200], [0.0, 1 / 3, 1.0, 0.0, 0.0]),  # B = 87
    ],
)
def test_budget_triangular_from_schedule(step: int, lengths: list[int], expected: list[float]) -> None:
    reward = BudgetTriangular(schedule=PAPER_SCHEDULE)
    out = reward(completions=["x"] * len(lengths), completion_ids=[ids(n) for n in lengths], **trl_kwargs(step))
    assert out == pytest.approx(expected)


def test_budget_rewards_from_column() -> None:
    batch = {"completions": ["x"] * 3, "completion_ids": [ids(50), ids(150), ids(150)]}
    budget = [100, 100, 200]
    assert BudgetTriangular()(**batch, **trl_kwargs(budget=budget)) == pytest.approx([0.5, 0.5, 0.75])
    assert BudgetBand()(**batch, **trl_kwargs(budget=budget)) == pytest.approx([1.0, 0.5, 1.0])
    # a per-sample column wins over the schedule; r_max scales
    assert BudgetBand(schedule=7, r_max=2.0)(**batch, **trl_kwargs(budget=budget)) == pytest.approx([2.0, 1.0, 2.0])


def test_budget_schedule_forms_and_metric() -> None:
    assert BudgetTriangular(schedule={"type": "constant", "budget": 100}) == BudgetTriangular(schedule=Constant(100))
    assert BudgetBand(schedule=100) == BudgetBand(schedule=Constant(100))
    logged: list[tuple[str, float]] = []
    kwargs = trl_kwargs(450)
    kwargs["log_metric"] = lambda name, value: logged.append((name, value))
    BudgetBand(schedule=PAPER_SCHEDULE)(completions=["x"], completion_ids=[ids(10)], **kwargs)
    assert logged == [("budget_band/budget", 87.0)]


def test_budget_think_scope() -> None:
    reward = BudgetTriangular(schedule=4, think_end_token_id=7)
    # L counts the 2 tokens before </think> (id 7), or everything when it is missing
    assert reward(completion_ids=[[1, 2, 7, 4, 5], [1, 2, 3, 4, 5]], **trl_kwargs()) == [0.5, 0.75]


def test_budget_errors() -> None:
    with pytest.raises(ValueError, match="needs a budget"):
        BudgetTriangular()(completion_ids=[ids(3)], **trl_kwargs())
    schedule = {"type": "linear", "start": 100, "end": 50, "total_steps": 10, "n_drops": 1}
    with pytest.raises(ValueError, match="trainer_state"):
        BudgetTriangular(schedule=schedule)(completion_ids=[ids(3)])
    # a fixed budget is the same at every step, so a hand call needs no trainer state
    assert BudgetTriangular(schedule=4)(completion_ids=[ids(2)]) == [0.5]
    with pytest.raises(ValueError, match="a schedule must be"):
        BudgetTriangular(schedule="linear")
    with pytest.raises(ValueError, match="needs `completion_ids`"):
        BudgetBand(schedule=100)(completions=["x"], **trl_kwargs())


# --- surrogate length rewards ----------------------------------------------------------------------------------------

VALID, INVALID = "Hence \\boxed{1}.", "I am not sure."


@pytest.mark.parametrize(
    ("cls", "text", "length", "gate", "expected"),
    [
        (RiseFallLength, VALID, 250, True, 0.75),
        (RiseFallLength, VALID, 500, True, 1.0),
        (RiseFallLength, VALID, 1000, True, -1.0),
        (RiseFallLength, INVALID, 250, True, 0.0),  # malformed: only a penalty can pass the gate
        (RiseFallLength, INVALID, 1000, True, -1.0),
        (RiseFallLength, INVALID, 250, False, 0.75),
        (PolylineLength, VALID, 250, True, 0.5),
        (PolylineLength, VALID, 750, True, 0.0),
        (PolylineLength, VALID, 875, True, -0.5),
        (PolylineLength, INVALID, 250, True, 0.0),
        (PolylineLength, INVALID, 875, True, -0.5),
        (PolylineLength, INVALID, 250, False, 0.5),
    ],
)
def test_surrogate_length(cls: type, text: str, length: int, gate: bool, expected: float) -> None:
    reward = cls(max_tokens=1000, format_gate=gate)
    assert reward(completions=[text], completion_ids=[ids(length)], **trl_kwargs()) == [pytest.approx(expected)]


def test_format_length_combination_matches_paper_eq5() -> None:
    """answer_format + rise_fall_length = R_f + R_l when the format is right, else min(0, R_l)."""
    completions, completion_ids = [VALID, INVALID, INVALID], [ids(250), ids(250), ids(900)]
    r_f = AnswerFormat()(completions=completions)
    r_l = RiseFallLength(max_tokens=1000)(completions=completions, completion_ids=completion_ids)
    assert [f + length for f, length in zip(r_f, r_l)] == pytest.approx([1.75, 0.0, 1 - 2 * 0.8**2])


def test_soft_overlong() -> None:
    reward = SoftOverlong(max_tokens=100, cache=20)
    assert reward(completion_ids=[ids(80), ids(90), ids(100)], **trl_kwargs()) == [0.0, -0.5, -1.0]


# --- pickling, names, make_reward ------------------------------------------------------------------------------------

REWARD_OBJECTS = [
    Correctness(),
    Correctness(answer_column="solution", answer_format="boxed", timeout=3.0),
    ThinkFormat(require_open_tag=False),
    AnswerTagFormat(),
    AnswerFormat(),
    Truncation(target_length=50, max_tokens=60, stop_properly_scale=0.1),
    BudgetTriangular(schedule=PAPER_SCHEDULE),
    BudgetBand(schedule={"type": "linear", "start": 256, "end": 87, "total_steps": 600, "n_drops": 3}),
    RiseFallLength(max_tokens=64),
    PolylineLength(max_tokens=64, p=0.25, format_gate=False),
    SoftOverlong(max_tokens=64, cache=16),
]
PICKLE_BATCH: dict[str, Any] = {
    "prompts": ["q1", "q2", "q3"],
    "completions": ["<think>a</think> \\boxed{12}", "<think>b</think> \\boxed{7}", "<think>c"],
    "completion_ids": [ids(10), ids(40), ids(70)],
    "answer": ["12", "12", "12"],
    "solution": ["7", "7", "7"],
    "finish_reason": ["stop", "stop", "length"],
    **trl_kwargs(300),
}


@pytest.mark.parametrize("reward", REWARD_OBJECTS, ids=lambda r: r.__name__)
def test_pickle_round_trip(reward: Any) -> None:
    clone = pickle.loads(pickle.dumps(reward))
    assert clone == reward
    assert clone.__name__ == reward.__name__
    out = reward(**PICKLE_BATCH)
    assert clone(**PICKLE_BATCH) == out
    assert len(out) == 3 and all(type(x) is float for x in out)


MIN_PARAMS: dict[str, dict[str, Any]] = {
    "truncation": {"target_length": 10},
    "rise_fall_length": {"max_tokens": 10},
    "polyline_length": {"max_tokens": 10},
    "soft_overlong": {"max_tokens": 10, "cache": 2},
    "hard_limit": {"schedule": 10},
    "solve_rate_length": {"beta": 0.5, "normalizer": 10},
}


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_make_reward_by_name_logs_under_that_name(name: str) -> None:
    reward = make_reward(name, **MIN_PARAMS.get(name, {}))
    assert reward.__name__ == name  # TRL logs rewards/<__name__>/mean
    assert reward.__doc__ and "Example" in reward.__doc__


def test_make_reward_dotted_paths() -> None:
    assert make_reward(f"{USER_MODULE}:length_bonus") is length_bonus
    assert make_reward(f"{USER_MODULE}.length_bonus") is length_bonus
    word = make_reward(f"{USER_MODULE}:ContainsWord", word="boxed")
    assert isinstance(word, ContainsWord)
    assert word(completions=["\\boxed{1}", "nothing"], completion_ids=[[1], [2]]) == [1.0, 0.0]
    assert make_reward("truncation", target_length=4000, max_tokens=4000) == Truncation(4000, max_tokens=4000)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("nope", {}, r"unknown reward 'nope'; known rewards: \['answer_format', 'answer_tag_format', 'budget_band'"),
        ("correctness", {"answer_colum": "x"}, r"unknown parameter\(s\) \['answer_colum'\] for reward 'correctness'"),
        ("soft_overlong", {"max_tokens": 10}, r"reward 'soft_overlong' needs parameter\(s\) \['cache'\]"),
        (f"{USER_MODULE}:length_bonus", {"scale": 2}, "is a function, so it takes no parameters"),
        (f"{USER_MODULE}:NOT_CALLABLE", {}, "is not callable"),
        (f"{USER_MODULE}:missing", {}, "has no attribute 'missing'"),
        ("no_such_package.module:fn", {}, "cannot import module 'no_such_package.module'"),
    ],
)
def test_make_reward_errors(name: str, params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_reward(name, **params)
