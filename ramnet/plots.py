"""Training-curve plots (matplotlib, headless)."""
from __future__ import annotations

import json
from pathlib import Path


def plot_history(metrics_path: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = json.loads(Path(metrics_path).read_text())
    hist = metrics["history"]
    steps = [h["step"] for h in hist]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(steps, [h["loss"] for h in hist])
    ax1.set(xlabel="step", ylabel="train loss", yscale="log")
    ax2.plot(steps, [h["accuracy"] for h in hist])
    ax2.set(xlabel="step", ylabel="MQAR accuracy", ylim=(0, 1.02))
    s = metrics.get("setting", {})
    fig.suptitle(f"MQAR T={s.get('seq_len')} N={s.get('num_kv_pairs')} V={s.get('vocab_size')}")
    fig.tight_layout()
    out = Path(out) if out else Path(metrics_path).with_name("curves.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
