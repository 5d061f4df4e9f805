"""Module modes left as found: library calls that need eval mode restore every submodule's own flag."""
from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run the block with ``model`` and all its submodules in eval mode, then give each module back the
    ``training`` flag it had (``model.train(flag)`` would reset the submodules to the top module's flag)."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag
