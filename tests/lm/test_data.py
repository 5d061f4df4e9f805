"""LM data: the byte tokenizer, packing into rows with per-document pieces, targets that never cross a piece, the
row order (a function of the step, not of the number of processes), held-out validation rows, file formats."""
import json

import pytest
import torch

from ramnet.lm.args import LMArgs
from ramnet.lm.data import LMData, make_batch, pack_rows, resolve_source
from ramnet.lm.tokenizer import byte_tokenizer, load_tokenizer
from ramnet.losses import IGNORE_INDEX


def test_the_byte_tokenizer_is_the_utf8_bytes_plus_end_of_text(tmp_path):
    tok = byte_tokenizer()
    text = "héllo, wörld\n"
    ids = tok(text)["input_ids"]
    assert ids == list(text.encode()) and len(tok) == 257 and tok.eos_token_id == 256
    assert tok.decode(ids) == text
    tok.save_pretrained(str(tmp_path))
    again = load_tokenizer(str(tmp_path))
    assert again(text)["input_ids"] == ids and again.eos_token_id == 256 and len(again) == 257


def test_packing_cuts_rows_and_marks_document_starts():
    docs = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11, 12, 13]]
    rows = list(pack_rows(docs, 4))
    assert [r[0].tolist() for r in rows] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]  # the tail [13] drops
    assert [r[1].tolist() for r in rows] == [[True, False, False, True], [False] * 4, [True, True, False, False]]


def test_a_batch_restarts_at_every_piece_and_no_target_crosses_one():
    rows = list(pack_rows([[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11, 12, 13]], 4))
    ids, targets, cu = make_batch(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]))
    assert ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    # pieces: [1 2 3] [4] | [5 6 7 8] | [9] [10 11 12]: every row start is a piece start
    assert cu.tolist() == [0, 3, 4, 8, 9, 12]
    I = IGNORE_INDEX
    assert targets.tolist() == [[2, 3, I, I, 6, 7, 8, I, I, 11, 12, I]]
    _, masked, _ = make_batch(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
                              weight=torch.tensor([True, False, True]))
    assert masked[0, 4:8].tolist() == [I] * 4 and masked[0, :4].tolist() == targets[0, :4].tolist()


def _args(corpus, **kw):
    return LMArgs(data=[str(corpus)], seq_len=32, batch_size=8, **kw)


def _rows_of(batch):
    return batch[0].view(-1, 32)


def test_the_rows_of_a_step_do_not_depend_on_the_number_of_processes(corpus):
    args = _args(corpus, grad_accum=2)
    tok = byte_tokenizer()
    one = LMData(args, tok)
    two = [LMData(args, tok, rank=r, world_size=2) for r in range(2)]
    steps_one = one.train_steps(0)
    steps_two = [d.train_steps(0) for d in two]
    for _ in range(12):  # past an epoch (the corpus makes about 40 training rows)
        micro_one = next(steps_one)
        micro_two = [next(s) for s in steps_two]
        whole = torch.cat([_rows_of(b) for b in micro_one])
        # micro-step m of the single process = micro-step m of rank 0, then of rank 1
        split = torch.cat([torch.cat([_rows_of(micro_two[0][m]), _rows_of(micro_two[1][m])]) for m in range(2)])
        assert torch.equal(whole, split)
    # a resumed order starts where the run was
    later = next(one.train_steps(12))
    again = one.train_steps(0)
    for _ in range(12):
        next(again)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(later, next(again)))


def test_held_out_rows_are_never_trained_on(corpus):
    args = _args(corpus, holdout_every=5, val_rows=100)
    data = LMData(args, byte_tokenizer())
    val = {tuple(r) for b in data.val_batches() for r in _rows_of(b).tolist()}
    train = {tuple(r) for r in data.rows[0].tolist()}
    assert val and not val & train
    epochs = [next(data.train_steps(s)) for s in range(0, 2 * len(train) // 8)]
    seen = {tuple(r) for micro in epochs for b in micro for r in _rows_of(b).tolist()}
    assert seen == train  # every training row, in two epochs


def test_validation_rows_are_split_over_the_processes_and_padded(corpus):
    args = _args(corpus, holdout_every=4, val_rows=5)
    tok = byte_tokenizer()
    whole = LMData(args, tok).val_batches()
    parts = [LMData(args, tok, rank=r, world_size=2).val_batches() for r in range(2)]
    assert len(parts[0]) == len(parts[1])
    count = lambda batches: sum(int((t != IGNORE_INDEX).sum()) for _, t, _ in batches)  # noqa: E731
    assert count(parts[0]) + count(parts[1]) == count(whole) > 0


def test_jsonl_parquet_and_streaming_give_the_same_rows(corpus, tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [d for d in corpus.read_text().split("\n\n") if d.strip()]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    pq.write_table(pa.table({"body": docs}), tmp_path / "c.parquet")
    tok = byte_tokenizer()
    text = LMData(_args(corpus), tok).rows[0]
    for name in ("c.jsonl", "c.parquet"):
        other = LMData(LMArgs(data=[str(tmp_path / name)], seq_len=32, batch_size=8, text_field="body"), tok)
        assert torch.equal(other.rows[0], text), name
    stream = LMData(_args(corpus, streaming=True), tok)
    streamed = torch.cat([_rows_of(b) for b in next(stream.train_steps(0))])
    assert torch.equal(streamed, text[:8])  # a stream trains in its own order
    assert torch.equal(torch.cat([_rows_of(b) for b in stream.val_batches()]),
                       torch.cat([_rows_of(b) for b in LMData(_args(corpus), tok).val_batches()]))


def test_sources_are_named_in_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data .*missing.txt: no such file"):
        resolve_source([str(tmp_path / "missing.txt")], None, None)
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(ValueError, match="unknown extension; give --data-format"):
        resolve_source([str(tmp_path / "a.csv")], None, None)
    assert resolve_source(["someone/some-dataset"], None, "en").builder == "someone/some-dataset"
    (tmp_path / "short.txt").write_text("too short\n")
    with pytest.raises(ValueError, match="no training row of --seq-len 32"):
        LMData(LMArgs(data=[str(tmp_path / "short.txt")], seq_len=32), byte_tokenizer())


def test_validation_files_replace_the_held_out_rows(corpus, tmp_path):
    from .corpus import write_corpus

    val = write_corpus(tmp_path / "val.txt", paragraphs=30, seed=1)
    tok = byte_tokenizer()
    data = LMData(_args(corpus, val_data=[str(val)], val_rows=3), tok)
    whole = LMData(_args(corpus, holdout_every=10**6), tok)  # row 0 is held out either way
    assert data.rows[0].shape[0] == whole.rows[0].shape[0] + 1  # nothing else is held out of training
    val_rows = torch.cat([_rows_of(b) for b in data.val_batches()])
    scored = torch.cat([t.view(-1, 32) for _, t, _ in data.val_batches()]) != IGNORE_INDEX
    assert int(scored.any(1).sum()) == 3  # the micro-batch of 8 is padded with rows that have no target
    assert bytes(val_rows[0].tolist()).decode() == val.read_text()[:32]
    with pytest.raises(ValueError, match="--val-split needs a dataset name"):
        LMData(_args(corpus, val_split="validation"), tok)
    with pytest.raises(ValueError, match="--shuffle-buffer needs --val-data or --val-split"):
        LMData(_args(corpus, streaming=True, shuffle_buffer=10), tok)
