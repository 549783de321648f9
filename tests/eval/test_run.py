"""eval.run end to end on CPU: a real SmolLM2 evaluation, resume after a crash, the offline GSM8K path, bad input
named before any generation, refused resumes, budget sweeps without generating, and eval.compare on real runs.

The tiny random Qwen2 stands in for a model wherever a real SmolLM2 is not the point (its output is noise).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

import eval.run
import rollouts.engines
from eval.compare import cli as compare_cli
from eval.progress import SampleProgress
from eval.run import EvalConfig, evaluate, main
from eval.samples import RECORD_KEYS, opens_think, read_samples, slug, think_token_count
from rewards.grading import grade
from rollouts.data import load_problems
from rollouts.types import Completion

RG = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SUMMARY_KEYS = {
    "num_problems",
    "samples_per_problem",
    "accuracy",
    "accuracy_stderr",
    "pass_at_k",
    "maj_at_k",
    "tokens",
    "tokens_correct",
    "tokens_think",
    "truncation_rate",
    "accuracy_per_1k_tokens",
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/eval/conftest.py


class CountingEngine:
    """A real engine that counts its calls and requests and can crash on a chosen call."""

    def __init__(self, engine, fail_on_call: int | None = None) -> None:
        self.engine, self.fail_on_call, self.calls, self.requests = engine, fail_on_call, 0, 0

    def generate(self, requests):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("simulated crash")
        self.requests += len(requests)
        return self.engine.generate(requests)


@pytest.fixture
def engines(monkeypatch):
    """`use(fail_on_call=None)` makes eval.run's engines CountingEngines; they are appended to `made`."""
    made: list[CountingEngine] = []
    real = rollouts.engines.make_engine

    def use(fail_on_call: int | None = None) -> None:
        def make(name, model_path, **kwargs):
            made.append(CountingEngine(real(name, model_path, **kwargs), fail_on_call))
            return made[-1]

        monkeypatch.setattr(rollouts.engines, "make_engine", make)

    return made, use


@pytest.fixture
def no_generation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an engine was built")

    monkeypatch.setattr(rollouts.engines, "make_engine", refuse)


def _argv(model: str, out: Path, *extra: str) -> list[str]:
    return ["--model", model, "--out", str(out), "--engine", "transformers", *extra]


@pytest.fixture(scope="module")
def gsm8k_run(tiny_model_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the tiny model on the first two offline GSM8K problems (through the CLI)."""
    out = tmp_path_factory.mktemp("runs") / "gsm8k-tiny"
    assert main(_argv(tiny_model_path, out, "--benchmarks", "gsm8k", "--size", "2", "--max-tokens", "6")) == 0
    return out


def test_smollm2_on_reasoning_gym(smollm2_path: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = EvalConfig(
        model="smollm2-135m-instruct",  # the offline alias, resolved to the converted folder of `smollm2_path`
        benchmarks=[RG],
        out=str(out),
        size=4,
        max_tokens=32,
        temperature=0.0,
        answer_format="any",
        engine="transformers",
        batch_size=4,
        budget_cutoffs=[8, 16, 32],
        regrade_prefixes=True,
    )
    summary = evaluate(config)

    for name in ("config.json", "summary.json", "summary.md", f"samples/{slug(RG)}.jsonl"):
        assert (out / name).is_file(), name
    for png in ("accuracy_vs_tokens.png", "budget_sweep.png"):
        assert (out / png).read_bytes().startswith(PNG_MAGIC)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    s = summary["benchmarks"][RG]
    assert SUMMARY_KEYS | {"budget_sweep"} <= set(s)
    assert (s["num_problems"], s["samples_per_problem"], list(s["pass_at_k"])) == (4, 1, ["1"])
    assert summary["engine"] == "transformers" and summary["budget_sweep"]["method"] == "regraded_prefix"
    assert "| smollm2-135m-instruct/" in (out / "summary.md").read_text()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    problems = {p.id: p for p in load_problems(RG, size=4)}
    records = read_samples(out / "samples" / f"{slug(RG)}.jsonl")
    assert sorted(r["problem_id"] for r in records) == sorted(problems)
    for r in records:
        assert set(r) == set(RECORD_KEYS)
        assert r["sample_index"] == 0 and r["reference"] == problems[r["problem_id"]].answer
        assert r["finish_reason"] in ("stop", "length") and 1 <= r["num_tokens"] <= 32
        assert r["finish_reason"] == "stop" or r["num_tokens"] == 32
        # the completion is decoded without special tokens: a stopped sample lost its <|im_end|>
        retokenized = tokenizer(r["completion"], add_special_tokens=False)["input_ids"]
        assert len(retokenized) + (r["finish_reason"] == "stop") == r["num_tokens"]
        g = grade(r["completion"], r["reference"], answer_format="any")
        assert (r["correct"], r["answer"]) == (g.correct, g.answer)
    assert s["accuracy"] == sum(r["correct"] for r in records) / 4
    assert s["tokens"]["mean"] == sum(r["num_tokens"] for r in records) / 4
    assert s["truncation_rate"] == sum(r["finish_reason"] == "length" for r in records) / 4
    assert [p["cutoff"] for p in s["budget_sweep"]] == [8, 16, 32]
    assert s["budget_sweep"][-1]["accuracy"] == s["accuracy"]  # nothing is longer than 32 tokens


def test_resume_after_interruption(tiny_model_path: str, tmp_path: Path, engines) -> None:
    made, use = engines
    out = tmp_path / "run"
    config = {"model": tiny_model_path, "benchmarks": [RG], "out": str(out), "size": 3, "k": 2, "max_tokens": 5}
    config |= {"temperature": 1.0, "batch_size": 2, "engine": "transformers"}
    path = out / "samples" / f"{slug(RG)}.jsonl"

    use(fail_on_call=2)  # the first batch is written, the second crashes
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(EvalConfig(**config))
    first = read_samples(path)
    assert [(r["problem_id"], r["sample_index"]) for r in first] == [(first[0]["problem_id"], i) for i in (0, 1)]
    assert not (out / "summary.json").exists()
    with open(path, "a") as f:  # and the crash tore the line being written
        f.write('{"benchmark": "rg:chain_sum", "problem_id": "rg:cha')

    use()
    summary = evaluate(EvalConfig(**config))
    assert (made[-1].calls, made[-1].requests) == (2, 4)  # only the 4 missing samples, in 2 batches
    final = read_samples(path)
    keys = [(r["problem_id"], r["sample_index"]) for r in final]
    assert len(keys) == len(set(keys)) == 6
    assert final[:2] == first and path.read_text().endswith("}\n")
    assert summary["benchmarks"][RG]["samples_per_problem"] == 2

    engines_before = len(made)
    evaluate(EvalConfig(**config))  # finished: no engine is even built
    assert len(made) == engines_before and len(read_samples(path)) == 6


def test_engine_mode_reaches_the_engine_and_keeps_greedy_samples(tiny_model_path: str, tmp_path: Path, engines):
    """`--engine-mode static` (no compiling: what the study's GPU preset evaluates with) builds the transformers
    engine in that mode, and greedy samples are the same tokens as the default mode's."""
    made, use = engines
    use()
    config = {
        "model": tiny_model_path,
        "benchmarks": [RG],
        "size": 3,
        "k": 1,
        "max_tokens": 6,
        "engine": "transformers",
    }
    texts = {}
    for mode in ("auto", "static"):
        evaluate(EvalConfig(**config, out=str(tmp_path / mode), engine_mode=mode))
        texts[mode] = [
            (r["problem_id"], r["completion"]) for r in read_samples(tmp_path / mode / "samples" / f"{slug(RG)}.jsonl")
        ]
    assert [m.engine.mode for m in made] == ["dynamic", "static"]  # "auto" is dynamic on a CPU
    assert sorted(texts["static"]) == sorted(texts["auto"])


class InterruptedEngine:
    """The real engine, with Ctrl-C arriving after `after` samples of a batch have finished (mid-batch)."""

    def __init__(self, engine, after: int) -> None:
        self.engine, self.after, self.batches = engine, after, []

    def generate(self, requests, on_finish=None):
        self.batches.append(len(requests))
        finished = []

        def report(index, completion):
            on_finish(index, completion)
            finished.append(index)
            if len(finished) == self.after:
                raise KeyboardInterrupt

        return self.engine.generate(requests, on_finish=report)


def test_interrupted_eval_keeps_finished_samples_at_the_default_batch(
    tiny_model_path: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    made = []
    real = rollouts.engines.make_engine

    def make(name, model_path, **kwargs):
        made.append(InterruptedEngine(real(name, model_path, **kwargs), after=5))
        return made[-1]

    monkeypatch.setattr(rollouts.engines, "make_engine", make)
    out = tmp_path / "run"
    argv = _argv(tiny_model_path, out, "--benchmarks", RG, "--size", "12", "--k", "2", "--max-tokens", "4")
    argv += ["--temperature", "1.0"]
    assert main(argv) == 130
    assert made[-1].batches == [24]  # one batch of the default size (64) holds all 24 samples
    kept = read_samples(out / "samples" / f"{slug(RG)}.jsonl")
    assert len(kept) == 5
    assert "interrupted: 5 finished samples kept in" in capsys.readouterr().err

    made[-1].after = None
    monkeypatch.setattr(rollouts.engines, "make_engine", lambda *a, **k: made[0])
    assert main(argv) == 0
    assert made[0].batches == [24, 19]  # only the missing samples
    final = read_samples(out / "samples" / f"{slug(RG)}.jsonl")
    assert final[:5] == kept and len({(r["problem_id"], r["sample_index"]) for r in final}) == 24


class WholeBatchEngine:
    """An engine that hands back a batch only when all of it is done (like vLLM's), Ctrl-C on call `interrupt_on`."""

    def __init__(self, engine, interrupt_on: int | None) -> None:
        self.engine, self.interrupt_on, self.batches = engine, interrupt_on, []

    def generate(self, requests):
        self.batches.append(len(requests))
        if len(self.batches) == self.interrupt_on:
            raise KeyboardInterrupt
        return self.engine.generate(requests)


def test_interrupted_eval_keeps_whole_batch_engines_work(tiny_model_path: str, tmp_path: Path, monkeypatch, capsys):
    """Without mid-batch reports, calls start small (8) and grow while fast, so Ctrl-C at the default batch size (64)
    still keeps the first calls' samples."""
    made = []
    real = rollouts.engines.make_engine
    interrupt_on = [2, None]

    def make(name, model_path, **kwargs):
        made.append(WholeBatchEngine(real(name, model_path, **kwargs), interrupt_on.pop(0)))
        return made[-1]

    monkeypatch.setattr(rollouts.engines, "make_engine", make)
    monkeypatch.setattr(eval.run, "GROW_BELOW_S", 1e9)  # every call counts as fast, however loaded the machine
    out = tmp_path / "run"
    argv = _argv(tiny_model_path, out, "--benchmarks", RG, "--size", "12", "--k", "3", "--max-tokens", "4")
    assert main([*argv, "--temperature", "1.0"]) == 130
    assert made[0].batches == [8, 16]
    assert "interrupted: 8 finished samples kept in" in capsys.readouterr().err
    assert main([*argv, "--temperature", "1.0"]) == 0
    assert made[1].batches == [8, 16, 4]  # the 28 missing samples, growing again
    assert len(read_samples(out / "samples" / f"{slug(RG)}.jsonl")) == 36


def test_offline_gsm8k(gsm8k_run: Path) -> None:
    records = sorted(
        read_samples(gsm8k_run / "samples" / "gsm8k.jsonl"), key=lambda r: r["problem_id"]
    )  # finish order
    assert [(r["problem_id"], r["reference"]) for r in records][0] == ("gsm8k/test/0", "18")
    assert [r["problem_id"] for r in records] == ["gsm8k/test/0", "gsm8k/test/1"]
    assert all(1 <= r["num_tokens"] <= 6 for r in records)
    summary = json.loads((gsm8k_run / "summary.json").read_text())
    assert summary["benchmarks"]["gsm8k"]["num_problems"] == 2 and "warnings" not in summary


@pytest.fixture
def local_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "local.jsonl"
    path.write_text("".join(json.dumps({"question": f"{i} + 1 = ?", "answer": str(i + 1)}) + "\n" for i in range(3)))
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--benchmarks", "no_such_bench"], "unknown dataset spec 'no_such_bench'"),
        (["--model", "/no/such/model"], "/no/such/model"),
        (["--model", "no-such-alias"], "unknown model 'no-such-alias'"),
        (["--k", "0"], "--k must be >= 1"),
        (["--benchmarks", "{file}", "--columns", "prompt=question,answer=solution"], "column 'solution' (for answer)"),
        (["--benchmarks", "{file}"], "column 'prompt' (for prompt)"),
        (["--benchmarks", "gsm8k", "--columns", "prompt=question"], "--columns applies to local files"),
        (["--benchmarks", "champ@hub"], "no hub copy"),  # a DataSourceError, raised without touching a network
        (["--template", "budget"], "--budget N"),
        (["--budget-cutoffs", "0"], "--budget-cutoffs"),
        (["--engine", "vllm", "--engine-mode", "static"], "it does not apply to --engine vllm"),
    ],
)
def test_bad_input_named_before_generation(
    tiny_model_path, tmp_path, local_jsonl, no_generation, capsys, extra, message
) -> None:
    extra = [str(local_jsonl) if a == "{file}" else a for a in extra]
    model = [] if "--model" in extra else ["--model", tiny_model_path]
    argv = [*model, "--out", str(tmp_path / "run"), "--benchmarks", "gsm8k", "--size", "1", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_hub_model_named_before_generation(tmp_path, no_generation, monkeypatch, capsys) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests
    argv = ["--model", "nobody-here/no-such-model", "--benchmarks", "gsm8k", "--size", "1", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "model 'nobody-here/no-such-model' cannot be found" in capsys.readouterr().err


def test_local_file_with_columns(tiny_model_path, tmp_path, local_jsonl) -> None:
    out = tmp_path / "run"
    argv = _argv(
        tiny_model_path, out, "--benchmarks", str(local_jsonl), "--columns", "prompt=question", "--max-tokens", "2"
    )
    assert main(argv) == 0
    records = read_samples(out / "samples" / "local.jsonl")
    assert [(r["problem_id"], r["reference"]) for r in records] == [("0", "1"), ("1", "2"), ("2", "3")]


@pytest.mark.parametrize("change", [["--temperature", "0.7"], ["--max-tokens", "8"], ["--template", "plain"]])
def test_resume_with_other_settings_is_refused(gsm8k_run, tiny_model_path, no_generation, capsys, change) -> None:
    before = (gsm8k_run / "config.json").read_text()
    argv = _argv(tiny_model_path, gsm8k_run, "--benchmarks", "gsm8k", "--size", "2", "--max-tokens", "6", *change)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and change[0].lstrip("-").replace("-", "_") in err
    assert (gsm8k_run / "config.json").read_text() == before


def test_budget_sweep_without_generating(gsm8k_run, tiny_model_path, tmp_path, no_generation) -> None:
    out = tmp_path / "copy"
    shutil.copytree(gsm8k_run, out)
    argv = ["--benchmarks", "gsm8k", "--size", "2", "--max-tokens", "6", "--budget-cutoffs", "6", "3"]
    assert main(_argv(tiny_model_path, out, *argv)) == 0
    summary = json.loads((out / "summary.json").read_text())
    sweep = summary["benchmarks"]["gsm8k"]["budget_sweep"]
    assert [p["cutoff"] for p in sweep] == [3, 6] and summary["budget_sweep"]["method"] == "finished_within"
    assert sweep[1]["accuracy"] == summary["benchmarks"]["gsm8k"]["accuracy"]
    assert (out / "budget_sweep.png").read_bytes().startswith(PNG_MAGIC)
    assert "within a token cutoff" in (out / "summary.md").read_text()


def test_compare_two_real_runs(gsm8k_run, tiny_model_path, tmp_path, capsys) -> None:
    other = tmp_path / "short"
    argv = ["--benchmarks", "gsm8k", "--size", "2", "--max-tokens", "3", "--baseline", str(gsm8k_run)]
    assert main(_argv(tiny_model_path, other, *argv)) == 0
    short = json.loads((other / "summary.json").read_text())["benchmarks"]["gsm8k"]
    assert {"compression_ratio", "accuracy_delta"} <= set(short) and short["compression_ratio"] <= 1.0
    capsys.readouterr()

    assert compare_cli([str(gsm8k_run), str(other), "--out", str(tmp_path / "cmp")]) == 0
    text = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| gsm8k-tiny/gsm8k |" in text and "| short/gsm8k |" in text and "max_tokens" in text
    assert "after 1st correct" in text  # the efficiency table of runs that carry it
    assert (tmp_path / "cmp" / "comparison.png").read_bytes().startswith(PNG_MAGIC)
    assert compare_cli([str(gsm8k_run), str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: str):
    """SmolLM2's tokenizer, as the tiny model carries it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


class CannedEngine:
    """Answers every request with the same text: the think/answer-tag format a real model here will not produce."""

    def __init__(self, tokenizer, text: str) -> None:
        self.ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]

    def generate(self, requests):
        return [[Completion(list(self.ids), "stop")] for _ in requests]


def test_think_template_with_answer_tags(tiny_model_path, tokenizer, tmp_path, monkeypatch) -> None:
    text = "<think>Natalia sold 48/2 = 24 clips.</think> <answer>18</answer>"
    monkeypatch.setattr(rollouts.engines, "make_engine", lambda *a, **k: CannedEngine(tokenizer, text))
    config = EvalConfig(model=tiny_model_path, benchmarks=["gsm8k"], size=1, out=str(tmp_path), template="think")
    assert config.answer_format == "answer_tag"
    summary = evaluate(config)
    (record,) = read_samples(tmp_path / "samples" / "gsm8k.jsonl")
    think_end = text.index("</think>") + len("</think>")
    think_ids = tokenizer(text[:think_end], add_special_tokens=False)["input_ids"]
    assert (record["answer"], record["correct"], record["num_think_tokens"]) == ("18", True, len(think_ids))
    assert summary["benchmarks"]["gsm8k"]["tokens_think"]["mean"] == len(think_ids)


@pytest.mark.parametrize(
    ("text", "opened", "expected"),
    [
        ("no tags here", False, None),
        ("no tags: the prompt opened the block", True, "all"),
        ("<think>never closed", False, "all"),
        ("<think>a.</think>b", False, "through_close"),
        ("a.</think>b", True, "through_close"),
    ],
)
def test_think_token_count(tokenizer, text, opened, expected) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    count = think_token_count(ids, text, lambda x: tokenizer.decode(x, skip_special_tokens=True), opened)
    if expected == "through_close":
        assert tokenizer.decode(ids[:count]).endswith("</think>")
        assert not tokenizer.decode(ids[: count - 1]).endswith("</think>")
    else:
        assert count == (len(ids) if expected == "all" else None)
    prompt = tokenizer("<|im_start|>assistant\n<think>\n" if opened else "<|im_start|>assistant\n")["input_ids"]
    assert opens_think(tokenizer, prompt) is opened


def test_progress_lines_for_logs(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="brevity.eval"), SampleProgress(10, live=False, interval=3600) as p:
        p.benchmark("gsm8k", 6)
        p.advance(3, 300)  # within the interval: quiet
        p.advance(3, 300)  # the benchmark finished: one line
        p.benchmark("aime25", 4)
        p.advance(4, 40)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("gsm8k: 6/6 samples (all: 6/10), 600 tokens,") and "tok/s" in lines[0]
    assert lines[1].startswith("aime25: 4/4 samples (all: 10/10), 640 tokens,")
