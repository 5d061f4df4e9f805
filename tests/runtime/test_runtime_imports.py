"""``ramnet.runtime`` uses only public names of other packages: no ``from x import _private``, no private module
in an import path (``ramnet.ops._namespace``), no ``module._private`` attribute of an imported module
(``ramnet.model._choose``). Its own modules may share private helpers (relative imports). The one exception is
listed with its reason."""
import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
# torch documents AOTInductor loading only as torch._inductor.aoti_load_package (no public alias in torch 2.13)
ALLOWED = {"torch._inductor.aoti_load_package"}


def private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def violations(source: str) -> list[str]:
    tree = ast.parse(source)
    found, modules = [], set()  # modules: names bound to another package's module by an import
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(private(p) for p in alias.name.split(".")):
                    found.append(f"line {node.lineno}: import {alias.name}")
                modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0:  # relative imports: runtime's own modules
            if any(private(p) for p in (node.module or "").split(".")):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if private(alias.name):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in modules:
                dotted = ".".join([inner.id] + chain[::-1])
                if any(private(p) for p in chain) and not any(dotted.startswith(a) for a in ALLOWED) \
                        and not any(a.startswith(dotted) for a in ALLOWED):
                    found.append(f"line {node.lineno}: {dotted}")
    return sorted(set(found))


@pytest.mark.parametrize("path", sorted(RUNTIME.glob("*.py")), ids=lambda p: p.name)
def test_runtime_uses_only_public_names_of_other_packages(path):
    assert violations(path.read_text()) == [], path.name


def test_the_check_finds_each_kind_of_private_use():
    bad = ("from ramnet.model import _choose\n"
           "from ramnet.ops._namespace import NAME\n"
           "import ramnet.ops._autocast\n"
           "import ramnet.model as model\n"
           "model._choose(1)\n"
           "import torch\n"
           "torch._dynamo.reset()\n")
    assert [v.split(": ", 1)[1] for v in violations(bad)] == [
        "from ramnet.model import _choose", "from ramnet.ops._namespace import ...", "import ramnet.ops._autocast",
        "model._choose", "torch._dynamo", "torch._dynamo.reset"]
    ok = ("from __future__ import annotations\nfrom .ort_pyops import _record\nimport torch\n"
          "torch._inductor.aoti_load_package('p')\nself._x = 1\n")
    assert violations(ok) == []
