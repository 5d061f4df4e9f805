"""Language-model pretraining (``ramnet train --task lm``): data through Hugging Face ``datasets``, tokenizers
through ``transformers``, packed documents, one process or several (FSDP2 / DDP under torchrun), resumable
``torch.distributed.checkpoint`` checkpoints and their conversion to safetensors. Needs the ``[lm]`` extra.

Modules: ``args`` (the run description), ``tokenizer``, ``data`` (reading, packing, the row order, sharding),
``loop`` (training), ``dist`` (processes, wrapping, DCP), ``checkpoints``, ``metrics``, ``evaluate``, ``convert``,
``commands`` (the command line's LM side)."""
from .args import LMArgs
from .loop import train_lm

__all__ = ["LMArgs", "train_lm"]
