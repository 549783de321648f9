"""Training output: one progress bar of steps, a one-line summary of the key metrics per logging step above it.

transformers' own progress callback writes TRL's whole metric dict (30-odd keys) into the bar at every logging
step; `ProgressLine` replaces it (`rl.train.build_trainer` removes transformers' callbacks). The raw dict still goes
to the `brevity.metrics` logger at DEBUG level and to `log_history` in each checkpoint's `trainer_state.json`.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

metrics_logger = logging.getLogger("brevity.metrics")

# (log key, label, format); a key missing from a step's logs (another variant's metric) is left out.
KEY_METRICS = (
    ("brevity/accuracy", "acc", "{:.2f}"),
    ("completions/mean_length", "len", "{:.0f}"),
    ("brevity/length_p90", "p90", "{:.0f}"),
    ("completions/clipped_ratio", "trunc", "{:.2f}"),
    ("reward", "reward", "{:.3f}"),
    ("entropy", "H", "{:.2f}"),
    ("frac_reward_zero_std", "zero-var", "{:.2f}"),
    ("brevity/resample_rounds", "refills", "{:.0f}"),
    ("brevity/num_selected", "|E|", "{:.0f}"),
    ("brevity/ratio_threshold", "p_E", "{:.2f}"),
    ("brevity/budget", "B(t)", "{:.0f}"),
    ("brevity/decay_reward_mean", "decay", "{:.3f}"),
    ("brevity/dmmpt_masked_fraction", "masked", "{:.3f}"),
    ("ulorl/staleness_mean", "stale", "{:.2f}"),
    ("step_time", "s/step", "{:.1f}"),
)


def progress_line(step: int, max_steps: int, logs: dict[str, Any]) -> str:
    """`step 3/10  acc 0.25  len 41  ...` from a TRL log dict (values may be floats or formatted strings)."""
    parts = [f"[bold]step {step}/{max_steps}[/bold]"]
    for key, label, fmt in KEY_METRICS:
        if key in logs:
            try:
                parts.append(f"{label} [cyan]{fmt.format(float(logs[key]))}[/cyan]")
            except (TypeError, ValueError):
                continue
    return "  ".join(parts)


class ProgressLine(TrainerCallback):
    """On the main process: a tqdm bar of optimizer steps (none with `disable_tqdm`) and `progress_line` at each
    logging step, written above the bar so the two never interleave; the raw log dict goes to `metrics_logger`."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.bar: Any = None
        self.step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step = state.global_step
        if state.is_world_process_zero and not args.disable_tqdm:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", dynamic_ncols=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.step)
        self.step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        metrics_logger.debug("step %d: %s", state.global_step, logs)
        if "loss" in logs:
            line = progress_line(state.global_step, state.max_steps, logs)
        elif "train_runtime" in logs:
            line = f"trained to step {state.global_step} in {float(logs['train_runtime']):.0f} s"
        else:
            return
        if self.bar is None:
            self.console.print(line)
        else:
            from rich.text import Text

            self.bar.write(Text.from_markup(line).plain, file=self.bar.fp)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
