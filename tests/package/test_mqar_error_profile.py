"""``benchmarks/mqar_error_profile.py``: one setting's errors of each matching run, by quarter, in fp32 and after
their own key, made again from the run's evaluation data; runs without a profile and bad input are named."""
import json
import subprocess
import sys
from pathlib import Path

from ramnet.data.mqar_protocol import eval_set, protocol_settings

from .probe_cases import load_script

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_error_profile.py"
SPEC = {"settings": [[2, 16], [4, 32]], "vocab_size": 64, "num_eval": 8}
SEED = 2  # its N4-T32 evaluation set holds two queries right after a random token equal to their key: (0, 10), (0, 12)


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _record(label, profile=None):
    run = {"id": f"{label}-lr0.001-s{SEED}", "label": label, "lr": 0.001, "seed": SEED, "state_size": 4352,
           "precision": "bf16", "accuracies": {"N2-T16": 1.0, "N4-T32": 0.90625}}
    return {**run, "final_profile": profile} if profile is not None else run


def _write(folder: Path, wrong):
    profile = {"precision": "bf16", "fp32_accuracies": {"N4-T32": 0.9375},
               "settings": {"N4-T32": {"queries": 32, "errors": len(wrong), "by_pair_quarter": [0.75, 1.0, 1.0, 1.0],
                                       "by_query_quarter": [1.0, 0.875, None, 1.0],
                                       "error_queries": " ".join(f"{b}:{t}" for b, t in wrong)}}}
    runs = [_record("ramnet-a", profile), _record("ramnet-old"), _record("ramnet-bad", {"error": "RuntimeError: no"})]
    (folder / "mqar_sweep.json").write_text(json.dumps({"spec": SPEC, "runs": runs}))


def test_the_seed_holds_the_queries_the_tests_name():
    x, y = eval_set(protocol_settings(SPEC["settings"], 64)[1], 1, 8, SEED)
    queries = (y != -100).nonzero().tolist()
    assert [q for q in queries if x[q[0], q[1] - 1] == x[q[0], q[1]]] == [[0, 10], [0, 12]]


def _earlier_copies(x, y, pairs=4):
    """The queries whose key stood earlier in the query phase (positions from 2 * pairs on), one by one."""
    return [[b, t] for b, t in (y != -100).nonzero().tolist() if (x[b, 2 * pairs:t] == x[b, t]).any()]


def _last_pair_queries(x, y, pairs=4, key_vocab=None):
    """The queries that ask for the last pair written (its key is the token at 2 * pairs - 2), one by one; with
    ``key_vocab``, those whose sequence has a key-range token two after that pair's value."""
    return [[b, t] for b, t in (y != -100).nonzero().tolist() if t >= 2 * pairs and x[b, t] == x[b, 2 * pairs - 2]
            and (key_vocab is None or x[b, 2 * pairs + 1] < key_vocab)]


def test_each_run_gets_its_quarters_fp32_score_and_errors_after_their_own_key(tmp_path):
    x, y = eval_set(protocol_settings(SPEC["settings"], 64)[1], 1, 8, SEED)
    other = next(q for q in (y != -100).nonzero().tolist() if x[q[0], q[1] - 1] != x[q[0], q[1]])
    earlier = _earlier_copies(x, y)
    # a small vocabulary makes such queries common; the right-after ones are among them, `other` is not
    assert [0, 10] in earlier and [0, 12] in earlier and other not in earlier and len(earlier) > 2
    last, keyed = _last_pair_queries(x, y), _last_pair_queries(x, y, key_vocab=32)
    wrong = [[0, 10], other, [0, 12]]
    wrong.append(next(q for q in last if q not in wrong and x[q[0], q[1] - 1] != x[q[0], q[1]]))
    on_last = sum(q in last for q in wrong)
    assert len(last) == 8 and 0 < on_last < len(wrong)  # one a sequence; the list holds some, not all
    _write(tmp_path, wrong)
    out = _run("ramnet-*", "--setting", "N4-T32", "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[4] == (f"| ramnet-a-lr0.001-s{SEED} | mqar_sweep.json | 4,352 | 0.90625 (bf16) | 0.93750 | {len(wrong)} of 32 | "
                        "0.7500 / 1.0000 / 1.0000 / 1.0000 | 1.0000 / 0.8750 / - / 1.0000 | 2 of 2 | "
                        f"{sum(q in earlier for q in wrong)} of {len(earlier)} | {on_last} of {len(last)} "
                        f"({sum(q in keyed for q in wrong)} of {len(keyed)} after a key-range token) |")
    # without a profile: the error count the accuracy implies (0.90625 of 8 x 4 queries), and the set's own count
    assert lines[5] == (f"| ramnet-old-lr0.001-s{SEED} | mqar_sweep.json | 4,352 | 0.90625 (bf16) | - | 3 of 32 (from "
                        "the accuracy; no profile) | - | - | - of 2 | "
                        f"- of {len(earlier)} | - of {len(last)} (- of {len(keyed)} after a key-range token) |")
    assert lines[6] == (f"| ramnet-bad-lr0.001-s{SEED} | mqar_sweep.json | 4,352 | 0.90625 (bf16) | - | 3 of 32 (from "
                        "the accuracy; profile failed: RuntimeError: no) | - | - | - of 2 | "
                        f"- of {len(earlier)} | - of {len(last)} (- of {len(keyed)} after a key-range token) |")
    assert len(lines) == 7


def test_bad_input_gets_one_line(tmp_path):
    _write(tmp_path, [[0, 10]])
    for args, code, text in [(("nothing-*", "--results", str(tmp_path)), 1, "no finished run matches"),
                             (("ramnet-*", "--setting", "N9-T9", "--results", str(tmp_path)), 2, "--setting"),
                             (("ramnet-*", "--results", str(tmp_path / "missing")), 2, "no folder")]:
        out = _run(*args)
        assert out.returncode == code and text in out.stderr and "Traceback" not in out.stderr, out.stderr
    for wrong in ([[99, 10]], [[0, 0]], [[0, 11]]):  # outside the set, at the start, an unlabelled position
        _write(tmp_path, wrong)
        out = _run("ramnet-*", "--setting", "N4-T32", "--results", str(tmp_path))
        assert out.returncode == 2 and "is not a query of N4-T32" in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1 and "mqar_sweep.json" in out.stderr
    sweep = json.loads((tmp_path / "mqar_sweep.json").read_text())
    sweep["runs"][0]["accuracies"]["N4-T32"] = "high"  # a field of the wrong kind
    (tmp_path / "mqar_sweep.json").write_text(json.dumps(sweep))
    out = _run("ramnet-*", "--setting", "N4-T32", "--results", str(tmp_path))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not what a sweep writes" in out.stderr
    (tmp_path / "mqar_sweep.json").write_text("{not json")
    out = _run("ramnet-*", "--results", str(tmp_path))
    assert out.returncode == 2 and "cannot be read as JSON" in out.stderr and "Traceback" not in out.stderr


def test_the_earlier_copy_mask_is_the_one_by_one_list():
    module = load_script(SCRIPT)
    for pairs, length, vocab, seed in [(4, 32, 64, SEED), (8, 64, 96, 5), (16, 64, 128, 7)]:
        x, y = eval_set(protocol_settings([[pairs, length]], vocab)[0], 0, 12, seed)
        expected = _earlier_copies(x, y, pairs)
        assert expected  # small vocabularies: the case occurs
        assert module.earlier_copy_mask(x, y, pairs).nonzero().tolist() == expected
        assert module.last_pair_mask(x, y, pairs).nonzero().tolist() == _last_pair_queries(x, y, pairs)
        keyed = _last_pair_queries(x, y, pairs, vocab // 2)
        assert 0 < len(keyed) < len(_last_pair_queries(x, y, pairs))  # the filter keeps some, not all
        assert module.last_pair_mask(x, y, pairs, vocab // 2).nonzero().tolist() == keyed


def test_overlap_counts_the_wrong_queries_two_runs_share(tmp_path):
    x, y = eval_set(protocol_settings(SPEC["settings"], 64)[1], 1, 8, SEED)
    queries = (y != -100).nonzero().tolist()
    profile = {"precision": "bf16", "settings": {"N4-T32": {"queries": 32, "errors": 3, "by_pair_quarter": None,
                                                            "by_query_quarter": None}}}

    def run(label, wrong, seed=SEED):
        listed = {**profile["settings"]["N4-T32"], "error_queries": " ".join(f"{b}:{t}" for b, t in wrong)}
        return {**_record(label, {**profile, "settings": {"N4-T32": listed}}), "seed": seed,
                "id": f"{label}-lr0.001-s{seed}"}

    _, y_other = eval_set(protocol_settings(SPEC["settings"], 64)[1], 1, 8, SEED + 1)
    others = (y_other != -100).nonzero().tolist()
    runs = [run("ramnet-a", queries[:3]), run("ramnet-b", queries[1:5]), run("ramnet-c", others[:2], seed=SEED + 1)]
    (tmp_path / "mqar_sweep.json").write_text(json.dumps({"spec": SPEC, "runs": runs}))
    out = _run("ramnet-*", "--setting", "N4-T32", "--results", str(tmp_path), "--overlap")
    assert out.returncode == 0, out.stderr
    shared = [line for line in out.stdout.splitlines() if line.startswith("| ramnet-a-")]
    # a and b share queries 1 and 2; c ran on another seed's data, so it is set beside neither
    assert shared[-1] == (f"| ramnet-a-lr0.001-s{SEED} (mqar_sweep.json) | ramnet-b-lr0.001-s{SEED} "
                          f"(mqar_sweep.json) | 3 | 4 | 2 | {3 * 4 / 32:.2f} |")
    assert sum("ramnet-c-" in line for line in out.stdout.splitlines() if "shared" not in line) == 1  # its own row
    out = _run("ramnet-a*", "--setting", "N4-T32", "--results", str(tmp_path), "--overlap")
    assert out.returncode == 0 and "no two matching runs listed" in out.stdout
