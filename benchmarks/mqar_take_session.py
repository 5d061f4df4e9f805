"""Copy the MQAR sweep summaries that GPU sessions brought back (their session.tgz) into benchmarks/results/.

    python benchmarks/mqar_take_session.py /work/.device/3/session.tgz /work/.device/4/session.tgz
    python benchmarks/mqar_take_session.py --dry-run TGZ ...     # say what would be copied, copy nothing
    python benchmarks/mqar_take_session.py --merge TGZ ...       # tars that each hold runs the others lack

For each sweep (mqar, ablations, mqar_seeds, mqar_paper_arch, mqar_probe, mqar_profile), the tar whose NAME_sweep.json holds the
most runs wins, and its NAME_sweep.json and the NAME.json beside it replace the committed ones. It is refused when
it lacks a committed run, or a run that another tar holds, or when any tar gives a run another fingerprint: taking
it would lose results (e.g. two calls that each ran one seed on a fresh machine, taken in together: take each call
in before the next, or pass --merge). A tar that adds nothing to the committed summary (an older machine's) is
skipped. Everything is checked before the first copy, and the files are swapped in only once all are written, so a
refusal copies nothing.
``--merge`` takes the union of the runs instead, of the committed summary and of the tars that add runs (a
committed run's record wins, then the first tar's on the command line), and writes both files with the sweep's own
summary writer (``ramnet.sweep.write_summaries``), exactly as one machine holding every run would have. Those tars
must share one spec (but for its ``out``); the committed summary's may be older.
Kept models that came back beside a tar (NAME_models.tar, or its 15 MiB pieces .partNN-of-MM) are named with the command that
unpacks them; they are not committed. Next: `python benchmarks/mqar_new_runs.py --since HEAD` lists the new runs and
`python benchmarks/mqar_tables.py --write docs/RESULTS.md` regenerates the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = ("mqar", "ablations", "mqar_seeds", "mqar_paper_arch", "mqar_probe", "mqar_profile", "mqar_long")


def _runs(text: str, where: str) -> dict[str, str | None]:
    """{run id: fingerprint} of a sweep summary's text; a ValueError naming ``where`` if it is not one"""
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not JSON ({error})") from None
    runs = summary.get("runs") if isinstance(summary, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in runs):
        raise ValueError(f"{where} is not a sweep summary (it needs a \"runs\" list of runs with an \"id\")")
    return {run["id"]: run.get("fingerprint") for run in runs}


def read_tar(path: Path) -> dict[str, tuple[str, bytes | None]]:
    """{sweep name: (its NAME_sweep.json text, the NAME.json beside it or None)} of one session tar"""
    found: dict[str, tuple[str, bytes | None]] = {}
    try:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            by_path = {PurePosixPath(m.name): m for m in members}
            for name in NAMES:
                matches = [m for m in members if PurePosixPath(m.name).name == f"{name}_sweep.json"]
                if not matches:
                    continue
                if len(matches) > 1 or not matches[0].isfile():
                    where = ", ".join(m.name for m in matches)
                    raise ValueError(f"{path}: {name}_sweep.json must be one plain file, found {where}")
                rows = by_path.get(PurePosixPath(matches[0].name).with_name(f"{name}.json"))
                found[name] = (tar.extractfile(matches[0]).read().decode(),
                               tar.extractfile(rows).read() if rows is not None and rows.isfile() else None)
    except (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeDecodeError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]  # tarfile lists every method it tried
        raise ValueError(f"{path}: cannot be read as a session tar ({first_line})") from None
    return found


def merge(committed: str | None, offered: list[str], where: str) -> tuple[bytes, bytes, int]:
    """(NAME_sweep.json, NAME.json, runs) for the union of the runs of the committed summary's text and the tars'
    summaries ``offered``, written by the sweep's own summary writer as one machine holding them all would have.
    A run's committed record wins, then the first tar's; a pending run's progress record is the first tar's that
    has one (a tar started from the committed summary, so its record is the newer), else the committed one. The
    grid is the tars' spec, which they must share (but for ``out``): the committed one may be older, and its runs
    outside the grid are kept, as the sweep keeps them. A ValueError when the specs differ or are not sweep specs,
    or when a run would not survive the writer (a committed run whose arguments the grid no longer gives)."""
    try:
        from ramnet.sweep import expand, restore_results, write_summaries  # torch: only when merging
    except ImportError as error:
        raise ValueError(f"--merge needs ramnet importable ({error})") from None
    tars = [json.loads(text) for text in offered]
    specs = [summary.get("spec") for summary in tars]
    if not all(isinstance(spec, dict) and spec.get("models") and isinstance(spec.get("out"), str) for spec in specs):
        raise ValueError(f"{where}: --merge needs each tar's summary to hold its sweep spec (with models and out)")
    if any({**spec, "out": None} != {**specs[0], "out": None} for spec in specs[1:]):
        raise ValueError(f"{where}: --merge needs the same sweep spec (but for its out) in every tar's summary")
    base = [json.loads(committed)] if committed is not None else []
    summaries = base + tars  # runs: the committed record first
    for summary in summaries:
        if not isinstance(summary.get("unfinished", []), list):
            raise ValueError(f"{where}: a summary's \"unfinished\" is not a list")
    first: dict[str, dict] = {}
    for summary in summaries:
        for run in summary["runs"]:
            first.setdefault(run["id"], run)
    waiting: dict[str, dict] = {}
    for summary in tars + base:  # progress: the tars' records first (they are the newer)
        for record in summary.get("unfinished", []):
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                waiting.setdefault(record["id"], record)
    runs = list(first.values())  # the writer puts both lists in the grid's order
    try:
        with tempfile.TemporaryDirectory(prefix="mqar-merge-") as folder:
            local = {**specs[0], "out": folder}
            Path(folder, "mqar_sweep.json").write_text(
                json.dumps({"spec": local, "runs": runs, "unfinished": list(waiting.values())}))
            grid = expand(local)
            restore_results(local, grid)
            write_summaries(local, grid)
            merged = json.loads(Path(folder, "mqar_sweep.json").read_text())
            best = Path(folder, "mqar.json").read_bytes()
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"{where}: cannot be merged ({type(error).__name__}: {error})") from None
    lost = sorted(set(first) - {r["id"] for r in merged["runs"]})
    if lost:
        raise ValueError(f"{where}: merging would drop {len(lost)} run(s), e.g. {lost[0]} (its arguments are not "
                         "the grid's)")
    merged["spec"]["out"] = specs[0]["out"]
    return json.dumps(merged, indent=2).encode(), best, len(merged["runs"])


def plan(tars: list[Path], results: Path, merging: bool = False) -> tuple[dict[Path, bytes], list[str]]:
    """({destination: content} to write, [what to say]); a ValueError names what cannot be taken and why.
    ``merging``: tars that each lack runs the others hold are merged (``merge``) instead of refused."""
    contents = {path: read_tar(path) for path in tars}
    writes: dict[Path, bytes] = {}
    notes = [f"{path}: no sweep summaries" for path, found in contents.items() if not found]
    for name in NAMES:
        committed_file = results / f"{name}_sweep.json"
        committed = _runs(committed_file.read_text(), str(committed_file)) if committed_file.is_file() else {}
        offers = {path: _runs(found[name][0], f"{path}: {name}_sweep.json")
                  for path, found in contents.items() if name in found}
        fingerprints = dict(committed)
        for path, runs in offers.items():
            for run, fingerprint in runs.items():
                if fingerprints.setdefault(run, fingerprint) != fingerprint:
                    raise ValueError(f"{path}: {name}_sweep.json gives run {run} another fingerprint than the "
                                     "committed summary or another tar")
        adding = {path: runs for path, runs in offers.items() if set(runs) - set(committed)}
        if not adding:
            notes.append(f"{name}: nothing new ({len(committed)} runs committed)")
            continue
        winner = max(adding, key=lambda path: len(adding[path]))  # the first of equals
        missing = sorted(set(fingerprints) - set(adding[winner]))
        if missing and merging:
            sweep_json, rows, count = merge(committed_file.read_text() if committed_file.is_file() else None,
                                            [contents[path][name][0] for path in adding], f"{name}_sweep.json")
            writes[committed_file], writes[results / f"{name}.json"] = sweep_json, rows
            notes.append(f"{name}: {count - len(committed)} new run(s), {count} in all, merged from "
                         + ", ".join(str(path) for path in adding))
            continue
        if missing:
            raise ValueError(f"{winner}: {name}_sweep.json has the most runs but lacks {len(missing)} that the "
                             f"committed summary or another tar holds, e.g. {missing[0]}: "
                             "take the tars in one at a time, or pass --merge")
        rows = contents[winner][name][1]
        if rows is None:
            raise ValueError(f"{winner}: has {name}_sweep.json with new runs but no {name}.json beside it")
        writes[committed_file] = contents[winner][name][0].encode()
        writes[results / f"{name}.json"] = rows
        notes.append(f"{name}: {len(adding[winner]) - len(committed)} new run(s), {len(adding[winner])} in all, "
                     f"from {winner}")
    return writes, notes


def write_all(writes: dict[Path, bytes]) -> list[Path]:
    """Write every file beside its destination first, then swap them in, so that a failure while writing replaces
    none; returns the destinations replaced (all of them, unless a swap itself fails: an OSError's ``replaced``)"""
    for destination in writes:
        if destination.exists() and not destination.is_file():
            raise OSError(f"{destination} is not a plain file")
    staged, replaced = [], []
    try:
        for destination, content in writes.items():
            handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
            staged.append((temporary, destination))
            with os.fdopen(handle, "wb") as out:
                out.write(content)
        for temporary, destination in staged:
            os.replace(temporary, destination)
            replaced.append(destination)
    except OSError as error:
        error.replaced = replaced
        raise
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return replaced


def models_beside(tar_path: Path) -> list[str]:
    """How to unpack the models that came back beside ``tar_path`` (``collect`` leaves a sweep's kept models as
    NAME_models.tar, or in 15 MiB pieces NAME_models.tar.part00-of-NN, ... when larger): one line per sweep, or
    a warning when a piece is missing. Models are not committed, so nothing is copied."""
    lines, folder = [], tar_path.parent
    for whole in sorted(folder.glob("*_models.tar")):
        lines.append(f"models: {whole} (tar -xf {whole} -C DIR)")
    pieces: dict[str, list[str]] = {}
    for piece in sorted(folder.glob("*_models.tar.part*")):
        name, _, suffix = piece.name.rpartition(".part")
        pieces.setdefault(name, []).append(suffix)
    for name, suffixes in sorted(pieces.items()):
        count = suffixes[0].rpartition("-of-")[2]
        expected = [f"{i:02d}-of-{count}" for i in range(int(count))] if count.isdigit() else None
        if suffixes != expected:
            lines.append(f"models: WARNING {folder}/{name}.part*: pieces {', '.join(suffixes)} came back, not "
                         f"all of part00 to the count each name gives, so the tar is incomplete")
        else:
            lines.append(f"models: {folder}/{name} in {len(suffixes)} pieces "
                         f"(cat {folder}/{name}.part* | tar -x -C DIR)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tars", nargs="+", type=Path, metavar="TGZ", help="session.tgz files from `collect`")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the committed summaries are")
    parser.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
    parser.add_argument("--merge", action="store_true",
                        help="merge tars that each hold runs the others lack (the sweep's own summary writer)")
    args = parser.parse_args(argv)
    for tar_path in args.tars:
        if not tar_path.is_file():
            print(f"error: TGZ {tar_path}: no such file", file=sys.stderr)
            return 2
    if not args.results.is_dir():
        print(f"error: --results {args.results} is not a folder", file=sys.stderr)
        return 2
    try:
        writes, notes = plan(args.tars, args.results, args.merge)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    folders = {}  # one listing per folder, however many of its tars are given
    for tar_path in args.tars:
        folders.setdefault(tar_path.resolve().parent, tar_path)
    print("\n".join(notes + [line for tar_path in folders.values() for line in models_beside(tar_path)]))
    if writes and not args.dry_run:
        try:
            write_all(writes)
        except OSError as error:
            done = ", ".join(p.name for p in getattr(error, "replaced", [])) or "none"
            print(f"error: writing into --results {args.results} failed ({error}); replaced: {done}", file=sys.stderr)
            return 2
        print("next: python benchmarks/mqar_new_runs.py --since HEAD; "
              "python benchmarks/mqar_tables.py --write docs/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
