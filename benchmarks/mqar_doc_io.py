"""Reading the MQAR sweep summaries and writing generated tables into a document, for mqar_tables.py.

A summary that cannot be read, or is not the shape a sweep writes, is a SummaryError naming the file; a document
is rewritten only between its one pair of marker lines, whole or not at all."""
from __future__ import annotations

import json
import os
from pathlib import Path

# the lines around the generated tables in a document (RESULTS.md), whose headings sit one level lower there
BEGIN_MARKER = "<!-- mqar_tables.py: begin (generated from the sweep summaries; rerun with --write, do not edit) -->"
END_MARKER = "<!-- mqar_tables.py: end -->"


class SummaryError(ValueError):
    """A summary file that cannot be read, or is not the shape the sweep writes."""


def read_json(path: Path, kind: type):
    """``path``'s JSON, which must be a ``kind`` (list or dict); a SummaryError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SummaryError(f"{path} cannot be read as JSON ({error})") from None
    if not isinstance(data, kind):
        raise SummaryError(f"{path} holds a JSON {type(data).__name__}, not the {kind.__name__} a sweep writes")
    return data


def load(results: Path, name: str) -> tuple[list[dict], dict]:
    """(best-lr rows, the whole sweep) of one summary, or ([], {}) when it was not run."""
    best, sweep = results / f"{name}.json", results / f"{name}_sweep.json"
    if not best.is_file():
        return [], {}
    return read_json(best, list), (read_json(sweep, dict) if sweep.is_file() else {})


def write_into(doc: Path, tables: str) -> str | None:
    """Replace the lines between ``doc``'s markers with ``tables`` (headings one level down); an error, or None.
    The document is read and checked whole first, and swapped in whole (its line endings kept), so a bad one is
    left as it was."""
    if not doc.is_file():
        return f"--write {doc}: no such file"
    try:
        with open(doc, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        return f"--write {doc}: cannot be read as UTF-8 text ({error})"
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(newline)
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        return (f"--write {doc}: needs one line {BEGIN_MARKER!r} before one line {END_MARKER!r} "
                f"(found {len(begins)} begin and {len(ends)} end marker line(s))")
    shifted = [("#" + line) if line.startswith("### ") else line for line in tables.split("\n")]
    temporary = doc.with_name(f".{doc.name}.mqar_tables")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(newline.join(lines[:begins[0] + 1] + [""] + shifted + [""] + lines[ends[0]:]))
        os.replace(temporary, doc)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        return f"--write {doc}: cannot be written ({error})"
    return None
