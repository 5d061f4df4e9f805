"""docs/RESULTS.md quotes the tables that ``benchmarks/mqar_tables.py`` prints from the committed summaries. A
summary committed without regenerating the tables (or a table edited by hand) would leave the document stating
numbers that no committed command gives: check that the printed tables stand between its markers, whole."""
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "mqar_tables.py"
_spec = importlib.util.spec_from_file_location("mqar_tables", SCRIPT)  # a script, not a package: load it by path
_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tables)
BEGIN_MARKER, END_MARKER = _tables.BEGIN_MARKER, _tables.END_MARKER


def _printed_tables() -> str:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.replace("### ", "#### ").strip()  # one heading level down in RESULTS.md


def test_results_md_holds_the_tables_the_summaries_give():
    doc = (ROOT / "docs" / "RESULTS.md").read_text()
    tables = _printed_tables()
    assert tables.count("| ") > 100  # the summaries are committed, so the tables are not empty
    assert doc.count(BEGIN_MARKER) == 1 and doc.count(END_MARKER) == 1
    between = doc.split(BEGIN_MARKER)[1].split(END_MARKER)[0].strip()
    missing = [line for line in tables.splitlines() if line not in between.splitlines()]
    assert not missing, (f"docs/RESULTS.md lacks {len(missing)} line(s) that mqar_tables.py prints, e.g. "
                         f"{missing[:3]}: run python benchmarks/mqar_tables.py --write docs/RESULTS.md")
    assert between == tables, "docs/RESULTS.md's generated block differs: rerun mqar_tables.py --write"


def _write(doc: Path):
    return subprocess.run([sys.executable, str(SCRIPT), "--write", str(doc)], capture_output=True, text=True,
                          timeout=120)


def test_write_replaces_only_the_block_between_the_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nprose before\n\n{BEGIN_MARKER}\n\nstale | table\n\n{END_MARKER}\n\nprose after\n")
    done = _write(doc)
    assert done.returncode == 0 and done.stderr == "", done
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose before\n\n" + BEGIN_MARKER + "\n\n#### ")
    assert text.endswith("\n\n" + END_MARKER + "\n\nprose after\n") and "stale | table" not in text
    assert text.split(BEGIN_MARKER)[1].split(END_MARKER)[0].strip() == _printed_tables()
    assert _write(doc).returncode == 0 and doc.read_text() == text  # a second write changes nothing


def test_write_refuses_a_document_without_one_pair_of_markers_and_leaves_it_alone(tmp_path):
    for body in ("no markers at all\n", f"{END_MARKER}\n{BEGIN_MARKER}\n", f"{BEGIN_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n"):
        doc = tmp_path / "doc.md"
        doc.write_text(body)
        done = _write(doc)
        assert done.returncode == 2 and done.stderr.startswith("error: --write") and done.stderr.count("\n") == 1
        assert doc.read_text() == body
    done = _write(tmp_path / "absent.md")
    assert done.returncode == 2 and "no such file" in done.stderr and done.stderr.count("\n") == 1
