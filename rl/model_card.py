"""The trained model's card: TRL's model card template, naming the brevity variant and the paper it follows.

TRL's trainers fill the card from their class (GRPOTrainer names GRPO and the DeepSeekMath paper); a brevity run
trains one variant, so its card names that variant and its paper (`Variant.paper` in rl/variants/). `use_variant_card`
points the trainer's `create_model_card`, which TRL calls at every checkpoint and `push_to_hub` calls before
uploading, at this card, so every card a run writes says the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rl.config import ExperimentConfig

TAGS = ["trl", "grpo", "brevity"]
GRPO_PAPER = (
    "2402.03300"  # DeepSeekMath, where GRPO comes from: the paper of the `grpo` baseline (TRL's GRPO card too)
)


def paper_id(paper: str) -> str:
    """The arXiv id in a variant's `paper` ("arXiv 2505.07686" -> "2505.07686"); GRPO's own for the baseline."""
    found = re.search(r"\b\d{4}\.\d{4,5}\b", paper)
    return found.group() if found else GRPO_PAPER


def variant_card(config: ExperimentConfig, model_name: str, dataset_name: str | None = None) -> Any:
    """A `huggingface_hub.ModelCard` from TRL's template (trl.trainer.utils.generate_model_card)."""
    from trl.trainer.utils import generate_model_card

    from rl.variants import VARIANTS

    variant = VARIANTS[config.variant_name]
    arxiv = paper_id(variant.paper)
    hub_base = config.model.count("/") == 1 and not Path(config.model).expanduser().exists()
    if dataset_name is None and config.data.train.startswith("hf:"):
        dataset_name = config.data.train[3:].partition("?")[0]
    card = generate_model_card(
        base_model=config.model if hub_base else None,
        model_name=model_name,
        hub_model_id=config.grpo.hub_model_id or model_name,
        dataset_name=dataset_name,
        tags=[*TAGS, config.variant_name],
        wandb_url=None,
        trackio_url=None,
        trainer_name=f"brevity's `{config.variant_name}` variant of GRPO",
        paper_title=f"arXiv {arxiv}",
        paper_id=arxiv,
    )
    if not hub_base:  # TRL's template links the base model on the hub; a local folder or an alias has no such page
        card.text = card.text.replace("[None](https://huggingface.co/None)", f"`{config.model}`")
    return card


def write_model_card(
    config: ExperimentConfig, output_dir: str, dataset_name: str | None = None, model_name: str | None = None
) -> Path:
    """`output_dir/README.md`, the card of the model saved there."""
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    variant_card(config, model_name or Path(output_dir).name, dataset_name).save(str(path))
    return path


def use_variant_card(trainer: Any, config: ExperimentConfig) -> None:
    """Make the trainer's own card writes (checkpoints, `push_to_hub`) write the variant's card, on the main process
    only (as TRL's `create_model_card` does)."""

    def create_model_card(model_name: str | None = None, dataset_name: str | None = None, **_: Any) -> None:
        if trainer.is_world_process_zero():
            write_model_card(config, trainer.args.output_dir, dataset_name, model_name)

    trainer.create_model_card = create_model_card
