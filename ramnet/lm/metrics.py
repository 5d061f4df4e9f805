"""What an LM run records (on the first process only): ``metrics.csv`` always, TensorBoard events under ``tb/``
when ``tensorboard`` is installed, and ``metrics.json`` with ``world_size`` and ``history`` (one entry per logged
training step: ``step``, ``loss`` (the mean of the step losses since the previous entry), ``lr`` and
``grad_norm`` (of that step), ``tokens``, ``tokens_per_s`` (since the previous entry), ``seconds``; the steps that
ran validation also carry ``val_loss`` and ``val_ppl``)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

CSV_FILE, JSON_FILE, TB_DIR = "metrics.csv", "metrics.json", "tb"
COLUMNS = ("step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "seconds", "val_loss", "val_ppl")


def _summary_writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(path))


class RunLog:
    """The run's records. ``history`` is the list that ``metrics.json`` holds; a resumed run passes the history
    saved with its checkpoint, and the CSV is rewritten from it (rows after the checkpoint are dropped)."""

    def __init__(self, out: Path | None, history: list | None = None, enabled: bool = True):
        self.out, self.enabled = out, enabled and out is not None
        self.history = list(history or [])
        self.tb = None
        if self.enabled:
            with open(out / CSV_FILE, "w", newline="") as f:
                writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(self.history)
            self.tb = _summary_writer(out / TB_DIR)

    def record(self, entry: dict) -> None:
        """Add one logged step (``step`` and ``loss``, and ``val_loss`` / ``val_ppl`` when it validated)."""
        self.history.append(entry)
        if not self.enabled:
            return
        with open(self.out / CSV_FILE, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS, extrasaction="ignore").writerow(entry)
        if self.tb is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "val_ppl"):
                if entry.get(key) is not None:
                    self.tb.add_scalar(f"{'val' if key.startswith('val') else 'train'}/{key}", entry[key],
                                       entry["step"])

    def write_json(self, summary: dict) -> None:
        """``metrics.json``: ``summary`` plus the history, written under a temporary name and renamed."""
        if not self.enabled:
            return
        tmp = self.out / f".{JSON_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps({**summary, "history": self.history}, indent=2))
        os.replace(tmp, self.out / JSON_FILE)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
