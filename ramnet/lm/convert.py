"""``ramnet convert``: an LM training checkpoint (``torch.distributed.checkpoint`` shards, any number of
processes) -> a safetensors model checkpoint: native (``model.safetensors`` + ``config.json``, read by ``eval``,
``export``, ``validate``) or Hugging Face (``save_pretrained``, read by ``AutoModelForCausalLM.from_pretrained``),
with the tokenizer in both cases. Reading DCP unpickles its metadata: convert only checkpoints you trust."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from ..model import RamNetForCausalLM
from . import checkpoints as lm_ckpt
from . import dist as D
from .tokenizer import load_tokenizer

FORMATS = ("native", "hf")


def convert(checkpoint: str | Path, out_dir: str | Path, fmt: str = "native") -> Path:
    """Write ``checkpoint``'s model (an LM checkpoint, or a run directory: its newest) to ``out_dir`` (new or
    empty) in ``fmt``. The native format also gets ``metrics.json`` with the run's arguments and history, so that
    ``ramnet eval --task lm`` finds the run's validation data. Returns ``out_dir``."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path, info = lm_ckpt.read(checkpoint, flag="checkpoint")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not an empty directory")
    config = ckpt.read_config(path)
    state = D.read_model_state(path / D.DCP_DIR)
    with torch.random.fork_rng(devices=[]):  # the placeholder init must not move the caller's RNG
        model = RamNetForCausalLM(config)
    try:
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    except RuntimeError as error:
        raise ValueError(f"{path}: the saved tensors do not fit its config.json: {str(error).splitlines()[0]}") \
            from None
    tokenizer = load_tokenizer(str(path))
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "native":
        ckpt.save_model_atomic(model, out)
        (out / "metrics.json").write_text(json.dumps({"task": "lm", "converted_from": str(path),
                                                      "step": info["step"], "world_size": info["world_size"],
                                                      "args": info["args"], "history": info["history"]}, indent=2))
    else:
        from ..hf import RamNetHFForCausalLM

        hf = RamNetHFForCausalLM.from_native(model, eos_token_id=tokenizer.eos_token_id,
                                             pad_token_id=tokenizer.pad_token_id)
        hf.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
