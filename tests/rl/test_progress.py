"""The progress line shows the key metrics of whichever variant is running, and skips what a step did not log."""

from __future__ import annotations

from rl.progress import progress_line


def test_progress_line_formats_present_metrics() -> None:
    logs = {"brevity/accuracy": 0.25, "completions/mean_length": "41.6", "brevity/budget": 87.0, "loss": 0.1}
    line = progress_line(3, 10, logs)
    assert "step 3/10" in line
    assert "acc [cyan]0.25[/cyan]" in line
    assert "len [cyan]42[/cyan]" in line
    assert "B(t) [cyan]87[/cyan]" in line
    assert "|E|" not in line and "refills" not in line


def test_progress_line_skips_unparsable_values() -> None:
    assert "acc" not in progress_line(1, 2, {"brevity/accuracy": "n/a"})
