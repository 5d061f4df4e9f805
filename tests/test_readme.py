"""The README's code runs as written: every ``python`` block is executed, and every ``ramnet ...`` line of a
``bash`` block is run as a command, with the sizes of its trailing ``# test: ...`` comment appended (the shell
ignores that comment). Blocks tagged ``gpu`` need CUDA and skip on CPU; ``norun`` blocks (installs) are only
listed. Each block runs in a fresh directory, which for ``bash`` blocks holds a small text file ``corpus.txt``
(the language-model commands' ``--data``)."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks():
    blocks = []
    for match in FENCE.finditer(README.read_text()):
        lang, tags, body = match.group(1), set(match.group(2).split()), match.group(3)
        line = README.read_text().count("\n", 0, match.start()) + 1
        blocks.append(pytest.param(lang, tags, body, id=f"{lang}-line{line}"))
    return blocks


BLOCKS = _blocks()


def _commands(body: str):
    """``ramnet`` command lines (continuations joined) -> ``(argv, test args)``."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for line in joined.splitlines():
        command, _, comment = line.partition("#")
        if not command.strip().startswith("ramnet "):
            continue
        extra = comment.split("test:", 1)[1] if "test:" in comment else ""
        yield shlex.split(command)[1:], shlex.split(extra)


def test_the_readme_has_the_blocks_it_promises():
    langs = [(p.values[0], frozenset(p.values[1])) for p in BLOCKS]
    assert sum(lang == "python" for lang, _ in langs) >= 5
    assert any(lang == "bash" and "gpu" in tags for lang, tags in langs), "no GPU-marked block"
    assert all(lang in ("python", "bash") for lang, _ in langs), langs
    assert all(tags <= {"gpu", "norun"} for _, tags in langs), langs


@pytest.mark.parametrize("lang,tags,body", BLOCKS)
def test_readme_block_runs(lang, tags, body, tmp_path, monkeypatch):
    if "norun" in tags:
        pytest.skip("install commands: not run by the tests")
    if "gpu" in tags and not torch.cuda.is_available():
        pytest.skip("GPU-only block (needs CUDA)")
    monkeypatch.chdir(tmp_path)
    if lang == "python":
        if "ramnet.hf" in body:
            pytest.importorskip("transformers", reason="needs the [hf] extra")
        threads = torch.get_num_threads()
        try:
            exec(compile(body, f"README.md:{lang}", "exec"), {"__name__": "__readme__"})
        finally:
            torch.set_num_threads(threads)
        return
    commands = list(_commands(body))
    assert commands, "a bash block without ramnet commands"
    if "corpus.txt" in body:
        pytest.importorskip("datasets", reason="needs the [lm] extra")
        from tests.lm.corpus import write_corpus

        write_corpus(tmp_path / "corpus.txt", paragraphs=60)
        monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    for argv, extra in commands:
        if argv[0] == "plot":
            pytest.importorskip("matplotlib", reason="needs the [plot] extra")
        result = subprocess.run([sys.executable, "-m", "ramnet", *argv, *extra], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"ramnet {' '.join(argv + extra)}:\n{result.stderr[-2000:]}"
