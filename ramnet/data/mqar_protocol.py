"""The MQAR benchmark protocol: one model trained on the union of several (pairs, length) settings with equal
examples per setting, and scored on each; the score is the mean accuracy over the settings.

The default settings are Zoology's seven test settings, (4, 64) up to (256, 1024). Settings have different
lengths, so a training step draws its whole batch from one setting (no padding); the steps cycle through the
settings in a shuffled order, so every setting gets the same number of steps up to one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .mqar import MQARSetting, multiquery_ar

# (num_kv_pairs, seq_len): Zoology's seven MQAR test settings
PROTOCOL_SETTINGS = ((4, 64), (8, 64), (16, 64), (32, 128), (64, 256), (128, 512), (256, 1024))
PROTOCOL_VOCAB = 8192


def setting_name(setting: MQARSetting) -> str:
    return f"N{setting.num_kv_pairs}-T{setting.seq_len}"


def protocol_settings(pairs_and_lengths=PROTOCOL_SETTINGS, vocab_size: int = PROTOCOL_VOCAB) -> list[MQARSetting]:
    """``MQARSetting`` objects for ``(num_kv_pairs, seq_len)`` pairs (checked: distinct, valid)."""
    settings = []
    for item in pairs_and_lengths:
        if not isinstance(item, (tuple, list)) or len(item) != 2 or \
                not all(isinstance(x, int) and not isinstance(x, bool) for x in item):
            raise ValueError(f"each setting must be a pair of ints (num_kv_pairs, seq_len), got {item!r}")
        settings.append(MQARSetting(vocab_size=vocab_size, seq_len=item[1], num_kv_pairs=item[0]))
    if not settings:
        raise ValueError("the protocol needs at least one setting")
    if len({setting_name(s) for s in settings}) != len(settings):
        raise ValueError(f"settings must be distinct, got {[setting_name(s) for s in settings]}")
    return settings


def eval_set(setting: MQARSetting, index: int, num_eval: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation ``inputs, labels [num_eval, T]`` of the ``index``-th setting of a run with ``seed``: what
    ``ProtocolData.make`` scores it on, made again without the training data (to locate a run's errors)."""
    for name, value in (("index", index), ("num_eval", num_eval), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if index < 0 or num_eval < 1:
        raise ValueError(f"index must be >= 0 and num_eval >= 1, got index={index}, num_eval={num_eval}")
    return multiquery_ar(setting, num_eval, seed=seed + 1000 * index + 500_000)


@dataclass
class ProtocolData:
    """Per setting: training ``inputs [n, T]`` with the labelled ``positions [n, N]`` and ``targets [n, N]``,
    and the evaluation ``inputs, labels [m, T]``. Seeds differ per setting and between train and eval."""

    settings: list[MQARSetting]
    train: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    eval: list[tuple[torch.Tensor, torch.Tensor]]

    @staticmethod
    def make(settings: list[MQARSetting], num_train: int, num_eval: int, seed: int) -> "ProtocolData":
        from ..train import labelled_positions

        if num_train < 1 or num_eval < 1:
            raise ValueError(f"num_train and num_eval per setting must be >= 1, got {num_train}, {num_eval}")
        train, evals = [], []
        for i, setting in enumerate(settings):
            x, y = multiquery_ar(setting, num_train, seed=seed + 1000 * i)
            pos = labelled_positions(y)
            train.append((x, pos, y.gather(1, pos)))
            evals.append(eval_set(setting, i, num_eval, seed))
        return ProtocolData(list(settings), train, evals)

    def to(self, device) -> "ProtocolData":
        """The training tensors on ``device`` (evaluation moves batch by batch)."""
        return ProtocolData(self.settings, [tuple(t.to(device) for t in item) for item in self.train], self.eval)


def setting_schedule(num_settings: int, steps: int, generator: torch.Generator) -> list[int]:
    """Which setting each step draws from: shuffled rounds of every setting, so counts differ by at most one."""
    order = []
    while len(order) < steps:
        order.extend(torch.randperm(num_settings, generator=generator).tolist())
    return order[:steps]
