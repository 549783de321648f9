"""Tests for rewards.grading: extraction, normalisation, equivalence, timeouts (thread, spawn worker), cache."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from rewards import grading
from rewards.grading import (
    Grade,
    extract_after_think,
    extract_answer,
    extract_tag,
    grade,
    is_equivalent,
    is_valid_math,
    last_boxed,
    normalize_answer,
    reference_answer,
)

# The answer text of the first row of the GSM8K test split.
GSM8K_FIRST = (
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
    "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmer\u2019s market.\n#### 18"
)
SLACK = 1.5  # seconds allowed past the timeout (kill + reply, loaded 2-core machine)
PATHOLOGICAL = "\\boxed{(x+y+z+w)^{40}}"  # sympy expands this for minutes; no cheap guard catches it
TOWER = "\\boxed{9^{9^{9^{9}}}}"


def boxed(ans: str) -> str:
    return f"<think>working it out</think>\nSo the answer is $\\boxed{{{ans}}}$."


@pytest.fixture(scope="module", autouse=True)
def _warm_helper() -> None:
    """Start the helper once, so timing assertions do not include its start-up."""
    assert is_equivalent("2\\sqrt{3}", "\\sqrt{12}")


# (response, reference, correct): each row is one grader case with the default "boxed" format.
GRADE_CASES = [
    # fractions
    (boxed("\\frac{1}{2}"), "0.5", True),
    (boxed("0.5"), "\\frac{1}{2}", True),
    (boxed("1/2"), "\\frac{1}{2}", True),
    (boxed("\\dfrac{1}{2}"), "1/2", True),
    (boxed("\\tfrac12"), "0.5", True),
    (boxed("\\frac{2}{4}"), "\\frac{1}{2}", True),
    (boxed("-\\frac{3}{4}"), "-0.75", True),
    (boxed("\\frac{1}{3}"), "\\frac{1}{2}", False),
    (boxed("0.33"), "\\frac{1}{3}", False),
    (boxed("1/3"), "0.33", False),
    # decimals
    (boxed("0.50"), "0.5", True),
    (boxed("3.0"), "3", True),
    (boxed("3.01"), "3", False),
    (boxed(".5"), "0.5", True),
    # LaTeX / symbolic
    (boxed("\\sqrt{2}"), "\\sqrt{2}", True),
    (boxed("\\sqrt2"), "\\sqrt{2}", True),
    (boxed("2\\sqrt{3}"), "\\sqrt{12}", True),
    (boxed("\\pi"), "\\pi", True),
    (boxed("3.14"), "\\pi", False),
    (boxed("2\\pi"), "\\pi", False),
    (boxed("\\frac{\\sqrt{3}}{2}"), "\\frac{\\sqrt3}{2}", True),
    (boxed("1+x^2"), "x^2+1", True),
    (boxed("x^2-1"), "(x-1)(x+1)", True),
    (boxed("x^2+1"), "x^2-1", False),
    # sets and intervals
    (boxed("\\{1,2\\}"), "\\{2,1\\}", True),
    (boxed("{1,2}"), "{2,1}", True),
    (boxed("\\{1,3\\}"), "\\{1,2\\}", False),
    (boxed("(0,1]"), "(0,1]", True),
    (boxed("[0,1]"), "(0,1]", False),
    (boxed("\\left( 0, 1 \\right]"), "(0,1]", True),
    (boxed("(1,2)"), "(1,2)", True),
    # thousands separators
    (boxed("1,234"), "1234", True),
    (boxed("1234"), "1,234", True),
    (boxed("1,000,000"), "1000000", True),
    (boxed("1{,}000"), "1000", True),
    (boxed("1,2"), "12", False),
    # negatives
    (boxed("-5"), "-5", True),
    (boxed("\u22125"), "-5", True),
    (boxed("- 5"), "-5", True),
    (boxed("5"), "-5", False),
    # units, dollars
    (boxed("5 cm"), "5", True),
    (boxed("5 \\text{ cm}"), "5", True),
    (boxed("5\\text{ cm}^2"), "5", True),
    (boxed("18 \\text{ dollars}"), "18", True),
    (boxed("\\$18"), "18", True),
    ("The total is $18. Final: \\boxed{\\$18.00}", "18", True),
    (boxed("18 dollars"), "18", True),
    (boxed("x = 5"), "5", True),
    # only a top-level `name =` prefix is stripped, never an `=` inside a sub/superscript
    (boxed("\\sum_{n=1}^{100} n"), "5050", True),
    (boxed("\\prod_{k=1}^{5} k"), "120", True),
    (boxed("\\sum_{n=1}^{100} n"), "5051", False),
    (boxed("x_{1} = 7"), "7", True),
    (boxed("S = \\sum_{n=1}^{3} n"), "6", True),
    # degrees and percent
    (boxed("90^\\circ"), "90", True),
    (boxed("90^{\\circ}"), "90", True),
    (boxed("90\u00b0"), "90", True),
    (boxed("90 degrees"), "90", True),
    (boxed("50\\%"), "50", True),
    (boxed("50%"), "50\\%", True),
    # several boxes: only the last counts
    ("First \\boxed{3}, then I realise it is \\boxed{4}.", "4", True),
    ("First \\boxed{3}, then I realise it is \\boxed{4}.", "3", False),
    # nested / unbalanced braces, \fbox, space form
    ("\\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{\\frac{1}{2}", "0.5", False),
    ("\\boxed{3} and finally \\boxed{\\frac{1}{2}", "3", False),
    ("\\fbox{7}", "7", True),
    ("The answer is \\boxed 7", "7", True),
    # think blocks
    ("<think>I guess \\boxed{18}", "18", False),
    ("<think>maybe \\boxed{17}</think> The answer is \\boxed{18}.", "18", True),
    ("<think>maybe \\boxed{18}</think> The answer is \\boxed{17}.", "18", False),
    ("<think>maybe \\boxed{18}</think> I do not know.", "18", False),
    ("reasoning</think> \\boxed{18}", "18", True),
    # GSM8K references
    (boxed("18"), GSM8K_FIRST, True),
    (boxed("17"), GSM8K_FIRST, False),
    (boxed("\\$18"), GSM8K_FIRST, True),
    (boxed("1,234"), "so...\n#### 1,234", True),
    (boxed("18"), "\\boxed{18}", True),
    # no answer
    ("The answer is 18.", "18", False),
    ("", "18", False),
    (boxed(""), "18", False),
    # multiple choice
    (boxed("B"), "B", True),
    (boxed("(B)"), "B", True),
    (boxed("b"), "B", True),
    (boxed("\\text{B}"), "B", True),
    (boxed("\\textbf{(C)}"), "C", True),
    (boxed("(C) 12"), "C", True),
    (boxed("C"), "B", False),
    (boxed("12"), "B", False),
]


@pytest.mark.parametrize(("response", "reference", "correct"), GRADE_CASES)
def test_grade_boxed(response: str, reference: str, correct: bool) -> None:
    result = grade(response, reference)
    assert result.correct is correct, result
    assert not result.timed_out


def test_enough_grader_cases() -> None:
    assert len(GRADE_CASES) >= 60


@pytest.mark.parametrize(
    ("response", "answer_format", "reference", "correct", "answer"),
    [
        ("<answer>42</answer>", "answer_tag", "42", True, "42"),
        ("<answer>41</answer> blah <answer> 42 </answer>", "answer_tag", "42", True, "42"),
        ("<answer>The result is \\boxed{\\frac12}.</answer>", "answer_tag", "0.5", True, "\\frac12"),
        ("\\boxed{42}", "answer_tag", "42", False, None),
        ("<answer>42", "answer_tag", "42", False, None),
        ("<think><answer>42</answer>", "answer_tag", "42", False, None),
        ("<answer>42</answer>", "boxed", "42", False, None),
        ("\\boxed{42} <answer>41</answer>", "any", "42", True, "42"),
        ("<answer>42</answer> and 41", "any", "42", True, "42"),
        ("So she makes 9 * 2 = 18 dollars.", "any", "18", True, "18"),
        ("It costs $1,234.", "any", "1234", True, "1,234"),
        ("The change is -5 degrees", "any", "-5", True, "-5"),
        ("No numbers at all", "any", "18", False, None),
        ("<think>it is 18", "any", "18", False, None),
    ],
)
def test_answer_formats(response: str, answer_format: str, reference: str, correct: bool, answer: str | None) -> None:
    result = grade(response, reference, answer_format=answer_format)
    assert (result.correct, result.answer) == (correct, answer)


def test_unknown_format_raises() -> None:
    with pytest.raises(ValueError):
        grade("\\boxed{1}", "1", answer_format="latex")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{5}", "5"),
        ("a \\boxed{1} b \\fbox{2}", "2"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed {7}", "7"),
        ("\\boxed 7$", "7"),
        ("\\boxed{1", None),
        ("no box", None),
        ("\\boxed{}", ""),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_think_and_tag_helpers() -> None:
    assert extract_after_think("a</think>b</think>c") == "c"
    assert extract_after_think("<think>abc") is None
    assert extract_tag("<answer>1</answer><answer>2</answer>") == "2"
    assert extract_tag("<final>3</final>", "final") == "3"
    assert extract_tag("<answer>1") is None
    assert extract_answer("<think>\\boxed{1}") is None
    assert extract_answer("<think>x</think>\\boxed{1}<think>\\boxed{2}") == "1"


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (GSM8K_FIRST, "18"),
        ("blah\n#### 1,234", "1234"),
        ("42", "42"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}"),
        ("So the answer is $\\boxed{5}$.", "5"),
    ],
)
def test_reference_answer(reference: str, expected: str) -> None:
    assert reference_answer(reference) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$5$", "5"),
        ("5 \\text{ cm}", "5"),
        ("5 cm", "5"),
        ("5 dollars", "5"),
        ("\\$5", "5"),
        ("90^\\circ", "90"),
        ("90^{\\circ}", "90"),
        ("45\\%", "45"),
        ("1,000,000", "1000000"),
        ("(1,2)", "(1,2)"),
        ("\\{1, 2\\}", "\\{1,2\\}"),
        ("\\left(1,2\\right)", "(1,2)"),
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),
        ("\\frac34", "\\frac{3}{4}"),
        ("5.", "5"),
        ("x = 5", "5"),
        ("\\theta = 30^\\circ", "30"),
        ("x_1 = 5", "5"),
        ("x_{12} = 5", "5"),
        ("f(x) = 2x", "2x"),
        ("\\sum_{n=1}^{100} n", "\\sum_{n=1}^{100}n"),
        ("\\prod_{k=1}^{5} k", "\\prod_{k=1}^{5}k"),
        ("\\sum_n = 3", "\\sum_n=3"),
        ("a_{n=1}", "a_{n=1}"),
        ("1\\,000", "1000"),
        ("  - 5  ", "-5"),
        ("\\pi r^2", "\\pi r^2"),
        ("2x", "2x"),
        ("10 \\pi", "10\\pi"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_multiple_references() -> None:
    assert grade(boxed("7"), ["6", "7"]).correct
    result = grade(boxed("8"), ["6", "7"])
    assert not result.correct and result.reference == "6"
    assert grade(boxed("\\frac{1}{2}"), ("0.25", "0.5")).reference == "0.5"
    assert not grade(boxed("7"), []).correct


@pytest.mark.parametrize(
    ("expr", "valid"),
    [
        ("\\frac{1}{2}", True),
        ("x^2+1", True),
        ("42", True),
        ("\\sqrt{2}+\\pi", True),
        ("hello world", False),
        ("", False),
        ("\\text{hello}", False),
        ("The answer is 5", False),
    ],
)
def test_is_valid_math(expr: str, valid: bool) -> None:
    assert is_valid_math(expr) is valid


def test_cache_returns_same_grade() -> None:
    first = grade(boxed("2\\sqrt{3}"), "\\sqrt{12}")
    again = grade(boxed("2\\sqrt{3}"), "\\sqrt{12}")
    assert first == again == Grade(correct=True, answer="2\\sqrt{3}", reference="\\sqrt{12}")
    assert again is first  # served from the LRU cache


def test_thousand_numeric_gradings_are_fast() -> None:
    grading._grade.cache_clear()
    grading._equivalent.cache_clear()
    start = time.perf_counter()
    results = [grade(f"<think>{i} + 1</think> so \\boxed{{{i + i % 2}}}.", f"...\n#### {i:,}") for i in range(1000)]
    elapsed = time.perf_counter() - start
    assert sum(r.correct for r in results) == 500
    assert elapsed < 3.0, elapsed


# ---------------------------------------------------------------------------------------------------------------
# Never hangs
# ---------------------------------------------------------------------------------------------------------------


def _timed_grade(response: str, reference: str, timeout: float) -> tuple[Grade, float]:
    start = time.monotonic()
    result = grade(response, reference, timeout=timeout)
    return result, time.monotonic() - start


def _uncached_timed_grade(response: str, reference: str, timeout: float) -> tuple[Grade, float]:
    grading._grade.cache_clear()
    grading._equivalent.cache_clear()
    return _timed_grade(response, reference, timeout)


def test_exponent_tower_rejected_quickly() -> None:
    result, elapsed = _uncached_timed_grade(TOWER, "5", 1.0)
    assert not result.correct and result.answer == "9^{9^{9^{9}}}"
    assert elapsed < 0.5
    tower_2 = grade("\\boxed{10^{10^{10^{10}}}}", "10^{10^{10^{10}}}")
    assert tower_2.correct  # same string: no evaluation needed
    assert not grade("\\boxed{(10^{7})!}", "5", timeout=1.0).correct


def test_pathological_expression_times_out() -> None:
    result, elapsed = _uncached_timed_grade(PATHOLOGICAL, "5", 1.0)
    assert result == Grade(correct=False, answer="(x+y+z+w)^{40}", reference="5", timed_out=True)
    assert elapsed < 1.0 + SLACK
    # The helper survived (or was replaced): ordinary grading still works.
    assert grade(boxed("\\sqrt{8}"), "2\\sqrt{2}").correct


def test_timeout_inside_thread() -> None:
    out: dict[str, tuple[Grade, float]] = {}
    worker = threading.Thread(target=lambda: out.update(r=_uncached_timed_grade(PATHOLOGICAL, "6", 1.0)))
    worker.start()
    worker.join(1.0 + SLACK + 5)
    assert not worker.is_alive()
    result, elapsed = out["r"]
    assert not result.correct and result.timed_out
    assert elapsed < 1.0 + SLACK


def _worker_check(_: int) -> tuple[bool, bool, bool, float]:
    """Run in a daemonic spawn-pool worker: warm up, then time a pathological grading there."""
    ok = grade("\\boxed{\\frac{1}{2}}", "0.5").correct and grade("\\boxed{2\\sqrt{2}}", "\\sqrt{8}").correct
    result, elapsed = _timed_grade(PATHOLOGICAL, "7", 1.0)
    daemon = multiprocessing.current_process().daemon
    return ok and daemon, result.correct, result.timed_out, elapsed


def test_timeout_inside_spawn_pool_worker() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        ok, correct, timed_out, elapsed = pool.apply_async(_worker_check, (0,)).get(timeout=60)
    assert ok and not correct and timed_out
    assert elapsed < 1.0 + SLACK


def test_helper_killed_and_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client stops waiting before the helper's own alarm: it must kill it and carry on with a new one."""
    monkeypatch.setattr(grading, "_KILL_GRACE", -0.5)
    old = grading._State.helper
    result, elapsed = _uncached_timed_grade(PATHOLOGICAL, "8", 1.0)
    assert result.timed_out and not result.correct
    assert elapsed < 0.5 + SLACK
    assert old is not None and old.proc.poll() is not None  # killed
    monkeypatch.undo()
    assert grade(boxed("\\sqrt{18}"), "3\\sqrt{2}").correct


def test_thread_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the helper, math-verify runs in a thread: same results, and a slow check is abandoned in time."""
    monkeypatch.setattr(grading._State, "disabled", True)
    grading._equivalent.cache_clear()
    assert is_equivalent("\\sqrt{12}", "2\\sqrt{3}")
    assert not is_equivalent("\\sqrt{12}", "3\\sqrt{2}")
    assert is_valid_math("x^2+1")
    # ~1 s of sympy work: the thread is abandoned after 0.2 s and finishes in the background.
    result, elapsed = _uncached_timed_grade("\\boxed{(x+1)^{200}}", "5", 0.2)
    assert result.timed_out and not result.correct
    assert elapsed < 0.2 + SLACK
    for thread in threading.enumerate():  # let the abandoned thread finish before later tests (fork)
        if thread.name == "brevity-grading":
            thread.join(30)


def _forked_child_grades(queue: multiprocessing.Queue) -> None:
    grading._equivalent.cache_clear()
    queue.put(is_equivalent("\\sqrt{27}", "3\\sqrt{3}"))


def test_fork_child_gets_its_own_helper() -> None:
    assert grading._State.helper is not None
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_forked_child_grades, args=(queue,))
    child.start()
    assert queue.get(timeout=60) is True
    child.join(10)
    grading._equivalent.cache_clear()
    assert is_equivalent("\\sqrt{50}", "5\\sqrt{2}")  # the parent's helper is untouched


def test_odd_inputs_do_not_raise() -> None:
    assert grade(None, "5") == Grade(correct=False, answer=None, reference="5")  # type: ignore[arg-type]
    assert not grade("\\boxed{5}", [None, "6"]).correct  # type: ignore[list-item]
    assert not is_equivalent("x" * 5000, "y")
    assert not is_valid_math(None)  # type: ignore[arg-type]
    assert not grade("\\boxed{" + "{" * 3000 + "}" * 3000 + "}", "5").correct
