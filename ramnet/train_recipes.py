"""Named training recipes, shared by CI, ``make demo`` and the docs (numbers in docs/DECISIONS.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .data.mqar import MQARSetting


@dataclass(frozen=True)
class Recipe:
    preset: str
    setting: MQARSetting
    train_kwargs: dict = field(default_factory=dict)


# The smallest MQAR setting mqar-tiny learns reliably on 2 CPU cores in well under 5 minutes.
CI_MQAR_RECIPE = Recipe(
    preset="mqar-tiny",
    setting=MQARSetting(vocab_size=128, seq_len=32, num_kv_pairs=4),
    train_kwargs=dict(steps=600, batch_size=64, lr=3e-3, warmup_steps=50, eval_every=50, num_train=20000,
                      num_eval=1000, target_accuracy=0.95, seed=0),
)
