"""The backend tables: priority choice, forcing with ``use_backend`` (names and knob variants), the report of
``explain_*``, the lazily read ``RAMNET_BACKENDS``, and one ``supports`` shared by forward, backward and decode."""
import dataclasses
import subprocess
import sys

import pytest
import torch

import ramnet.ops as R
from ramnet.ops.address.backends import ADDRESS, AddressProblem, TritonAddress
from ramnet.ops.memory.backends import SCAN, STEP, ScanProblem, SegmentScan, StepProblem


def _scan_problem(**kw):
    base = dict(device_type="cuda", value_dtype=torch.bfloat16, state_dtype=torch.float32, batch=4, tokens=4096,
                heads=16, top_k=8, d_v=128, num_slots=1024, num_states=4, varlen=False)
    return ScanProblem(**{**base, **kw})


def test_priority_order_and_reasons():
    assert R.list_backends() == {"address": ["triton", "reference"], "scan": ["segment", "recurrent", "reference"],
                            "step": ["fused", "reference"]}
    assert SCAN.choose(_scan_problem()).name == "segment"
    assert SCAN.choose(_scan_problem(state_dtype=torch.float64)).name == "reference"
    assert SCAN.choose(_scan_problem(device_type="cpu")).name == "reference"
    big = _scan_problem(num_states=2**14, heads=2**8, num_slots=2**10)  # 2**32 (state, slot) programs
    assert SCAN.choose(big).name == "recurrent"
    assert "grid limit" in SegmentScan().supports(big)


def test_forward_backward_and_decode_share_one_supports():
    wide = AddressProblem("cuda", torch.float16, num_factors=2, d_p=32, top_k=16, num_slots=1024)
    assert ADDRESS.choose(wide).name == "reference"  # forward and backward both ask this
    step = StepProblem("cuda", torch.float16, torch.float32, wide)
    assert STEP.choose(step).name == "reference"
    assert STEP.explain(step).verdicts[0][1] == TritonAddress().supports(wide)
    fp64_state = StepProblem("cuda", torch.float32, torch.float64, dataclasses.replace(wide, d_p=4, top_k=4))
    assert "fp32 state" in STEP.explain(fp64_state).verdicts[0][1]


def test_use_backend_forces_and_restores():
    q, k, v = (torch.randn(1, 5, 2, 12) for _ in range(3))
    with R.use_backend(scan="reference", address=ADDRESS.get("reference")):
        choice = R.explain_attention(q, v, num_factors=3, top_k=4)
        assert choice["scan"].forced and choice["scan"].chosen.name == "reference"
        with R.use_backend(scan="segment"):  # refuses a CPU tensor: a clear error, never a silent fall-back
            with pytest.raises(ValueError, match="forced scan backend 'segment' cannot run this input: needs CUDA"):
                R.ram_attention(q, k, v, num_factors=3, top_k=4)
        R.ram_attention(q, k, v, num_factors=3, top_k=4)
    assert not R.explain_attention(q, v, num_factors=3, top_k=4)["scan"].forced
    with pytest.raises(ValueError, match="unknown scan backend 'chunked'; scan backends: segment, recurrent"):
        with R.use_backend(scan="chunked"):
            pass
    with pytest.raises(ValueError, match="unknown op 'attention'"):
        with R.use_backend(attention="reference"):
            pass
    with pytest.raises(TypeError, match="ReferenceAddress is not a scan backend"):
        with R.use_backend(scan=ADDRESS.get("reference")):
            pass


def test_knobs_are_backend_fields():
    variant = dataclasses.replace(SegmentScan(), atomic_read=False, num_warps=2)
    assert (variant.name, variant.atomic_read, variant.num_warps) == ("segment", False, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SegmentScan().num_warps = 4  # knobs are not mutable globals
    with pytest.raises(ValueError, match="merge must be 'topk' or 'rank'"):
        TritonAddress(merge="bitonic")
    with pytest.raises(ValueError, match="num_warps must be a power of two"):
        SegmentScan(num_warps=3)
    with pytest.raises(ValueError, match="max_candidates must be a power of two"):
        TritonAddress(max_candidates=2**40)


def test_explain_reports_a_refusing_forced_backend_instead_of_raising():
    q, v = torch.randn(1, 3, 2, 12), torch.randn(1, 3, 2, 8)
    with R.use_backend(scan="segment"):
        choice = R.explain_attention(q, v, num_factors=3, top_k=4)["scan"]
    assert choice.chosen is None and "cannot run this input: needs CUDA" in str(choice)


def test_explain_reports_every_verdict():
    report = str(R.explain_step(torch.randn(2, 2, 12), torch.zeros(2, 2, 64, 8), num_factors=3, top_k=4)["step"])
    assert report.splitlines() == ["step: reference", "  fused: needs a CUDA tensor, got cpu",
                                   "  reference: supports it"]


def test_environment_variable_is_read_lazily_and_validated(monkeypatch):
    code = "import os; os.environ['RAMNET_BACKENDS'] = 'scan=nope'; import ramnet; print('imported')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "imported" in out.stdout  # a bad value never breaks the import
    q, k, v = (torch.randn(1, 3, 2, 12) for _ in range(3))
    monkeypatch.setenv("RAMNET_BACKENDS", "scan=nope")
    with pytest.raises(ValueError, match="unknown scan backend 'nope'"):
        R.ram_attention(q, k, v, num_factors=3, top_k=4)
    monkeypatch.setenv("RAMNET_BACKENDS", "scan=reference, scan=segment")
    with pytest.raises(ValueError, match="names the scan backend twice"):
        R.ram_attention(q, k, v, num_factors=3, top_k=4)
    monkeypatch.setenv("RAMNET_BACKENDS", " scan=reference, ,")
    assert R.explain_attention(q, v, num_factors=3, top_k=4)["scan"].forced
    monkeypatch.delenv("RAMNET_BACKENDS")
    assert not R.explain_attention(q, v, num_factors=3, top_k=4)["scan"].forced


def test_no_module_reads_the_environment_at_import():
    """No statement that runs at import (module level, class bodies, default arguments and decorators
    included) mentions ``environ`` or ``getenv``: environment reads live inside functions."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = []

    def visit(node, path):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for part in [*node.args.defaults, *node.args.kw_defaults, *getattr(node, "decorator_list", [])]:
                if part is not None:
                    visit(part, path)
            return  # a function body runs when called, not at import
        if isinstance(node, (ast.Name, ast.Attribute, ast.alias)):
            name = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "name", None)
            if name in ("environ", "getenv", "environb"):
                offenders.append(f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}")
        for child in ast.iter_child_nodes(node):
            visit(child, path)

    for pattern in ("ops/**/*.py", "ramnet/**/*.py", "export/*.py", "runtime/*.py"):
        for path in root.glob(pattern):
            visit(ast.parse(path.read_text()), path)
    assert not offenders, "environment read at import: " + ", ".join(offenders)
