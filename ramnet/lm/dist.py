"""Processes for ``ramnet train --task lm``: one process, or several under ``torchrun`` (gloo on CPU, nccl on
CUDA) with FSDP2 (``torch.distributed.fsdp.fully_shard``, the default) or DDP, and the checkpoints that resume
them (``torch.distributed.checkpoint``, sharded and reshardable: a run saved by 2 processes resumes with 1).

DCP's metadata file is pickled, so these checkpoints are for resuming one's own runs only; ``ramnet convert``
turns one into safetensors, the only format that inference loads."""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..precision import resolve_device

DCP_DIR = "dcp"


@dataclass
class Processes:
    """This process's place in the run: ``rank`` of ``world_size``, its ``device``, whether it runs in a process
    group (under torchrun, also with one process) and whether the run created that group (and so destroys it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False
    in_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """In a process group: FSDP2 or DDP wraps the model, and the processes all-reduce."""
        return self.in_group

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` (a float64 or int64 tensor on any device) summed over the processes, as a CPU tensor."""
        if not self.distributed:
            return value.detach().cpu()
        t = value.detach().to(self.device if self.device.type == "cuda" else "cpu").clone()
        dist.all_reduce(t)
        return t.cpu()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def under_torchrun() -> bool:
    """Started by torchrun (its elastic agent sets ``TORCHELASTIC_RUN_ID``), with any number of processes."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def launched_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` without it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def processes(device: str | None):
    """Join the process group that torchrun describes (created here when none exists), on ``device`` (for CUDA,
    ``cuda:LOCAL_RANK``), and yield this process's :class:`Processes`. A process of its own (no torchrun) needs no
    group; under torchrun even one process joins one (``--nproc-per-node 1`` runs the NCCL / gloo, FSDP2 / DDP
    code path of a multi-GPU run). On the way out,
    whatever happened (a check below raising included), a group created here is destroyed and the current CUDA
    device is the caller's again."""
    rank, world, local = launched_world()
    grouped = world > 1 or under_torchrun()
    dev = resolve_device(device)
    previous_cuda = None
    owns = False
    try:
        if dev.type == "cuda" and grouped:
            dev = resolve_device(f"cuda:{local}")
            previous_cuda = torch.cuda.current_device()
            torch.cuda.set_device(dev)
        if grouped and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            owns = True
        if grouped and dist.get_world_size() != world:
            raise ValueError(f"the process group has {dist.get_world_size()} processes, WORLD_SIZE says {world}")
        yield Processes(rank, world, local, dev, owns, in_group=grouped)
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()
        if previous_cuda is not None:
            torch.cuda.set_device(previous_cuda)


def wrap(module: nn.Module, blocks, procs: Processes, mode: str, compile_blocks: bool) -> nn.Module:
    """Compile each block (``--compile``; before sharding, so FSDP2's hooks stay outside the compiled graphs) and,
    with several processes, shard every block and then the root with FSDP2, or replicate with DDP."""
    if compile_blocks:
        for block in blocks:
            block.compile()
    if not procs.distributed:
        return module.to(procs.device)
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        module.to(procs.device)
        ids = [procs.device.index] if procs.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(procs.device.type, (procs.world_size,))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool):
    """Micro-steps before the last of a step keep their gradients local (DDP ``no_sync``, FSDP2
    ``set_requires_gradient_sync``); the last one reduces the sum."""
    if hasattr(module, "no_sync") and not enabled:
        with module.no_sync():
            yield
        return
    if hasattr(module, "set_requires_gradient_sync"):
        module.set_requires_gradient_sync(enabled)
    yield


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():  # "torch.distributed is disabled ... assuming ... a single process"
        warnings.filterwarnings("ignore", message=".*torch.distributed.*single process.*")
        warnings.filterwarnings("ignore", message=".*assuming the intent.*")
        yield


def save_state(path: Path, module: nn.Module, optimizer) -> None:
    """Model and optimizer state under ``path`` (a DCP directory), each process writing its shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(module, optimizer)
    with _quiet():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path), no_dist=not dist.is_initialized())


def load_state(path: Path, module: nn.Module, optimizer) -> None:
    """Load ``save_state``'s files into ``module`` and ``optimizer``, whatever the number of processes that saved
    them (DCP reshards by parameter name)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(module, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    with _quiet():
        dcp.load(state, checkpoint_id=str(path), no_dist=not dist.is_initialized())
    set_state_dict(module, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def full_model_state(module: nn.Module) -> dict:
    """The whole model state on CPU: a collective under FSDP2 (every process calls it), and only the first
    process receives the tensors."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def read_model_state(path: Path) -> dict:
    """The model tensors of a DCP checkpoint directory, in one process (``ramnet convert``); unpickles DCP's
    metadata, so only for checkpoints one trusts."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    # as torch.distributed.checkpoint.format_utils.dcp_to_torch_save does, without writing a torch.save file
    state: dict = {}
    with _quiet():
        _load_state_dict(state, storage_reader=FileSystemReader(str(path)),
                         planner=_EmptyStateDictLoadPlanner(keys={"model"}), no_dist=True)
    return state["model"]
