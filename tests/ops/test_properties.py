"""Hypothesis: random (B, T, H, U, d_p, K, gamma, cape, offset) -> parallel form == recurrent reference."""
import torch
from hypothesis import given
from hypothesis import strategies as st

import ramnet.ops as R

from .memory_cases import make_inputs, recurrent_attention


@st.composite
def cases(draw):
    U = draw(st.integers(1, 4))
    d_p = draw(st.integers(2, 5))
    M = d_p**U
    return dict(B=draw(st.integers(1, 3)), T=draw(st.integers(1, 24)), H=draw(st.integers(1, 3)), U=U, d_p=d_p,
                d_v=draw(st.integers(1, 6)), K=draw(st.integers(1, min(M, 16))),
                gamma=draw(st.sampled_from([0.0, 0.3, 1.0, 2.0, 5.0])),
                cape_bits=draw(st.integers(0, 7)), offset=draw(st.integers(0, 3 * M)),
                with_state=draw(st.booleans()), seed=draw(st.integers(0, 2**16)))


@given(cases())
def test_parallel_matches_recurrent(c):
    q, k, v, state = make_inputs(c["B"], c["T"], c["H"], c["U"], c["d_p"], c["d_v"], seed=c["seed"],
                                 with_state=c["with_state"])
    cape = torch.tensor([bool(c["cape_bits"] >> h & 1) for h in range(c["H"])])
    kw = dict(num_factors=c["U"], top_k=c["K"], gamma=c["gamma"], cape=cape, offset=c["offset"], initial_state=state)
    o, (S, z) = R.ram_attention(q, k, v, output_final_state=True, **kw)
    o_ref, S_ref, z_ref = recurrent_attention(q, k, v, **kw)
    torch.testing.assert_close(o, o_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(z, z_ref, rtol=1e-10, atol=1e-10)
