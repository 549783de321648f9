import json
import sys
from pathlib import Path

import pytest

from rollouts.data import BENCHMARKS, DataSourceError, load_problems


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make hub loads fail at once; the offline flags are read at import, so patch them if already imported."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BREVITY_DATA_SOURCE", raising=False)
    if "huggingface_hub" in sys.modules:
        monkeypatch.setattr(sys.modules["huggingface_hub"].constants, "HF_HUB_OFFLINE", True)
    if "datasets" in sys.modules:
        monkeypatch.setattr(sys.modules["datasets"].config, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("task", ["basic_arithmetic", "gsm_symbolic", "chain_sum"])
def test_rg_is_seeded_and_scoreable(task: str) -> None:
    import reasoning_gym

    first, again, other = (load_problems(f"rg:{task}", size=5, seed=s) for s in (0, 0, 1))
    assert len(first) == 5 and first == again and first != other
    score = reasoning_gym.get_score_answer_fn(task)
    for p in first:
        assert p.metadata["task"] == task and p.answer == p.metadata["rg_entry"]["answer"]
        assert score(p.answer, p.metadata["rg_entry"]) == 1.0


def test_rg_options_reach_the_task_config() -> None:
    problems = load_problems("rg:chain_sum?min_terms=2&max_terms=2&min_digits=2&max_digits=2", size=20)
    for p in problems:
        a, op, b = p.metadata["rg_entry"]["metadata"]["expression"].split()
        assert op in "+-" and 10 <= int(a) <= 99 and 10 <= int(b) <= 99
    adds = load_problems("rg:basic_arithmetic?max_terms=2&operators=+&allow_parentheses=false", size=10)
    assert all("-" not in p.prompt and "*" not in p.prompt for p in adds)  # "+" kept, not read as a space


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("rg:chain_sums", "unknown reasoning-gym task 'chain_sums'.*chain_sum"),
        ("rg:chain_sum?bogus=1", "bogus=1.*max_digits"),
        ("rg:chain_sum?min_terms=3&max_terms=2", "max_terms must be >= min_terms"),
    ],
)
def test_rg_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_problems(spec, size=2)


def test_gsm8k_offline() -> None:
    problems = load_problems("gsm8k")
    assert len(problems) == 1319
    first = problems[0]
    assert first.prompt.startswith("Janet’s ducks lay 16 eggs per day")
    assert first.answer == "18" and first.metadata["solution"].endswith("#### 18")
    assert all("," not in p.answer for p in problems)  # "#### 1,600" -> "1600"
    assert [p.id for p in load_problems("gsm8k", size=3)] == [p.id for p in problems[:3]]


def test_aime25_offline() -> None:
    problems = load_problems("aime25")
    assert len(problems) == 30 and problems[0].answer == "70"
    assert all(p.answer.isdigit() for p in problems)  # II-5 ships as "336^\circ"
    assert {p.metadata["part"] for p in problems} == {"I", "II"}


def test_champ_offline() -> None:
    problems = load_problems("champ")
    assert len(problems) == 270 and problems[0].answer == "239"
    assert "@@" not in problems[0].prompt and problems[0].metadata["category"] == "Combinatorics"


def test_local_jsonl_and_parquet_with_column_mapping(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"What is {i} + {i}?", "solution": 2 * i, "uid": f"q{i}"} for i in range(4)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    columns = {"prompt": "question", "answer": "solution", "id": "uid"}
    for name in ("d.jsonl", "d.parquet"):
        problems = load_problems(str(tmp_path / name), columns=columns, size=3)
        assert [(p.id, p.prompt, p.answer) for p in problems] == [
            (f"q{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(3)
        ]
    label_free = load_problems(str(tmp_path / "d.jsonl"), columns={"prompt": "question", "answer": None})
    assert [(p.id, p.answer) for p in label_free] == [(str(i), None) for i in range(4)]


def test_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "solution": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"'answer_text' \(for answer\) not found in .*d\.jsonl.*'question'"):
        load_problems(str(path), columns={"prompt": "question", "answer": "answer_text"})
    with pytest.raises(ValueError, match=r"column 'prompt' \(for prompt\) not found"):
        load_problems(str(path))
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ValueError, match="could not read data file .*bad.parquet"):
        load_problems(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_problems(str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_bad_json_line_is_named(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"d{suffix}"
    path.write_text(json.dumps({"prompt": "1+1?", "answer": "2"}) + "\n\n" + '{"prompt": "2+2?", "answer": 4\n')
    with pytest.raises(ValueError, match=rf"could not read data file .*d\{suffix}: line 3: not valid JSON") as info:
        load_problems(str(path))
    assert "column" in str(info.value) and "2+2?" in str(info.value)
    array = tmp_path / "a.json"
    array.write_text('[\n  {"prompt": "1+1?", "answer": "2"},\n  {"prompt": "2+2?" "answer": "4"}\n]\n')
    with pytest.raises(ValueError, match=r"a\.json: not valid JSON: .*line 3 column"):
        load_problems(str(array))


def test_unknown_spec_lists_the_forms() -> None:
    with pytest.raises(ValueError, match="unknown dataset spec 'gsm9k'.*gsm8k.*aime25.*rg:<task>.*jsonl"):
        load_problems("gsm9k")


@pytest.mark.parametrize("spec", ["math500", "aime24", "amc23", "gsm8k@hub", "hf:openai/gsm8k"])
def test_hub_sources_fail_clearly_offline(hub_offline: None, spec: str) -> None:
    with pytest.raises(DataSourceError, match="Hugging Face hub: it is unreachable.*load_problems\\('data.jsonl'"):
        load_problems(spec)
    assert {"gsm8k", "aime25", "aime24", "math500", "amc23", "champ"} <= set(BENCHMARKS)


def test_hub_rows_are_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub path with a stand-in `load_dataset` (no network): column names and ids per benchmark."""
    import datasets

    tables = {
        "HuggingFaceH4/MATH-500": [{"problem": "1+1?", "answer": "2", "unique_id": "test/a/1.json", "level": 1}],
        "math-ai/amc23": [{"id": 0, "question": "2+2?", "answer": 4.0}],
        "openai/gsm8k": [{"question": "3+3?", "answer": "3+3=6\n#### 6"}],
        "opencompass/AIME2025": [{"question": "4+4?", "answer": "8"}] * 15,
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, config=None, split=None: tables[repo])
    math500, amc23 = load_problems("math500"), load_problems("amc23")
    assert (math500[0].id, math500[0].prompt, math500[0].answer) == ("math500/test/a/1.json", "1+1?", "2")
    assert (amc23[0].id, amc23[0].answer) == ("amc23/0", "4")
    train = load_problems("gsm8k@hub", split="train")
    assert (train[0].id, train[0].answer) == ("gsm8k/train/0", "6")
    with pytest.raises(DataSourceError, match="aime25 I-1 answer is '8'"):
        load_problems("aime25@hub")
