"""The study's task: seeded problems, warm-start traces whose redundancy is as drawn, exact answers, known minimum."""

from __future__ import annotations

import json
import random
import re

import pytest

from rewards.grading import grade
from study.data import write_study_data
from study.tiny_model import build_tokenizer
from study.traces import Redundancy, SumTask, make_problem, minimal_trace, verbose_trace


def test_minimal_trace_holds_every_running_sum_and_the_answer():
    assert minimal_trace((47, 85, 12)) == "<think>47+85=132. 132+12=144.</think>\n<answer>\\boxed{144}</answer>"


def test_verbose_trace_counts_follow_the_seeded_draws():
    terms = (47, 85, 12, 30)
    red = Redundancy(restate=0.5, max_checks=2, second_pass=0.5)
    text, restated, checks, second = verbose_trace(terms, red, random.Random(7))
    # the same draws, made by hand in the generator's order
    rng = random.Random(7)
    assert restated == (rng.random() < 0.5)
    assert checks == tuple(rng.randint(0, 2) for _ in range(3))
    assert second == (rng.random() < 0.5)
    thinking = text.split("</think>")[0]
    assert thinking.count("We need 47+85+12+30.") == int(restated)
    for step, n in zip(["47+85=132.", "132+12=144.", "144+30=174."], checks):
        assert thinking.count(f"check {step}") == n
        assert thinking.count(step) == 1 + n + int(second)  # the step, its re-checks, the second pass
    assert thinking.count("again ") == int(second)
    assert text.endswith("<answer>\\boxed{174}</answer>")


@pytest.mark.parametrize("redundancy", [Redundancy(0.0, 0, 0.0), Redundancy(1.0, 2, 1.0)])
def test_every_trace_is_graded_correct_and_the_minimal_is_never_longer(redundancy):
    task = SumTask(min_terms=2, max_terms=5, redundancy=redundancy)
    for i in range(50):
        p = make_problem(task, 3, i)
        assert p.answer == sum(p.terms) and p.prompt == "+".join(map(str, p.terms)) + "=?"
        assert 2 <= len(p.terms) <= 5 and all(10 <= t <= 99 for t in p.terms)
        for trace in (p.minimal, p.verbose):
            assert grade(trace, str(p.answer)).correct
            assert grade(trace, str(p.answer), answer_format="answer_tag").correct
        assert len(p.minimal) <= len(p.verbose)
        if redundancy.max_checks == 0 and redundancy.restate == 0 and redundancy.second_pass == 0:
            assert p.verbose == p.minimal


def test_problems_are_a_pure_function_of_seed_and_index():
    task = SumTask()
    assert make_problem(task, 1, 5) == make_problem(task, 1, 5)
    assert make_problem(task, 1, 5).terms != make_problem(task, 2, 5).terms
    assert len(make_problem(task, 1, 5, n_terms=5).terms) == 5


def test_bad_task_settings_are_refused():
    with pytest.raises(ValueError, match="min_terms"):
        SumTask(min_terms=3, max_terms=2)
    with pytest.raises(ValueError, match="restate"):
        Redundancy(restate=1.5)


def test_study_data_holds_out_the_eval_problems(tmp_path):
    info = write_study_data(
        tmp_path, SumTask(min_terms=2, max_terms=3), seed=0, sft=3000, train=500, eval=60, hard=40, hard_terms=3
    )
    assert info["rows"] == {"eval": 60, "hard": 40, "sft": 3000, "train": 500}
    rows = {
        name: [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()] for name in info["rows"]
    }
    held_out = {r["prompt"] for r in rows["eval"] + rows["hard"]}
    assert not held_out & {r["prompt"] for r in rows["sft"]}
    assert not held_out & {r["prompt"] for r in rows["train"]}
    assert all(r["terms"] == 3 for r in rows["hard"])
    assert all(grade(r["minimal"], r["answer"]).correct for r in rows["eval"])
    assert info["warm_start_overthinking_chars"] > 1.5  # the default redundancy over-thinks by a known factor
    # a new seed gives new problems
    write_study_data(tmp_path / "s1", SumTask(), seed=1, sft=10, train=10, eval=60, hard=10, hard_terms=3)
    other = {json.loads(x)["prompt"] for x in (tmp_path / "s1" / "eval.jsonl").read_text().splitlines()}
    assert other != {r["prompt"] for r in rows["eval"]}


def test_character_tokenizer_round_trips_and_keeps_markup_whole():
    tok = build_tokenizer()
    text = make_problem(SumTask(), 0, 1).verbose
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    for markup in ("<think>", "</think>", "<answer>", "\\boxed{"):
        assert len(tok(markup, add_special_tokens=False)["input_ids"]) == 1
    assert len(tok("12+34=46.", add_special_tokens=False)["input_ids"]) == 9  # one token per character
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "12+34=?"}, {"role": "assistant", "content": "x"}], tokenize=False
    )
    assert chat == "12+34=?\nx<|im_end|>"
    budget = tok.apply_chat_template(
        [
            {"role": "system", "content": "Think. IMPORTANT: You should use exactly 87 tokens in your response."},
            {"role": "user", "content": "1+2=?"},
        ],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert budget == "budget 87\n1+2=?\n"
    assert re.fullmatch(r"[\x20-\x7e\n]*", tok.decode(list(range(len(tok))), skip_special_tokens=True))
