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


def test_results_md_holds_the_tables_the_summaries_give(tmp_path):
    """RESULTS.md is what ``--write`` makes of it: writing the tables into a copy changes no byte."""
    doc = (ROOT / "docs" / "RESULTS.md").read_bytes()
    tables = _printed_tables()
    assert tables.count("| ") > 100  # the summaries are committed, so the tables are not empty
    copy = tmp_path / "RESULTS.md"
    copy.write_bytes(doc)
    assert _tables.write_into(copy, tables.replace("#### ", "### ")) is None
    if copy.read_bytes() != doc:
        lines = doc.decode().splitlines()
        missing = [line for line in tables.splitlines() if line not in lines]
        raise AssertionError(f"docs/RESULTS.md's generated block is stale ({len(missing)} printed line(s) not in it, "
                             f"e.g. {missing[:2]}): run python benchmarks/mqar_tables.py --write docs/RESULTS.md")


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


def test_write_keeps_crlf_line_endings_and_markers_with_trailing_spaces(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_bytes(f"before\r\n{BEGIN_MARKER}  \r\nstale\r\n{END_MARKER}\r\nafter\r\n".encode())
    assert _write(doc).returncode == 0
    data = doc.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") > 100 and b"stale" not in data
    assert data.startswith(b"before\r\n") and data.endswith(f"{END_MARKER}\r\nafter\r\n".encode())


def test_write_refuses_a_document_without_one_pair_of_markers_and_leaves_it_alone(tmp_path):
    for body in ("no markers at all\n", f"{END_MARKER}\n{BEGIN_MARKER}\n",
                 f"{BEGIN_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n",
                 f"{BEGIN_MARKER}\n{END_MARKER}\n{END_MARKER}\n"):
        doc = tmp_path / "doc.md"
        doc.write_text(body)
        done = _write(doc)
        assert done.returncode == 2 and done.stderr.startswith("error: --write") and done.stderr.count("\n") == 1
        assert doc.read_text() == body
    done = _write(tmp_path / "absent.md")
    assert done.returncode == 2 and "no such file" in done.stderr and done.stderr.count("\n") == 1


def test_the_band_summary_at_the_top_quotes_the_generated_band_table():
    """The at-a-glance copy of the band-by-band table must say what the generated one says: one row per generated
    band, each with the same state, baseline (DeltaNet), RAM-Net row, lr, state ratio, means, difference and seed
    ranges' relation."""
    doc = (ROOT / "docs" / "RESULTS.md").read_text()
    summary = doc.split("The equal-state goal, band by band")[1].split("## Status")[0]
    generated = _printed_tables().split("band by band (means over seeds)")[1].split("####")[0].splitlines()
    generated = [line for line in generated if line.startswith("| ") and line[2].isdigit()]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(generated) >= 6
    for row in rows:
        state, dn_mean, ram, ratio, ram_mean, difference, seeds = [c.strip() for c in row.strip("|").split("|")]
        label, lr = ram.strip("`").split("`, lr ")
        match = [g for g in generated if g.startswith(f"| {state} |")]
        assert len(match) == 1, f"no generated band line for {state}"
        expected = ("| deltanet-", f"{dn_mean} (", f"| {label} ({float(lr):g}) | {ratio} | {ram_mean} (",
                    f"| {difference} | {seeds.replace('DeltaNet', 'baseline')} |")
        assert all(piece in match[0] for piece in expected), f"the band summary's {state} row: {row} != {match[0]}"
