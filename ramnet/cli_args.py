"""Argument helpers shared by the ``ramnet`` subcommands: the MQAR setting flags, the seed check and ``--set``
config overrides. Each raises ``ValueError`` naming the flag (the CLI prints it as one line)."""
from __future__ import annotations

from pathlib import Path

from .config import RamNetConfig
from .data.mqar import MQARSetting


def add_setting_args(p, default_note: str, lm_seq_len: str = ""):
    p.add_argument("--seq-len", type=int, default=None,
                   help=f"MQAR sequence length ({default_note}; else 256){lm_seq_len}")
    p.add_argument("--num-kv-pairs", type=int, default=None, help=f"MQAR key-value pairs ({default_note}; else 64)")
    p.add_argument("--vocab-size", type=int, default=None, help="MQAR vocabulary (default: the model's)")


def mqar_setting(args, vocab_size: int, saved: dict | None = None) -> MQARSetting:
    """The MQAR setting from the flags, falling back to ``saved`` (a checkpoint's) and then to T=256, N=64."""
    saved = saved or {}
    values = {}
    for flag, key, default in (("--vocab-size", "vocab_size", vocab_size), ("--seq-len", "seq_len", 256),
                               ("--num-kv-pairs", "num_kv_pairs", 64)):
        given = getattr(args, key)
        if given is not None and given < 1:
            raise ValueError(f"{flag} must be an integer >= 1, got {given}")
        values[key] = given if given is not None else saved.get(key, default)
    try:
        setting = MQARSetting(**values)
    except ValueError as error:
        raise ValueError(f"MQAR setting --seq-len {values['seq_len']} --num-kv-pairs {values['num_kv_pairs']} "
                         f"--vocab-size {values['vocab_size']} (defaults: 256, 64, the model's): {error}") from None
    if setting.vocab_size > vocab_size:
        raise ValueError(f"--vocab-size {setting.vocab_size} exceeds the model's vocab_size {vocab_size}")
    return setting


def check_seed(seed: int) -> None:
    if not 0 <= seed < 2**62:
        raise ValueError(f"--seed must be an integer in [0, 2**62), got {seed}")


def config_overrides(pairs) -> dict:
    """``--set key=value`` config overrides, each parsed by the field's type (``RamNetConfig.parse_field``)."""
    out = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set gamma=0.5")
        out[key.strip()] = RamNetConfig.parse_field(key.strip(), raw)
    return out


def saved_setting(checkpoint: Path) -> dict | None:
    """The MQAR setting a checkpoint was trained on (``metrics.json`` of a run, or a training checkpoint's)."""
    from .checkpoint import read_json

    for name in ("metrics.json", "trainer_state.json"):
        if (checkpoint / name).is_file():
            return read_json(checkpoint / name, "run metadata").get("setting")
    return None
