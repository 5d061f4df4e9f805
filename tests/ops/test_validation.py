"""Bad input raises ValueError/TypeError naming the argument and the allowed range."""
import pytest
import torch

import ramnet.ops as R


def qkv(B=2, T=5, H=3, d_k=8, d_v=4, dtype=torch.float32):
    return torch.randn(B, T, H, d_k, dtype=dtype), torch.randn(B, T, H, d_k, dtype=dtype), torch.randn(B, T, H, d_v, dtype=dtype)


def attn(q, k, v, **kw):
    return R.ram_attention(q, k, v, **{"num_factors": 2, "top_k": 3, **kw})


CASES = [
    ("U must divide d_k", lambda: attn(*qkv(d_k=9)), ValueError, "num_factors=2 must divide"),
    ("U=0", lambda: attn(*qkv(), num_factors=0), ValueError, r"num_factors must be in \[1"),
    ("K<1", lambda: attn(*qkv(), top_k=0), ValueError, r"top_k must be in \[1, 16\]"),
    ("K>M", lambda: attn(*qkv(), top_k=17), ValueError, r"top_k must be in \[1, 16\]"),
    ("K not int", lambda: attn(*qkv(), top_k=2.5), TypeError, "top_k must be an int"),
    ("gamma<0", lambda: attn(*qkv(), gamma=-0.1), ValueError, r"gamma must be finite and in \[0.0"),
    ("gamma nan", lambda: attn(*qkv(), gamma=float("nan")), ValueError, "gamma must be finite"),
    ("tau<=0", lambda: attn(*qkv(), tau=0.0), ValueError, r"tau must be finite and in \[1e-06"),
    ("tau denormal", lambda: attn(*qkv(), tau=1e-320), ValueError, r"tau must be finite and in \[1e-06"),
    ("address tau", lambda: R.address(qkv()[0], num_factors=2, top_k=3, tau=1e-300), ValueError, "tau must be"),
    ("B=0", lambda: attn(*qkv(B=0)), ValueError, r"B \(q.shape\[0\]\) must be in \[1"),
    ("H=0", lambda: attn(*qkv(H=0)), ValueError, r"H \(q.shape\[-2\]\) must be in \[1"),
    ("d_v=0", lambda: attn(*qkv(d_v=0)), ValueError, r"d_v \(v.shape\[-1\]\) must be in \[1"),
    ("offset overflow", lambda: attn(*qkv(), offset=2**63 - 3), ValueError, r"offset must be in \[0, 46116"),
    ("M beyond int64", lambda: R.address(torch.randn(2, 128), num_factors=32, top_k=1), ValueError,
     "exceeds 4611686018427387904 slots"),
    ("M beyond int64, attention", lambda: attn(*qkv(d_k=128), num_factors=32, top_k=1), ValueError, "slot ids are int64"),
    ("eps<0", lambda: attn(*qkv(), eps=-1.0), ValueError, "eps must be"),
    ("offset<0", lambda: attn(*qkv(), offset=-1), ValueError, r"offset must be in \[0"),
    ("rank q", lambda: attn(torch.randn(5, 3, 8), *qkv()[1:]), ValueError, "q must have rank 4"),
    ("rank v", lambda: attn(*qkv()[:2], torch.randn(2, 5, 3)), ValueError, "v must have rank 4"),
    ("dtype int", lambda: attn(*(t.long() for t in qkv())), TypeError, "q must have dtype in"),
    ("mixed dtype", lambda: attn(qkv()[0], qkv()[1].double(), qkv()[2]), TypeError, "share a dtype"),
    ("batch mismatch", lambda: attn(qkv()[0], qkv(B=3)[1], qkv()[2]), ValueError, "k has shape"),
    ("heads mismatch v", lambda: attn(*qkv()[:2], qkv(H=2)[2]), ValueError, "v has leading"),
    ("empty T", lambda: attn(*qkv(T=0)), ValueError, r"T \(q.shape\[1\]\) must be in \[1"),
    ("cape length", lambda: attn(*qkv(), cape=torch.tensor([True, False])), ValueError, "cape has length 2"),
    ("cape dtype", lambda: attn(*qkv(), cape=torch.ones(3)), TypeError, "cape must have dtype in"),
    ("state wrong M", lambda: attn(*qkv(), initial_state=R.initial_state(2, 3, 32, 4)), ValueError,
     r"initial_state\[0\] \(S\) has shape \(2, 3, 32, 4\), expected \(2, 3, 16, 4\)"),
    ("state wrong B", lambda: attn(*qkv(), initial_state=R.initial_state(1, 3, 16, 4)), ValueError, "has shape"),
    ("state dtype", lambda: attn(*qkv(), initial_state=R.initial_state(2, 3, 16, 4, dtype=torch.float16)),
     TypeError, r"initial_state\[0\] \(S\) must have dtype in \(float32, float64\)"),
    ("state not tuple", lambda: attn(*qkv(), initial_state=torch.zeros(2, 3, 16, 4)), TypeError, "initial_state must be a tuple"),
    ("address U", lambda: R.address(torch.randn(4, 10), num_factors=3, top_k=2), ValueError, "must divide"),
    ("address d_p=1", lambda: R.address(torch.randn(4, 3), num_factors=3, top_k=1), ValueError, "d_p"),
    ("address not tensor", lambda: R.address([1.0, 2.0], num_factors=1, top_k=1), TypeError, "x must be a torch.Tensor"),
]


@pytest.mark.parametrize("fn,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_with_a_named_argument(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def _step(**kw):
    q, k, v = (t[:, 0] for t in qkv())
    S, z = kw.pop("state", R.initial_state(2, 3, 16, 4))
    return R.ram_step(q, k, v, S, z, **{"position": 0, "num_factors": 2, "top_k": 3, **kw})


STEP_CASES = [
    ("state wrong M", dict(state=R.initial_state(2, 3, 64, 4)), ValueError, r"S has shape \(2, 3, 64, 4\)"),
    ("position<0", dict(position=-1), ValueError, r"position must be in \[0"),
    ("position length", dict(position=torch.tensor([1, 2, 3])), ValueError, "position has length 3"),
    ("position float", dict(position=torch.tensor([1.0, 2.0])), TypeError, "position must have dtype"),
    ("gamma<0", dict(gamma=-1.0), ValueError, "gamma must be"),
]


@pytest.mark.parametrize("kw,exc,match", [c[1:] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES])
def test_bad_step_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        _step(**kw)


def test_rejected_step_leaves_state_untouched():
    S, z = R.initial_state(2, 3, 16, 4)
    S += 1.0
    before = S.clone(), z.clone()
    with pytest.raises(ValueError):
        _step(state=(S, z), gamma=-1.0)
    assert torch.equal(S, before[0]) and torch.equal(z, before[1])


def test_wrong_device_is_named():
    q, k, v = qkv()
    meta_k = k.to("meta")
    with pytest.raises(ValueError, match="k must be on device cpu"):
        attn(q, meta_k, v)
