"""Training-curve plots. Uses matplotlib's object API with the Agg canvas, so the process-wide backend and
pyplot's figure registry are left alone (matplotlib comes with the ``[plot]`` extra)."""
from __future__ import annotations

from pathlib import Path


def plot_history(metrics_path: str | Path, out: str | Path | None = None) -> Path:
    """Loss and accuracy against step from a run's ``metrics.json``; writes a PNG (default: ``curves.png``
    beside it) and returns its path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("ramnet plot needs matplotlib: pip install 'ramnet[plot]'") from None

    from .checkpoint import read_json

    metrics = read_json(Path(metrics_path), "run metrics")
    hist = metrics.get("history")
    if not isinstance(hist, list) or not hist or not all(
            isinstance(h, dict) and {"step", "loss", "accuracy"} <= set(h) for h in hist):
        raise ValueError(f"{metrics_path} holds no training history to plot (a list of step/loss/accuracy entries)")
    steps = [h["step"] for h in hist]
    fig = Figure(figsize=(9, 3.2))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, [h["loss"] for h in hist], marker="o", markersize=3)
    ax1.set(xlabel="step", ylabel="train loss", yscale="log")
    ax2.plot(steps, [h["accuracy"] for h in hist], marker="o", markersize=3)
    ax2.set(xlabel="step", ylabel="MQAR accuracy", ylim=(0, 1.02))
    s = metrics.get("setting", {})
    fig.suptitle(f"MQAR T={s.get('seq_len')} N={s.get('num_kv_pairs')} V={s.get('vocab_size')}")
    fig.tight_layout()
    out = Path(out) if out else Path(metrics_path).with_name("curves.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
