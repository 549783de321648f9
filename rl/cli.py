"""The `brevity` console script: one entry point that dispatches to the package that owns each job.

Sub-commands import their module lazily, so `brevity eval` does not pay for TRL and `brevity merge` does not pay
for the rollout engines. The CLI is the one place that names every package (`rl`, `eval`, `study`).
"""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function" taking argv and returning an exit code, help)
COMMANDS = {
    "eval": ("eval.run:main", "evaluate a model: accuracy and token cost (python -m eval.run)"),
    "compare": ("eval.compare:cli", "put several evaluation runs side by side"),
    "demo": ("study.demo:main", "the quickstart job on the offline SmolLM2"),
    "train": ("rl.train:main", "train from an experiment YAML (python -m rl.train --config ...)"),
    "sft": ("rl.sft:main", "supervised warm start from an experiment YAML (TRL's SFTTrainer)"),
    "study": ("study.run:main", "the efficiency study: warm start, the control and six methods, one table"),
    "merge": ("rl.merge:main", "update-selective merging of a tuned model into its base (DLER §4.6)"),
}


def usage() -> str:
    lines = ["usage: brevity COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"brevity: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, _, function = COMMANDS[name][0].partition(":")
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
