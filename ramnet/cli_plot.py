"""``ramnet plot``: a run's curves, a sweep's state and U plots and curves, and a checkpoint's slot traces with
its read/write overlap (the command line is in ``ramnet.cli``)."""
from __future__ import annotations

from pathlib import Path

from .data.mqar import MQARSetting


def cmd_plot(args) -> int:
    from . import plots

    chosen = [name for name in ("run", "mqar", "ablations", "curves", "slots") if getattr(args, name) is not None]
    if len(chosen) != 1:
        raise ValueError("give one of: a run directory, --mqar SUMMARY [SUMMARY ...], --ablations SUMMARY, "
                         "--curves SWEEP or --slots CHECKPOINT")
    if args.only is not None and args.curves is None:
        raise ValueError("--only selects runs for --curves only")
    if args.run is None and args.out is None:
        raise ValueError(f"--{chosen[0]} needs --out (the PNG to write, e.g. docs/img/{chosen[0]}.png)")
    if args.mqar is not None:
        print(f"wrote {plots.plot_state_sweep(args.mqar, args.out)}")
        return 0
    if args.ablations is not None:
        print(f"wrote {plots.plot_u_ablation(args.ablations, args.out)}")
        return 0
    if args.curves is not None:
        print(f"wrote {plots.plot_sweep_curves(args.curves, args.out, args.only)}")
        return 0
    if args.slots is not None:
        return _plot_slots(args, plots)
    metrics = Path(args.run) / "metrics.json"
    if not metrics.is_file():
        raise FileNotFoundError(f"{args.run} has no metrics.json (is it a run directory written by ramnet train?)")
    print(f"wrote {plots.plot_history(metrics, args.out)}")
    return 0


def _plot_slots(args, plots) -> int:
    """``plot --slots``: the slot traces of the first example, then the read/write overlap per head, averaged over
    ``--num-examples`` MQAR sequences (query-weighted)."""
    from .analysis import read_write_overlap, slot_traces
    from .checkpoint import load_checkpoint
    from .data.mqar import multiquery_ar, query_bindings

    if isinstance(args.num_examples, bool) or not isinstance(args.num_examples, int) or args.num_examples < 1:
        raise ValueError(f"--num-examples must be an integer >= 1, got {args.num_examples!r}")
    model = load_checkpoint(args.slots)
    try:
        setting = MQARSetting(vocab_size=model.config.vocab_size, seq_len=args.seq_len,
                              num_kv_pairs=args.num_kv_pairs)
    except ValueError as error:
        raise ValueError(f"--seq-len / --num-kv-pairs for this checkpoint (vocab_size "
                         f"{model.config.vocab_size}): {error}") from None
    inputs, labels = multiquery_ar(setting, args.num_examples, seed=0)
    print(f"wrote {plots.plot_slot_traces(slot_traces(model, inputs[:1]), args.out)}")
    if args.num_kv_pairs < 2:  # "another value's" needs a second pair
        print("no read/write overlap: it needs at least 2 key-value pairs (--num-kv-pairs)")
        return 0
    totals, count = None, 0
    for row in range(args.num_examples):
        queries, values = query_bindings(inputs[row], labels[row], args.num_kv_pairs)
        layers = read_write_overlap(model, inputs[row:row + 1], queries, values)
        weighted = [[(on * len(queries), off * len(queries)) for on, off in zip(layer["bound"], layer["other"])]
                    for layer in layers]
        totals = weighted if totals is None else \
            [[(a + c, b + d) for (a, b), (c, d) in zip(t, w)] for t, w in zip(totals, weighted)]
        count += len(queries)
    sequences = f"{args.num_examples} sequence{'s' * (args.num_examples > 1)}"
    print(f"slots each query reads from its bound value's write set / from another value's (of K="
          f"{model.config.top_k}; {count} queries in {sequences}):")
    for i, (layer, total) in enumerate(zip(layers, totals)):
        for h, ((on, off), cape) in enumerate(zip(total, layer["cape"])):
            kind = "CAPE" if cape else "content"
            print(f"  layer {i + 1} head {h} ({kind}): {on / count:.1f} / {off / count:.1f}")
    return 0
