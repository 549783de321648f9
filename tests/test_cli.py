"""The `brevity` console script: help, dispatch, and exit code 2 with a named cause for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rl.cli import COMMANDS, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: brevity COMMAND")
    for name in ("eval", "compare", "demo", "train", "merge", "sft", "study"):
        assert f"  {name} " in out and name in COMMANDS


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "brevity"
    if not script.is_file():
        pytest.skip("brevity is not installed in this environment (pip install -e .)")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "commands:" in result.stdout


@pytest.mark.parametrize(("argv", "message"), [(["frobnicate"], "unknown command 'frobnicate'"), ([], "usage:")])
def test_unknown_or_missing_command_exits_2(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "commands:" in err


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("eval", ["--benchmarks", "--columns", "--budget-cutoffs", "--k"]),
        ("demo", ["--config", "--seed"]),
        ("study", ["--config", "--out", "--seed", "--methods"]),
        ("sft", ["--config", "--resume"]),
        ("compare", ["RUN_DIR"]),
    ],
)
def test_subcommand_help(capsys, command: str, expected: list[str]) -> None:
    with pytest.raises(SystemExit) as info:  # argparse exits 0 after printing help
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in expected)


def test_merge_with_missing_folders_names_them(tmp_path: Path, capsys) -> None:
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    assert main(["merge", str(base), str(tuned), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"base folder not found: {base}" in err and f"tuned folder not found: {tuned}" in err
    assert not (tmp_path / "out").exists()


def test_compare_with_a_missing_run_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["compare", str(tmp_path / "no_run")]) == 2
    assert "no_run" in capsys.readouterr().err


def test_eval_bad_argument_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["eval", "--k", "0", "--out", str(tmp_path / "run")]) == 2
    assert "--k must be >= 1" in capsys.readouterr().err
