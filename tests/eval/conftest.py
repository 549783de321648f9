"""Fixtures of the eval tests that run a real model."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One OpenMP thread for a module's tests: two threads on 2 shared cores run 10-20x slower than one when other
    jobs are busy (and `eval.run.main` would otherwise choose the count from the load: rollouts/threads.py)."""
    threads, env = torch.get_num_threads(), os.environ.get("BREVITY_THREADS")
    torch.set_num_threads(1)
    os.environ["BREVITY_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("BREVITY_THREADS", None)
    else:
        os.environ["BREVITY_THREADS"] = env
