"""Progress of an evaluation: samples done and tokens per second.

On a terminal it is a rich bar. Elsewhere (CI logs, output piped to a file) the bar would only print once at the
end, so it is off and a plain line is logged every `interval` seconds and when a benchmark finishes instead.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any

logger = logging.getLogger("brevity.eval")

INTERVAL_ENV = "BREVITY_PROGRESS_INTERVAL"  # seconds between plain progress lines (default 30)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


class SampleProgress:
    """`with SampleProgress(total) as p: p.benchmark(name, n); p.advance(samples, tokens)`."""

    def __init__(self, total: int, *, live: bool | None = None, interval: float | None = None) -> None:
        self.total, self.done, self.tokens = total, 0, 0
        self.live = sys.stderr.isatty() and not os.environ.get("CI") if live is None else live
        self.interval = float(os.environ.get(INTERVAL_ENV, 30)) if interval is None else interval
        self.name, self.bench_total, self.bench_done = "", 0, 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> SampleProgress:
        self.start = self._last_line = time.perf_counter()
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"))
            columns += (TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), TimeRemainingColumn())
            self._bar = Progress(*columns, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("sampling", total=self.total, tps="")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)

    def benchmark(self, name: str, total: int) -> None:
        """Start the samples of one benchmark."""
        self.name, self.bench_total, self.bench_done = name, total, 0
        if self._bar is not None:
            self._bar.update(self._task, description=name)

    def advance(self, samples: int, tokens: int) -> None:
        """Count a finished batch of `samples` samples holding `tokens` generated tokens."""
        self.done, self.tokens, self.bench_done = self.done + samples, self.tokens + tokens, self.bench_done + samples
        if self._bar is not None:
            self._bar.update(self._task, advance=samples, tps=f"{self.tokens_per_second:,.1f} tok/s")
            return
        now = time.perf_counter()
        if now - self._last_line >= self.interval or self.bench_done >= self.bench_total:
            self._last_line = now
            logger.info(self.line())

    def line(self) -> str:
        """One plain progress line, e.g. `gsm8k: 64/1319 samples (all: 64/1319), 9,120 tokens, 42.1 tok/s, ETA ...`."""
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        return (
            f"{self.name}: {self.bench_done}/{self.bench_total} samples (all: {self.done}/{self.total}), "
            f"{self.tokens:,} tokens, {self.tokens_per_second:,.1f} tok/s, elapsed {_duration(elapsed)}"
            + (f", ETA {_duration(eta)}" if self.done else "")
        )
