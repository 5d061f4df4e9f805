"""Plots: training curves, MQAR sweeps against state size, the U ablation and slot traces. Uses matplotlib's
object API with the Agg canvas, so the process-wide backend and pyplot's figure registry are left alone
(matplotlib comes with the ``[plot]`` extra)."""
from __future__ import annotations

import itertools
from pathlib import Path


def plot_history(metrics_path: str | Path, out: str | Path | None = None) -> Path:
    """Loss and accuracy against step from a run's ``metrics.json``; writes a PNG (default: ``curves.png``
    beside it) and returns its path."""
    from .checkpoint import read_json

    metrics = read_json(Path(metrics_path), "run metrics")
    hist = metrics.get("history")
    if not isinstance(hist, list) or not hist or not all(
            isinstance(h, dict) and {"step", "loss", "accuracy"} <= set(h) for h in hist):
        raise ValueError(f"{metrics_path} holds no training history to plot (a list of step/loss/accuracy entries)")
    steps = [h["step"] for h in hist]
    fig = _figure(9, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, [h["loss"] for h in hist], marker="o", markersize=3)
    ax1.set(xlabel="step", ylabel="train loss", yscale="log")
    ax2.plot(steps, [h["accuracy"] for h in hist], marker="o", markersize=3)
    ax2.set(xlabel="step", ylabel="MQAR accuracy", ylim=(0, 1.02))
    s = metrics.get("setting", {})
    fig.suptitle(f"MQAR T={s.get('seq_len')} N={s.get('num_kv_pairs')} V={s.get('vocab_size')}")
    return _save(fig, Path(out) if out else Path(metrics_path).with_name("curves.png"))


# the paper's RAM-Net MQAR points (7-setting mean accuracy against state size in numbers), read off its figure
PAPER_POINTS = ((7.7e3, 0.78), (1.4e4, 0.87), (2.6e4, 0.97))
# the paper's U ablation (MQAR accuracy at fixed M), {M: ((U, accuracy), ...)}
PAPER_U_POINTS = {1024: ((1, 0.48), (2, 0.86), (5, 0.99)), 256: ((1, 0.39), (2, 0.71), (4, 0.89))}


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("ramnet plot needs matplotlib: pip install 'ramnet[plot]'") from None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out) -> Path:
    fig.tight_layout()
    out = Path(out)
    if out.suffix.lower() != ".png":
        out = out.with_name(out.name + ".png")  # what savefig would write; the caller is told this path
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def _read_json(path: Path, what: str):
    import json

    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{what} {path} is not valid JSON: {error}") from None


def _rows(path, what: str) -> list[dict]:
    path = Path(path)
    rows = _read_json(path, what)
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)
    if not isinstance(rows, list) or not rows or not all(
            isinstance(r, dict) and {"model", "state_size", "accuracy"} <= set(r) and number(r["state_size"])
            and number(r["accuracy"]) and isinstance(r.get("tags") or {}, dict) for r in rows):
        raise ValueError(f"{path} is not a sweep summary (mqar.json rows with a model, a numeric state_size and "
                         f"accuracy, and tags as a mapping)")
    return rows


SERIES_NAMES = {"deltanet": "DeltaNet (fla)", "gated_deltanet": "Gated DeltaNet (fla)", "gla": "GLA (fla)"}


def series_name(row: dict, split_conv: bool = False) -> str:
    """The line a summary row belongs to: RAM-Net with and without the short conv apart, else the model;
    ``split_conv`` parts a baseline's rows by their short conv too (``state_series`` sets it for a model whose
    rows have both, so that one line never joins runs with and without it)."""
    if row["model"] == "ramnet":
        return "RAM-Net, short conv" if row.get("short_conv") else "RAM-Net, paper architecture (no conv)"
    name = SERIES_NAMES.get(row["model"], row["model"])
    if split_conv:
        name += ", short conv" if row.get("short_conv") else ", no short conv"
    return name


def state_series(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """``{series: [(state size, best accuracy at it), ...] in state order}`` over ``rows`` (attention included
    as its own series if given). A baseline with rows both with and without the short conv gets two series."""
    convs: dict[str, set] = {}
    for r in rows:
        convs.setdefault(r["model"], set()).add(bool(r.get("short_conv")))
    series: dict[str, dict] = {}
    for r in rows:
        best = series.setdefault(series_name(r, split_conv=len(convs[r["model"]]) > 1), {})
        best[r["state_size"]] = max(best.get(r["state_size"], 0.0), r["accuracy"])
    return {name: sorted(best.items()) for name, best in series.items()}


def plot_state_sweep(summary_paths, out, paper_points=PAPER_POINTS) -> Path:
    """7-setting mean accuracy against state size, one line per series (``series_name``), the paper's points
    overlaid. ``summary_paths``: one ``mqar.json`` or several (e.g. with ``mqar_paper_arch.json``); where a series
    has several variants at one state size, the line takes the best of them (as the rows take the best lr)."""
    paths = [summary_paths] if isinstance(summary_paths, (str, Path)) else list(summary_paths)
    all_rows = [r for path in paths for r in _rows(path, "sweep summary")]
    rows = [r for r in all_rows if r["model"] != "attention"]
    attention = [r for r in all_rows if r["model"] == "attention"]
    fig = _figure(6.5, 4.2)
    ax = fig.subplots()
    for name, points in state_series(rows).items():
        ax.plot(*zip(*points), marker="o", label=name)
    if paper_points:
        ax.scatter(*zip(*paper_points), marker="*", s=140, color="black", label="RAM-Net (paper)", zorder=3)
    for r, style in zip(attention, itertools.cycle(("--", ":", "-."))):  # no state span: its best is a ceiling
        ax.axhline(r["accuracy"], color="grey", linestyle=style,
                   label=f"{r.get('label', 'attention')} (KV cache {r['state_size']:.2g})")
    ax.set(xscale="log", xlabel="state size (numbers)", ylabel="MQAR accuracy (7-setting mean)", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_u_ablation(summary_path, out, paper_points=PAPER_U_POINTS) -> Path:
    """Accuracy against the number of factors U, one line per memory size M (rows tagged ``ablation: U``), with
    the paper's values for the same M dashed beside it (``paper_points``: ``{M: ((U, accuracy), ...)}``)."""
    rows = [r for r in _rows(summary_path, "ablation summary") if (r.get("tags") or {}).get("ablation") == "U"]
    if not rows:
        raise ValueError(f"{summary_path} holds no rows tagged ablation: U")
    if not all(isinstance(r["tags"].get("M"), int) and isinstance(r["tags"].get("U"), int) for r in rows):
        raise ValueError(f"{summary_path}: every row tagged ablation: U needs integer tags M and U")
    fig = _figure(5.5, 3.8)
    ax = fig.subplots()
    for M in sorted({r["tags"]["M"] for r in rows}):
        points = sorted((r["tags"]["U"], r["accuracy"]) for r in rows if r["tags"]["M"] == M)
        line, = ax.plot(*zip(*points), marker="o", label=f"M = {M}")
        if M in (paper_points or {}):
            ax.plot(*zip(*paper_points[M]), marker="*", linestyle="--", color=line.get_color(), alpha=0.6,
                    label=f"M = {M} (paper)")
    ax.set(xscale="log", xlabel="U (factors of the product softmax)", ylabel="MQAR accuracy (7-setting mean)",
           ylim=(0, 1.02))
    ax.legend()
    return _save(fig, out)


def curve_looks(count: int) -> list[dict]:
    """Line keywords for ``count`` curves, no two alike up to 160: matplotlib's 10 default colours up to 10
    curves, else its 20 paired ones, again with another marker for each further 20."""
    from matplotlib import colormaps

    colors = [f"C{i}" for i in range(10)] if count <= 10 else list(colormaps["tab20"].colors)
    markers = (None, "o", "s", "^", "v", "D", "x", "+")
    return [{"color": colors[i % len(colors)], "marker": markers[i // len(colors) % len(markers)], "markersize": 3}
            for i in range(count)]


def plot_sweep_curves(sweep_path, out, only: str | None = None) -> Path:
    """Training loss and 7-setting mean accuracy against step for the runs of a sweep's ``NAME_sweep.json``:
    its finished ``runs`` (solid) and its ``unfinished`` curves (dashed, not results). ``only``: comma-separated
    fnmatch patterns on run ids (e.g. ``"paper-*-lr0.001-*"``), every run by default."""
    import fnmatch

    path = Path(sweep_path)
    data = _read_json(path, "sweep file")
    number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)  # noqa: E731
    point = lambda h: isinstance(h, dict) and all(number(h.get(k)) for k in ("step", "loss", "accuracy"))  # noqa: E731
    runs = data.get("runs") if isinstance(data, dict) else None
    unfinished = data.get("unfinished", []) if isinstance(data, dict) else None
    if not isinstance(runs, list) or not isinstance(unfinished, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("history"), list)
            and all(point(h) for h in r["history"]) for r in runs + unfinished):
        raise ValueError(f"{path} is not a sweep file (NAME_sweep.json: runs and unfinished, each with an id and "
                         f"a history of step, loss and accuracy)")
    curves = [(r, "-") for r in runs] + [(r, "--") for r in unfinished if r["history"]]
    patterns = [p.strip() for p in (only or "*").split(",") if p.strip()]
    curves = [(r, style) for r, style in curves if any(fnmatch.fnmatchcase(r["id"], p) for p in patterns)]
    if not curves:
        raise ValueError(f"--only {only!r} matches no run with a curve in {path}")
    fig = _figure(11, 4.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for (r, style), look in zip(curves, curve_looks(len(curves))):
        steps = [h["step"] for h in r["history"]]
        loss_ax.plot(steps, [h["loss"] for h in r["history"]], style, label=r["id"].removesuffix("-s0"), **look)
        acc_ax.plot(steps, [h["accuracy"] for h in r["history"]], style, **look)
    loss_ax.set(xlabel="step", ylabel="training loss (mean since the last evaluation)")
    acc_ax.set(xlabel="step", ylabel="MQAR accuracy (7-setting mean)", ylim=(0, 1.02))
    loss_ax.legend(fontsize=6, ncol=2)
    return _save(fig, out)


def plot_slot_traces(traces: list[dict], out, head: int = 0) -> Path:
    """Top-1 write and read slots of ``head`` against time, for the first layer with CAPE heads and the first
    without (``ramnet.analysis.slot_traces``)."""
    cape_layer = next((i for i, t in enumerate(traces) if t["cape"][head]), None)
    plain_layer = next((i for i, t in enumerate(traces) if not t["cape"][head]), None)
    layers = [i for i in (cape_layer, plain_layer) if i is not None]
    fig = _figure(5 * len(layers), 3.6)
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for ax, i in zip(axes, layers):
        for name, marker in (("write", "o"), ("read", "x")):
            slots = traces[i][name][:, head]
            ax.scatter(range(len(slots)), slots.tolist(), s=8, marker=marker, label=name)
        kind = "CAPE" if traces[i]["cape"][head] else "content"
        ax.set(xlabel="token t", ylabel="top-1 slot", title=f"layer {i + 1}, head {head} ({kind})")
        ax.legend(fontsize=8)
    return _save(fig, out)
