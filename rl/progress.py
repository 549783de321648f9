"""A one-line summary per logged step, printed with rich: the metrics that say whether a run is getting shorter."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

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
    """Prints `progress_line` on the main process after every TRL log call."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs and "loss" in logs:
            self.console.print(progress_line(state.global_step, state.max_steps, logs))
