"""Copy the MQAR sweep summaries that GPU sessions brought back (their session.tgz) into benchmarks/results/.

    python benchmarks/mqar_take_session.py /work/.device/3/session.tgz /work/.device/4/session.tgz
    python benchmarks/mqar_take_session.py --dry-run TGZ ...     # say what would be copied, copy nothing

For each sweep (mqar, ablations, mqar_seeds, mqar_paper_arch, mqar_probe), the tar whose NAME_sweep.json holds the
most runs wins, and its NAME_sweep.json and NAME.json replace the committed ones, but only when it holds every
committed run with the same fingerprint and more besides: a summary from a machine that restored an older commit
would otherwise drop results. A sweep that no tar adds to is left alone. Everything is checked before the first
copy, so a refusal copies nothing. Next: `python benchmarks/mqar_new_runs.py --since HEAD` lists the new runs and
`python benchmarks/mqar_tables.py --write docs/RESULTS.md` regenerates the tables.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = ("mqar", "ablations", "mqar_seeds", "mqar_paper_arch", "mqar_probe")


def _runs(summary: Path) -> dict[str, str]:
    """{run id: fingerprint} of a sweep summary; an absent file has none"""
    if not summary.is_file():
        return {}
    return {run["id"]: run.get("fingerprint") for run in json.loads(summary.read_text()).get("runs", [])}


def _member(tar: tarfile.TarFile, filename: str) -> tarfile.TarInfo | None:
    """The tar's regular file with this name at any depth (collect writes them under mqar/), if one"""
    found = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name == filename]
    return found[0] if len(found) == 1 else None


def plan(tars: list[Path], results: Path, extracted: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """([(source, destination)] to copy, [what to say]); a ValueError names a tar or sweep that cannot be taken"""
    copies, notes = [], []
    for name in NAMES:
        committed = _runs(results / f"{name}_sweep.json")
        best = None  # (run count, folder)
        for index, tar_path in enumerate(tars):
            with tarfile.open(tar_path) as tar:
                member = _member(tar, f"{name}_sweep.json")
                if member is None:
                    continue
                folder = extracted / str(index) / name
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{name}_sweep.json").write_bytes(tar.extractfile(member).read())
                row_member = _member(tar, f"{name}.json")
                if row_member is not None:
                    (folder / f"{name}.json").write_bytes(tar.extractfile(row_member).read())
            runs = _runs(folder / f"{name}_sweep.json")
            changed = [r for r, fp in committed.items() if r in runs and runs[r] != fp]
            dropped = [r for r in committed if r not in runs]
            if changed or dropped:
                raise ValueError(f"{tar_path}: its {name}_sweep.json lacks {len(dropped)} committed run(s) and changes "
                                 f"the fingerprint of {len(changed)}, e.g. {(dropped + changed)[0]}")
            if best is None or len(runs) > best[0]:
                best = (len(runs), folder, tar_path)
        if best is None or best[0] <= len(committed):
            notes.append(f"{name}: nothing new ({len(committed)} runs committed)")
            continue
        count, folder, tar_path = best
        if not (folder / f"{name}.json").is_file():
            raise ValueError(f"{tar_path}: has {name}_sweep.json with new runs but no {name}.json beside it")
        copies += [(folder / f"{name}_sweep.json", results / f"{name}_sweep.json"),
                   (folder / f"{name}.json", results / f"{name}.json")]
        notes.append(f"{name}: {count - len(committed)} new run(s), {count} in all, from {tar_path}")
    return copies, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tars", nargs="+", type=Path, metavar="TGZ", help="session.tgz files from `collect`")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the committed summaries are")
    parser.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")
    args = parser.parse_args(argv)
    for tar_path in args.tars:
        if not tar_path.is_file() or not tarfile.is_tarfile(tar_path):
            print(f"error: TGZ {tar_path} is not a tar file", file=sys.stderr)
            return 2
    if not args.results.is_dir():
        print(f"error: --results {args.results} is not a folder", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as extracted:
        try:
            copies, notes = plan(args.tars, args.results, Path(extracted))
        except (ValueError, KeyError, json.JSONDecodeError, tarfile.TarError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print("\n".join(notes))
        if not args.dry_run:
            for source, destination in copies:
                shutil.copyfile(source, destination)
    if copies and not args.dry_run:
        print("next: python benchmarks/mqar_new_runs.py --since HEAD; "
              "python benchmarks/mqar_tables.py --write docs/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
