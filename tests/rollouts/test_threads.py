"""The torch CPU thread count: explicit settings win, processes share the cores, otherwise the free cores."""

from __future__ import annotations

import pytest

from rollouts.threads import choose_threads


@pytest.mark.parametrize(
    ("cores", "load", "env", "expected"),
    [
        (2, 0.1, {}, 2),  # an idle machine: every core
        (2, 1.2, {}, 1),  # another process busy on one of two cores: one thread, not two fighting for it
        (2, 5.0, {}, 1),  # overloaded: still one
        (16, 3.4, {}, 13),
        (2, 0.0, {"LOCAL_WORLD_SIZE": "2"}, 1),  # accelerate launch with 2 processes on 2 cores
        (16, 0.0, {"LOCAL_WORLD_SIZE": "3"}, 5),
        (2, 1.9, {"BREVITY_THREADS": "2"}, 2),  # asked for: taken as is
    ],
)
def test_choose_threads(cores: int, load: float, env: dict[str, str], expected: int) -> None:
    choice = choose_threads(cores, load, env)
    assert choice is not None and choice[0] == expected


def test_omp_num_threads_is_left_to_torch_and_bad_values_are_named() -> None:
    assert choose_threads(2, 0.0, {"OMP_NUM_THREADS": "1"}) is None
    with pytest.raises(ValueError, match="BREVITY_THREADS must be a whole number >= 1, got 'two'"):
        choose_threads(2, 0.0, {"BREVITY_THREADS": "two"})
