"""The segment-walk scan's own paths (``ops/memory/triton_segment.py``): event sorting, int64 keys, the
deterministic read-row forward (knobs of the ``SegmentScan`` backend), and its refusal when the grid would be too
big. The main reference grid runs in ``test_triton_kernels.py`` and ``test_varlen.py`` (both scans)."""
import os

import pytest
import torch

from .memory_cases import scan_event_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton on CPU needs TRITON_INTERPRET=1 before import (tests/conftest.py sets it)",
                allow_module_level=True)

CASE = (2, 9, 3, 2, 3, 5, 4, 0.7)  # B, T, H, U, d_p, d_v, K, gamma: M = 9, so slots repeat often


def _check_against_reference(backend, seed=3, grad_tol=2e-5):
    from ramnet.ops.memory.backends import ScanArgs, ScanProblem
    from ramnet.ops.memory.naive import pdma_parallel, pdma_parallel_backward

    B, T, H, U, d_p, d_v, K, gamma = CASE
    v, widx, ww, ridx, rw, S0, z0, gen = scan_event_inputs(B, T, H, U, d_p, d_v, K, seed=seed)
    go, gS, gz = torch.randn(v.shape, generator=gen), torch.randn(S0.shape, generator=gen), torch.randn(z0.shape,
                                                                                                     generator=gen)
    d64 = lambda *ts: [t.double() for t in ts]
    ref = [*pdma_parallel(*d64(v), widx, ww.double(), ridx, rw.double(), *d64(S0, z0), gamma, 1e-6),
           *pdma_parallel_backward(*d64(go, gS, gz, v), widx, ww.double(), ridx, rw.double(), *d64(S0, z0), gamma,
                                   1e-6, 1e-3)]
    on = lambda *ts: [t.to(DEVICE) for t in ts]
    args = ScanArgs(*on(v, widx, ww, ridx, rw, S0, z0), None, gamma, 1e-6, 1e-3)
    problem = ScanProblem.of(args)
    got = [*backend.forward(problem, args), *backend.backward(problem, args, *on(go, gS, gz))]
    for i, (name, g, r) in enumerate(zip(["o", "S", "z", "dv", "dww", "drw", "dS0", "dz0"], got, ref)):
        tol = 2e-5 if i < 3 else grad_tol  # the forward never reads saved rows
        if tol is not None:  # None: the caller compares the gradients itself
            torch.testing.assert_close(g.cpu().double(), r, rtol=tol, atol=tol, msg=lambda m: f"{name}: {m}")
    return [g.cpu().double() for g in got], ref


@pytest.fixture
def segment():
    from ramnet.ops.memory import triton_segment

    return triton_segment


def test_sorted_events_partition_by_state_slot_time(segment):
    gen = torch.Generator().manual_seed(0)
    B, T, H, K, M = 2, 7, 3, 2, 5
    idx = torch.stack([torch.randperm(M, generator=gen)[:K] for _ in range(B * T * H)]).view(B, T, H, K)
    (keys, order, bounds), _ = segment.segment_plan(idx, idx, M, B)
    assert keys.dtype == torch.int32 and bool((keys[1:] > keys[:-1]).all())  # unique and increasing
    assert bounds[0] == 0 and bounds[-1] == keys.numel() and bool((bounds[1:] >= bounds[:-1]).all())
    b, t, h, k = torch.unravel_index(order, (B, T, H, K))
    segments = (b * H + h) * M + idx[b, t, h, k]
    for g in range(B * H * M):  # segment g owns exactly its events, in time order
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        assert bool((segments[lo:hi] == g).all()) and bool((t[lo:hi][1:] > t[lo:hi][:-1]).all())
    assert int((segments == torch.arange(B * H * M).repeat_interleave(torch.diff(bounds))).sum()) == order.numel()


def test_varlen_keys_restart_the_state_at_each_sequence(segment):
    """With ``cu_seqlens`` the state of a token is its sequence's: keys equal ``((seq * H + h) * M + slot) * T + t``."""
    T, H, K, M = 7, 2, 2, 5
    idx = torch.randint(0, M, (1, T, H, K), generator=torch.Generator().manual_seed(1))
    cu = torch.tensor([0, 3, 7])
    (keys, order, bounds), _ = segment.segment_plan(idx, idx, M, 2, cu_seqlens=cu)
    b, t, h, k = torch.unravel_index(order, (1, T, H, K))
    seq = (t >= 3).long()
    assert torch.equal(keys.long(), ((seq * H + h) * M + idx[b, t, h, k]) * T + t)
    assert bounds.numel() == 2 * H * M + 1 and int(bounds[-1]) == keys.numel()


def test_int64_keys_match_reference():
    from ramnet.ops.memory.backends import SegmentScan

    _check_against_reference(SegmentScan(int32_keys_below=0))


def test_deterministic_read_rows_match_reference():
    from ramnet.ops.memory.backends import SegmentScan

    _check_against_reference(SegmentScan(atomic_read=False))


def test_the_backward_recompute_skips_the_read_out(segment, monkeypatch):
    """The backward needs the saved rows, not ``o``: its recompute must not launch the read-out kernel (it cost
    5-11% of fwd+bwd on the H200). The deterministic forward still uses it, so the patch below can catch it."""
    from ramnet.ops.memory.backends import SegmentScan

    class Forbidden:
        def __getitem__(self, grid):
            raise AssertionError("the read-out kernel was launched")

    monkeypatch.setattr(segment, "_read_out_kernel", Forbidden())
    # forward by atomics, backward by the recompute that saves read rows too
    _check_against_reference(SegmentScan(derive_read_rows=False))
    with pytest.raises(AssertionError, match="read-out kernel was launched"):
        _check_against_reference(SegmentScan(atomic_read=False))


@pytest.fixture
def deterministic_mode():
    """``torch.use_deterministic_algorithms(True)`` for the test, then the process's own setting back."""
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(was, warn_only=warn_only)


def _record_dv_mode(monkeypatch):
    """Wrap the backward kernel so the test sees how each launch sums ``dv`` (per-write rows or atomics)."""
    from ramnet.ops.memory import triton_segment_bwd

    kernel, modes = triton_segment_bwd._segment_bwd_kernel, []

    class Recording:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                modes.append(kwargs["DV_PER_WRITE"])
                return kernel[grid](*args, **kwargs)
            return launch

    monkeypatch.setattr(triton_segment_bwd, "_segment_bwd_kernel", Recording())
    return modes


@pytest.mark.parametrize("derive, budget", [(True, None), (False, None), (True, 1e-6)])
def test_deterministic_mode_sums_dv_without_atomics(monkeypatch, deterministic_mode, derive, budget):
    """Under ``torch.use_deterministic_algorithms`` the backward stores each write's ``dv`` term in its own row and
    sums the K rows with ``torch.sum``, so a GPU run repeats bit for bit; the gradients still match the reference,
    also one head group at a time (a tiny rows budget)."""
    from ramnet.ops.memory.backends import SegmentScan

    modes = _record_dv_mode(monkeypatch)
    _check_against_reference(SegmentScan(derive_read_rows=derive, rows_budget_mib=budget))
    assert modes == [True] * (1 if budget is None else CASE[2])


def test_default_mode_keeps_the_atomic_dv(monkeypatch):
    from ramnet.ops.memory.backends import SegmentScan

    assert not torch.are_deterministic_algorithms_enabled()
    modes = _record_dv_mode(monkeypatch)
    _check_against_reference(SegmentScan())
    assert modes == [False]


def test_per_write_dv_equals_the_atomic_dv():
    """Both ways of summing ``dv`` add the same K terms: only their order may differ."""
    from ramnet.ops.memory import triton_segment
    from ramnet.ops.memory.backends import ScanArgs
    from ramnet.ops.memory.triton_segment_bwd import launch_segment_bwd

    B, T, H, U, d_p, d_v, K, gamma = CASE
    v, widx, ww, ridx, rw, S0, z0, gen = scan_event_inputs(B, T, H, U, d_p, d_v, K, seed=5)
    go = torch.randn(v.shape, generator=gen)
    on = lambda *ts: [t.to(DEVICE) for t in ts]
    args = ScanArgs(*on(v, widx, ww, ridx, rw, S0, z0), None, gamma, 1e-6, 1e-3)
    saved_w, plan = triton_segment.launch_write_rows(args)
    dvs = []
    for deterministic in (False, True):
        gS, gz = torch.zeros_like(args.S0, dtype=torch.float32), torch.zeros_like(args.z0, dtype=torch.float32)
        d_ww, d_rw = torch.empty_like(args.write_w), torch.empty_like(args.read_w)
        dvs.append(launch_segment_bwd(go.to(DEVICE), args.v, args.write_w, args.read_w, plan, saved_w, None, gS, gz,
                                      d_ww, d_rw, gamma, 1e-6, 1e-3, initial_state=(args.S0, args.z0),
                                      deterministic=deterministic))
    assert dvs[0].shape == dvs[1].shape == v.shape
    assert float(dvs[0].abs().max()) > 0
    torch.testing.assert_close(dvs[1], dvs[0], rtol=1e-6, atol=1e-6)


def test_bf16_saved_rows_round_only_the_gradients():
    """``saved_rows="bf16"`` stores the recompute's rows in bf16: the forward is exact, the gradients carry bf16
    rounding of the saved rows (relative 2^-8 per row), and they differ from the fp32-row gradients (so the
    knob reaches the kernels)."""
    from ramnet.ops.memory.backends import SegmentScan

    # saved read rows: each gradient element within 2e-2 (derived rows are checked in norm below)
    got, ref = _check_against_reference(SegmentScan(saved_rows="bf16", derive_read_rows=False), grad_tol=2e-2)
    exact, _ = _check_against_reference(SegmentScan(saved_rows="fp32", derive_read_rows=False))
    assert any(not torch.equal(a, b) for a, b in zip(got[3:], exact[3:]))


def test_derived_read_rows_match_reference_also_in_bf16_rows():
    """``derive_read_rows``: the recompute stores write rows only and each read's row is rebuilt from the write
    before it (or S0); the gradients match the float64 reference as the saved-row path does."""
    from ramnet.ops.memory.backends import SegmentScan

    _check_against_reference(SegmentScan(derive_read_rows=True))
    # bf16 rows: each gradient within 1% of the reference in norm (an element can lose more where terms cancel)
    got, ref = _check_against_reference(SegmentScan(derive_read_rows=True, saved_rows="bf16"), grad_tol=None)
    for name, g, r in zip(["dv", "dww", "drw", "dS0", "dz0"], got[3:], ref[3:]):
        assert float((g - r).norm() / r.norm()) < 1e-2, name


def test_saved_rows_auto_follows_the_values_dtype(monkeypatch):
    """The default ``saved_rows="auto"`` stores bf16 rows for bf16 values only, and the choice reaches the
    launch of the recompute (both recompute paths)."""
    from ramnet.ops.memory import triton_segment
    from ramnet.ops.memory.backends import SegmentScan

    backend = SegmentScan()
    assert (backend.saved_rows, backend.derive_read_rows) == ("auto", True)
    assert backend.rows_dtype(torch.zeros(1, dtype=torch.bfloat16)) == "bf16"
    assert backend.rows_dtype(torch.zeros(1, dtype=torch.float16)) == "fp32"
    assert backend.rows_dtype(torch.zeros(1)) == "fp32"
    assert SegmentScan(saved_rows="fp32").rows_dtype(torch.zeros(1, dtype=torch.bfloat16)) == "fp32"
    seen = []

    class Stop(Exception):
        pass

    def spy(*args, rows_dtype, **kwargs):
        seen.append(rows_dtype)
        raise Stop

    monkeypatch.setattr(triton_segment, "launch_write_rows", spy)
    monkeypatch.setattr(triton_segment, "launch_segment", spy)
    for derive in (True, False):
        args = type("Args", (), {"v": torch.zeros(1, dtype=torch.bfloat16)})()
        with pytest.raises(Stop):
            SegmentScan(derive_read_rows=derive)._backward_heads(args, None, None, None)
    assert seen == ["bf16", "bf16"]


def test_saved_rows_knob_is_checked():
    from ramnet.ops.memory.backends import SegmentScan

    with pytest.raises(ValueError, match="SegmentScan.saved_rows must be one of fp32, bf16, auto"):
        SegmentScan(saved_rows="fp16")
    with pytest.raises(TypeError, match="derive_read_rows must be a bool"):
        SegmentScan(derive_read_rows=1)


def test_the_default_segment_backend_matches_reference():
    from ramnet.ops.memory.backends import SegmentScan

    _check_against_reference(SegmentScan())


def test_too_many_segments_is_refused_and_the_recurrent_backend_chosen():
    from dataclasses import replace

    from ramnet.ops.memory.backends import SCAN, ScanProblem, SegmentScan
    from ramnet.ops.backends import OpBackends

    B, T, H, U, d_p, d_v, K, gamma = CASE
    problem = ScanProblem("cuda", torch.float32, torch.float32, B, T, H, K, d_v, d_p**U, B, False)
    small_grid = replace(SegmentScan(), max_segments=1)
    assert "exceed the grid limit 1" in small_grid.supports(problem)
    table = OpBackends("scan", [small_grid, *SCAN.backends[1:]])
    assert table.choose(problem).name == "recurrent"
    huge = replace(problem, num_states=1, heads=1, num_slots=2**31 - 1, tokens=2**32)  # keys beyond int64's range
    assert "overflow int64" in SegmentScan().supports(huge)
    with pytest.raises(ValueError, match="int32_keys_below must be in"):
        SegmentScan(int32_keys_below=2**40)  # larger keys would wrap in int32
    with pytest.raises(ValueError, match="max_segments must be in"):
        SegmentScan(max_segments=2**40)


@pytest.mark.parametrize("groups", [[(0, 1), (1, 2), (2, 3)], [(0, 2), (2, 3)]], ids=["per-head", "uneven"])
@pytest.mark.parametrize("derive", [True, False], ids=["derived", "saved"])
def test_backward_in_head_groups_matches_reference(monkeypatch, groups, derive):
    """Above ``rows_budget_mib`` the backward runs head group after head group (each a scan of its own): the
    gradients and the initial-state gradients equal the float64 reference as with all heads at once."""
    from ramnet.ops.memory.backends import SegmentScan

    calls = []

    def head_groups(self, a):
        calls.append(a.v.shape[2])
        return groups

    monkeypatch.setattr(SegmentScan, "head_groups", head_groups)
    _check_against_reference(SegmentScan(derive_read_rows=derive, saved_rows="fp32"))
    assert calls == [CASE[2]]


def test_head_groups_keep_each_group_within_the_rows_budget():
    """The fewest groups whose saved rows fit ``rows_budget_mib``, balanced to within one head; one group without
    a budget or when they fit."""
    from ramnet.ops.memory.backends import ScanArgs, SegmentScan

    def args(B, T, H, d_v, K, dtype=torch.bfloat16):
        meta = lambda *shape, dt=dtype: torch.empty(shape, dtype=dt, device="meta")
        return ScanArgs(meta(B, T, H, d_v), meta(B, T, H, K, dt=torch.int64), meta(B, T, H, K),
                        meta(B, T, H, K, dt=torch.int64), meta(B, T, H, K), meta(B, H, 1024, d_v, dt=torch.float32),
                        meta(B, H, 1024, dt=torch.float32), None, 1.0, 1e-6, 1e-3)

    big = args(4, 4096, 16, 128, 8)  # 2^21 write events x (128 bf16 + z fp32) = 520 MiB of rows
    assert SegmentScan().saved_row_bytes(big) == 4 * 4096 * 16 * 8 * (128 * 2 + 4)
    per_head = SegmentScan().saved_row_bytes(big) / 16
    assert 7 * per_head <= 256 * 2**20 < 8 * per_head  # at most 7 heads (227 MiB) a group: 3 groups
    assert SegmentScan().head_groups(big) == [(0, 6), (6, 11), (11, 16)]  # 6 + 5 + 5, not 7 + 7 + 2
    long = args(1, 8192, 16, 128, 8)  # 260 MiB of rows: 2 groups (15 heads would fit), of 8 each, not 15 + 1
    assert SegmentScan().head_groups(long) == [(0, 8), (8, 16)]
    bigger = args(9, 4096, 16, 128, 8)  # 1170 MiB of rows: 3 heads (219 MiB) a group, never 4 (292 MiB)
    assert SegmentScan().head_groups(bigger) == [(0, 3), (3, 6), (6, 9), (9, 12), (12, 14), (14, 16)]
    for h0, h1 in SegmentScan().head_groups(bigger):
        assert (h1 - h0) * SegmentScan().saved_row_bytes(bigger) / 16 <= 256 * 2**20
    assert SegmentScan(rows_budget_mib=None).head_groups(big) == [(0, 16)]
    assert SegmentScan(rows_budget_mib=1024).head_groups(big) == [(0, 16)]
    assert SegmentScan(derive_read_rows=False, saved_rows="fp32").saved_row_bytes(big) == \
        2 * 4 * 4096 * 16 * 8 * (128 * 4 + 4)
    assert SegmentScan(rows_budget_mib=1).head_groups(big) == [(h, h + 1) for h in range(16)]  # at most H groups
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # + the fp32 dv row per write event: 1,544 MiB, 2 heads (193 MiB) a group
    try:
        assert SegmentScan().saved_row_bytes(big) == 4 * 4096 * 16 * 8 * (128 * 2 + 4 + 128 * 4)
        assert SegmentScan().head_groups(big) == [(h, h + 2) for h in range(0, 16, 2)]
    finally:
        torch.use_deterministic_algorithms(was)
    assert SegmentScan().head_groups(args(8, 1024, 8, 64, 8)) == [(0, 8)]  # 66 MiB: one group
    assert SegmentScan(rows_budget_mib=0.3).head_groups(args(1, 256, 4, 32, 8)) == [(0, 2), (2, 4)]  # 0.53 MiB
    for bad in (0, -1, float("nan"), float("inf"), True, "256"):
        with pytest.raises(ValueError, match="rows_budget_mib must be a number > 0"):
            SegmentScan(rows_budget_mib=bad)
