"""The small-LM corpus: the CPython standard-library sources of the running interpreter, one document per ``.py``
file, as JSON lines for ``ramnet train --task lm --data``.

    python benchmarks/small_lm_corpus.py OUT_DIR [--max-files N] [--val-every 20]

Recipe: every ``*.py`` under ``sysconfig.get_paths()["stdlib"]``, site-packages, dist-packages and __pycache__
excluded, in the order of their relative POSIX paths (sorted); files that are not valid UTF-8 are skipped (and
counted). File ``i`` of that order goes to ``val.jsonl`` when ``i % val_every == 0``, else to ``train.jsonl``
(``{"text": source, "path": relative path}``). ``corpus.json`` records the root, the Python version, the file
counts and bytes of each split, the skipped files and the SHA-256 of both JSONL files."""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sysconfig
from pathlib import Path

EXCLUDED = {"site-packages", "dist-packages", "__pycache__"}


def sources(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*.py") if p.is_file() and not EXCLUDED & set(p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def build(out: Path, max_files: int | None = None, val_every: int = 20) -> dict:
    root = Path(sysconfig.get_paths()["stdlib"])
    out.mkdir(parents=True, exist_ok=True)
    files = sources(root)
    if max_files is not None:
        files = files[:max_files]
    counts = {"train": [0, 0], "val": [0, 0]}
    skipped = []
    kept = 0
    with open(out / "train.jsonl", "w", encoding="utf-8") as train, open(out / "val.jsonl", "w",
                                                                          encoding="utf-8") as val:
        for path in files:
            raw = path.read_bytes()
            rel = path.relative_to(root).as_posix()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped.append(rel)
                continue
            if not text.strip():
                continue
            split = "val" if kept % val_every == 0 else "train"
            kept += 1
            (val if split == "val" else train).write(json.dumps({"text": text, "path": rel}) + "\n")
            counts[split][0] += 1
            counts[split][1] += len(raw)
    info = {"root": str(root), "python": platform.python_version(), "recipe": "benchmarks/small_lm_corpus.py",
            "val_every": val_every, "max_files": max_files, "files_found": len(files),
            "train_files": counts["train"][0], "train_bytes": counts["train"][1],
            "val_files": counts["val"][0], "val_bytes": counts["val"][1],
            "skipped_not_utf8": skipped,
            "sha256": {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
                       for name in ("train.jsonl", "val.jsonl")}}
    (out / "corpus.json").write_text(json.dumps(info, indent=2))
    return info


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--max-files", type=int, default=None, help="only the first N files of the order (smoke runs)")
    p.add_argument("--val-every", type=int, default=20, help="every N-th file is validation (default 20)")
    args = p.parse_args()
    info = build(args.out, args.max_files, args.val_every)
    print(f"corpus from {info['root']} (Python {info['python']}): train {info['train_files']} files, "
          f"{info['train_bytes']:,} bytes; val {info['val_files']} files, {info['val_bytes']:,} bytes; "
          f"{len(info['skipped_not_utf8'])} not UTF-8 skipped")


if __name__ == "__main__":
    main()
