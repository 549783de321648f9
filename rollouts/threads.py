"""How many CPU threads torch uses in this process, chosen from the cores that are actually free.

torch starts one intra-op thread per core. On a small shared machine that is the wrong number: on the 2-core CPU
box, a run slowed 2-10x whenever another process was busy, because two torch threads then fight for one core (and
several processes of one run each start a full set). The rule, first match wins:

1. `BREVITY_THREADS=N`, or `OMP_NUM_THREADS=N` (which torch reads itself): that many, untouched.
2. several processes of one run on this machine (`LOCAL_WORLD_SIZE` > 1, set by `accelerate launch`): the cores
   divided among them, at least one each.
3. otherwise the cores not busy, by the 1-minute load average (cores minus load, rounded), at least one.

On a GPU machine nothing changes: the GPU does the work, and torch keeps its default.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping

__all__ = ["THREADS_ENV", "choose_threads", "configure_threads"]

logger = logging.getLogger("brevity")

THREADS_ENV = "BREVITY_THREADS"
_configured: int | None = None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def choose_threads(
    cores: int | None = None, load: float | None = None, env: Mapping[str, str] | None = None
) -> tuple[int, str] | None:
    """(threads, why) by the rule in the module docstring; None when the environment already fixes the count."""
    env = os.environ if env is None else env
    if env.get(THREADS_ENV, "").strip():
        value = env[THREADS_ENV].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{THREADS_ENV} must be a whole number >= 1, got {value!r}")
        return int(value), f"{THREADS_ENV}={value}"
    if env.get("OMP_NUM_THREADS", "").strip():
        return None  # torch already follows it
    cores = _cores() if cores is None else cores
    processes = int(env.get("LOCAL_WORLD_SIZE", "1") or 1)
    if processes > 1:
        return max(1, cores // processes), f"{cores} cores shared by {processes} processes"
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else (load or 0.0)
    free = max(1, min(cores, cores - math.floor(load + 0.5)))
    return free, f"{cores} cores, load {load:.1f}"


def configure_threads() -> int | None:
    """Apply `choose_threads` once per process on a CPU-only machine; returns the thread count set (or None)."""
    global _configured
    if _configured is not None:
        return _configured
    import torch

    if torch.cuda.is_available():
        return None
    try:
        choice = choose_threads()
    except ValueError as e:
        logger.warning("%s; keeping torch's default", e)
        return None
    if choice is None:
        return None
    threads, why = choice
    torch.set_num_threads(threads)
    _configured = threads
    logger.info("torch CPU threads: %d (%s; set %s=N to choose)", threads, why, THREADS_ENV)
    return threads
