"""The class of bad states every runner must refuse, shared by the ONNX (``test_state_bounds.py``) and AOTI
(``test_aoti.py``) tests, and the largest states they must accept. States are numpy arrays by name (``S_i``,
``z_i``, ``conv_i``)."""
import numpy as np

from ramnet.runtime.state_checks import VALUE_MAX, Z_FLOOR

# (state, how to corrupt it, what the message must say): the class of states the runners must refuse
BAD_STATES = [
    ("S_0", "set", 3e38, r"'S_0' is out of range: \|S\| must be <= 1e\+08 \* \(z_0 \+ 1e-06\)"),
    ("S_1", "fill", 1e30, r"'S_1' is out of range: \|S\| must be"),
    ("S_0", "ratio", 1.5, r"'S_0' is out of range: \|S\| must be"),  # 1.5x the bound: finite, but not a state
    ("S_1", "set", np.nan, r"'S_1' is corrupt: it holds 1 non-finite values"),
    ("S_0", "set", -np.inf, r"'S_0' is corrupt: it holds 1 non-finite"),
    ("z_0", "set", 1.5, r"'z_0' is out of range: z must be in \[0, 1.001\].*got values in \[.*, 1.5\]"),
    ("z_1", "set", -1e-3, r"'z_1' is out of range: z must be in \[0, 1.001\].*got values in \[-0.001,"),
    ("z_1", "set", np.inf, r"'z_1' is corrupt"),
    ("z_0", "set", np.nan, r"'z_0' is corrupt"),
    ("conv_0", "set", np.nan, r"'conv_0' is corrupt"),
    ("conv_1", "set", np.inf, r"'conv_1' is corrupt"),
    ("conv_1", "set", 1e20, r"'conv_1' is out of range: \|conv\| must be <= 1e\+08"),
]


def corrupt(feeds: dict, name: str, kind: str, value: float) -> dict:
    bad = dict(feeds)
    x = feeds[name].copy()
    if kind == "set":
        x.reshape(-1)[5] = value
    elif kind == "fill":
        x[...] = value
    else:  # "ratio": S at value times its bound in every slot (z as fed)
        z = feeds["z_" + name.split("_")[1]]
        x[...] = value * VALUE_MAX * (z[..., None] + Z_FLOOR)
    bad[name] = x
    return bad


def at_bound(feeds: dict) -> dict:
    """Every state at 0.999 of its bound (S with random signs): the largest values the runners accept."""
    rng = np.random.default_rng(0)
    out = dict(feeds)
    for name, x in feeds.items():
        if name.startswith("z_"):
            out[name] = np.full_like(x, 0.999)  # gamma = 1: z <= 1
        elif name.startswith("conv_"):
            out[name] = (np.sign(rng.standard_normal(x.shape)) * 0.999 * VALUE_MAX).astype(np.float32)
    for name in [n for n in feeds if n.startswith("S_")]:
        z = out["z_" + name.split("_")[1]]
        scale = 0.999 * VALUE_MAX * (z[..., None] + Z_FLOOR)
        out[name] = (np.sign(rng.standard_normal(feeds[name].shape)) * scale).astype(np.float32)
    return out
