"""The PDMA decay and its proxy derivative as Triton helpers, shared by the scan kernels (same formulas as
``naive.exact_decay`` and ``naive.proxy_decay_grad``)."""
import triton
import triton.language as tl


@triton.jit
def decay(w, gamma):
    """``a = (1 - w) ** gamma`` with ``0 ** 0 = 1`` (gamma = 0 is a cumulative mean)."""
    return tl.where(gamma == 0.0, 1.0, tl.exp2(gamma * tl.log2(1.0 - w)))


@triton.jit
def proxy_decay_grad(w, gamma, proxy_eps):
    """``d/dw (e + (1 - e)(1 - w)) ** gamma``: the finite surrogate the backward uses for ``da/dw``."""
    base = proxy_eps + (1.0 - proxy_eps) * (1.0 - w)
    return tl.where(gamma == 0.0, 0.0, -gamma * (1.0 - proxy_eps) * tl.exp2((gamma - 1.0) * tl.log2(base)))
