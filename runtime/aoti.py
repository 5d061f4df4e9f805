"""Load and run an AOTInductor package written by ``ramnet.export.aoti.to_aoti``."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ramnet.ops.checks import MAX_POSITION


class AOTIRunner:
    """A loaded ``.pt2`` package. ``runner(*inputs)`` returns the graph's outputs as a list of tensors.

    The compiled code assumes the strides it was exported with (contiguous) and trusts its inputs, so every call
    checks the input count, dtypes, ranks and device, and passes contiguous tensors: a strided view such as
    ``ids[:, -1]`` would otherwise be read with the wrong strides, silently."""

    def __init__(self, path, device_index: int = -1, check_values: bool = True):
        import ramnet.ops  # noqa: F401  (the package calls torch.ops.ramnet.* through the dispatcher)

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no AOTInductor package at {path}")
        self.path = path
        self._package = torch._inductor.aoti_load_package(str(path), device_index=device_index)
        self._signature = _example_signature(self._package)
        self.metadata = self._package.get_metadata()
        self.check_values = check_values
        config = json.loads(self.metadata.get("ramnet_config", "{}"))  # parsed once: checked on every call
        self._vocab, self._layers = config.get("vocab_size"), max(1, config.get("n_layers", 1))
        self._gamma = config.get("gamma")  # sets the z bound (runtime/state_checks.py); None: taken as 1
        self._short_conv = config.get("short_conv")

    def __call__(self, *inputs):
        if self._signature is not None:
            if len(inputs) != len(self._signature):
                raise ValueError(f"{self.path.name} takes {len(self._signature)} inputs, got {len(inputs)}")
            for i, (x, (dtype, shape)) in enumerate(zip(inputs, self._signature)):
                ok = (isinstance(x, torch.Tensor) and x.dtype == dtype and x.dim() == len(shape)
                      and all(want is None or got == want for got, want in zip(x.shape, shape)))
                if not ok:
                    got = f"{x.dtype} {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
                    want = [("?" if d is None else d) for d in shape]
                    raise ValueError(f"input {i} of {self.path.name} must be a {dtype} tensor of shape {want} "
                                     f"('?' is dynamic), got {got}")
            batches = {x.shape[0] for x in inputs}
            if len(batches) != 1:
                raise ValueError(f"all inputs must share the batch size (dim 0), got {sorted(batches)}")
            if self.check_values:  # reads values: a device sync per call on CUDA (off for trusted hot loops)
                self._check_values(inputs)
        return self._package(*[x.contiguous() for x in inputs])

    def _check_values(self, inputs) -> None:
        """Token ids in ``[0, vocab)``, ``position >= 0``, and states inside their bounds (``runtime/
        state_checks.py``: finite; ``z`` in ``[0, max(1, 1/gamma)]``; ``|S| <= 1e8 (z + 1e-6)`` slot by slot;
        ``|conv| <= 1e8``): the compiled code indexes with these values unchecked, and an overflowing state gives
        NaN logits. The reductions run on the states' device."""
        from .state_checks import StateError, check_named_states

        vocab = self._vocab
        tokens = inputs[0]
        if tokens.numel() and (int(tokens.min()) < 0 or (vocab is not None and int(tokens.max()) >= vocab)):
            raise ValueError(f"token ids must be in [0, {vocab}), got values in [{int(tokens.min())}, "
                             f"{int(tokens.max())}]")
        if self.metadata.get("ramnet_graph") == "decode":
            position, states = inputs[1], inputs[2:]
            if position.numel() and not (0 <= int(position.min()) and int(position.max()) <= MAX_POSITION):
                raise ValueError(f"position must be in [0, {MAX_POSITION}], got values in "
                                 f"[{int(position.min())}, {int(position.max())}]")
            if self._short_conv is None:  # a package without the flag: the layout from the count
                kinds = ["S", "z", "conv"][:len(states) // self._layers]
            else:
                kinds = ["S", "z", "conv"] if self._short_conv else ["S", "z"]
            # input 2 + i is state_names(config)[i]: S_0, z_0(, conv_0), S_1, ...
            names = [f"{kinds[i % len(kinds)]}_{i // len(kinds)}" for i in range(len(states))]
            try:
                check_named_states(dict(zip(names, states)), gamma=self._gamma,
                                   gamma_note=", from the package's ramnet_config" if self._gamma is not None else
                                   ": the package records no gamma")
            except StateError as error:
                raise StateError(error.name, f"{self.path.name} input {2 + names.index(error.name)}: {error}") from None


def _example_signature(package):
    """``[(dtype, shape with None for dynamic dims)]`` written by ``to_aoti`` into the package metadata, or None
    for a package from elsewhere."""
    text = package.get_metadata().get("ramnet_inputs")
    if not text:
        return None
    parse = lambda dims: tuple(None if d == "?" else int(d) for d in dims.split("x"))
    return [(getattr(torch, kind), parse(dims)) for kind, dims in (item.split(":") for item in text.split(","))]


def load(path, *, device_index: int = -1, check_values: bool = True) -> AOTIRunner:
    """Load a ``.pt2`` package from ``ramnet export --format aoti``; returns an ``AOTIRunner``. Shapes and dtypes
    are always checked; ``check_values`` (default) also checks token and position ranges and state sanity."""
    return AOTIRunner(path, device_index=device_index, check_values=check_values)
