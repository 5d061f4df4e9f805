"""``benchmarks/mqar_one_query.py``: one query of a gated checkpoint, as trained and with chosen writes shut, on the
evaluation data a sweep's spec makes; the numbers are the model's own, and bad input gets one line."""
import json
from pathlib import Path

import torch

from ramnet.analysis_gates import writes_closed_where
from ramnet.checkpoint import load_checkpoint
from ramnet.data.mqar_protocol import eval_set, protocol_settings

from .probe_cases import run_script, small_checkpoint

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_one_query.py"
SPEC = {"settings": [[2, 16], [4, 32]], "vocab_size": 64, "num_eval": 4}
SEED = 2


def _setup(tmp_path):
    sweep = tmp_path / "mqar_sweep.json"
    sweep.write_text(json.dumps({"spec": SPEC, "runs": []}))
    checkpoint = small_checkpoint(tmp_path, write_gate=True)
    x, y = eval_set(protocol_settings(SPEC["settings"], SPEC["vocab_size"])[1], 1, SPEC["num_eval"], SEED)
    return sweep, checkpoint, x, y


def _expected(checkpoint, x, y, b, t, closed=(), layers=None):
    model = load_checkpoint(checkpoint).eval()
    mask = torch.zeros(1, x.shape[1], dtype=torch.bool)
    mask[0, list(closed)] = True
    with torch.no_grad(), writes_closed_where(model, mask, layers):
        probs = model(x[b:b + 1])[0, t].float().softmax(-1)
    return f"| {int(probs.argmax())} | {float(probs.max()):.4f} | {float(probs[y[b, t]]):.4f} |"


def test_the_rows_are_the_models_own_answers(tmp_path):
    sweep, checkpoint, x, y = _setup(tmp_path)
    b, t = (y != -100).nonzero().tolist()[-1]  # the last query of the last sequence: the most before it
    done = run_script(SCRIPT, str(checkpoint), "--sweep", str(sweep), "--setting", "N4-T32", "--seed", str(SEED),
                      "--query", f"{b}:{t}", "--close", f"0-{t - 1}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"N4-T32, seed {SEED}, sequence {b}, query at {t}: key {int(x[b, t])}, label {int(y[b, t])}"
    first = next(p for p in range(t) if x[b, p] == x[b, t])
    assert f"{first} (key-value phase, followed by {int(x[b, first + 1])})" in lines[1]
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| writes")]
    assert len(rows) == 1 + 3  # as trained, then all layers and each of the two
    assert rows[0].endswith(_expected(checkpoint, x, y, b, t))
    shut = _expected(checkpoint, x, y, b, t, closed=range(t))
    assert rows[1].endswith(shut) and rows[1].startswith(f"| {','.join(map(str, range(t)))} | all |")
    assert shut != _expected(checkpoint, x, y, b, t)  # shutting every earlier write changes the answer's numbers
    for row, layer in zip(rows[2:], (0, 1)):  # then each layer alone, numbered from 1
        assert row.startswith(f"| {','.join(map(str, range(t)))} | {layer + 1} |")
        assert row.endswith(_expected(checkpoint, x, y, b, t, closed=range(t), layers=[layer]))
    assert rows[2] != rows[3]


def test_bad_input_gets_one_line(tmp_path):
    sweep, checkpoint, x, y = _setup(tmp_path)
    unlabelled = next(t for t in range(1, x.shape[1]) if y[0, t] == -100)
    cases = [(["--query", f"0:{unlabelled}"], "is not a query of N4-T32"), (["--query", "0-9"], "SEQ:POS"),
             (["--query", "99:30"], "is not a query"), (["--close", "9-3"], "a range must run upwards"),
             (["--close", "a,b"], "not a list of positions"), (["--close", "40"], "below the length, 32"),
             (["--setting", "N9-T9"], "do not include N9-T9"), (["--seed", "-1"], "--seed must be >= 0"),
             (["--sweep", "NOSPEC"], "holds no sweep spec")]
    query = "{}:{}".format(*(y != -100).nonzero().tolist()[0])
    for args, message in cases:
        base = {"--query": query, "--setting": "N4-T32"}
        base.update(dict(zip(args[::2], args[1::2])))
        nospec = tmp_path / "nospec.json"
        nospec.write_text(json.dumps({"runs": []}))
        sweep_file = str(nospec) if base.pop("--sweep", None) == "NOSPEC" else str(sweep)
        argv = [str(checkpoint), "--sweep", sweep_file, "--seed", base.pop("--seed", str(SEED))]
        argv += [a for k, v in base.items() for a in (k, v)]
        done = run_script(SCRIPT, *argv)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    ungated = small_checkpoint(tmp_path / "plain")
    done = run_script(SCRIPT, str(ungated), "--sweep", str(sweep), "--setting", "N4-T32", "--seed", str(SEED),
                      "--query", query)
    assert done.returncode == 2 and "needs a write gate" in done.stderr and done.stderr.count("\n") == 1
