"""``ramnet.export`` exposes ``to_onnx`` and ``to_aoti`` lazily: importing the package loads neither the exporter
modules nor ``onnx`` / ``onnxscript``; asking for a name loads it, and it is the exporter module's own function."""
import subprocess
import sys

import pytest

HEAVY = ("onnx", "onnxscript", "onnxruntime", "ramnet.export.onnx", "ramnet.export.aoti", "torch.onnx",
         "torch._inductor")


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_import_is_cheap_and_names_load_on_use():
    out = run_python(
        "import sys\n"
        "import ramnet.export as e\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "print(sorted(n for n in ('to_onnx', 'to_aoti') if n in dir(e)))\n"
        "from ramnet.export import to_onnx, to_aoti\n"
        "import ramnet.export.onnx, ramnet.export.aoti\n"
        "print(to_onnx is ramnet.export.onnx.to_onnx, to_aoti is ramnet.export.aoti.to_aoti)\n")
    loaded, listed, same = out.splitlines()
    assert loaded == "[]", f"import ramnet.export loaded {loaded}"
    assert listed == "['to_aoti', 'to_onnx']" and same == "True True"


def test_unknown_name_is_an_attribute_error():
    import ramnet.export

    with pytest.raises(AttributeError, match="has no attribute 'to_tensorrt'"):
        ramnet.export.to_tensorrt  # noqa: B018
    assert not hasattr(ramnet.export, "nothing_here")
    assert set(ramnet.export.__all__) == {"to_onnx", "to_aoti"}
