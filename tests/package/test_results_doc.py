"""docs/RESULTS.md quotes the tables that ``benchmarks/mqar_tables.py`` prints from the committed summaries. A
summary committed without regenerating the tables (or a table edited by hand) would leave the document stating
numbers that no committed command gives: check that the printed tables stand in it verbatim."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _printed_tables() -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mqar_tables.py")], capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.replace("### ", "#### ").strip()  # one heading level down in RESULTS.md


def test_results_md_holds_the_tables_the_summaries_give():
    doc = (ROOT / "docs" / "RESULTS.md").read_text()
    tables = _printed_tables()
    assert tables.count("| ") > 100  # the summaries are committed, so the tables are not empty
    missing = [line for line in tables.splitlines() if line not in doc.splitlines()]
    assert not missing, f"docs/RESULTS.md lacks {len(missing)} line(s) that mqar_tables.py prints, e.g. {missing[:3]}"
    assert tables in doc, "docs/RESULTS.md has the tables' lines but not as one block: regenerate the section"
