"""The base corpus: completions and whole rows as plain texts that the shared batching trains on token by token."""
import hashlib
import json

import pytest

from common_data.cli.base_corpus import main
from common_data.data.base_corpus import corpus_rows, write_base_corpus
from common_data.training.batching import load_encoded, make_example
from common_data.util.errors import DataFormatError


def write_encoded(path, rows):
    path.write_text("".join(json.dumps({"context": c, "completion": t}) + "\n" for c, t in rows), encoding="utf-8")
    return path


@pytest.fixture
def encoded_files(tmp_path):
    first = write_encoded(tmp_path / "a.jsonl", [([5, 6, 50256], [7, 8, 9, 50256]), ([5, 50256], [10, 50256])])
    second = write_encoded(tmp_path / "b.jsonl", [([1, 2, 3, 50256], [11, 12, 13, 14, 50256])])
    return first, second


def completions(rows):
    return [row["completion"] for row in rows]


def test_texts_keep_every_completion_in_order_and_drop_the_contexts(encoded_files):
    rows = corpus_rows(text_paths=encoded_files)
    assert completions(rows) == [[7, 8, 9, 50256], [10, 50256], [11, 12, 13, 14, 50256]]
    assert all(row["context"] == [50256] for row in rows)


def test_rows_keep_context_then_completion_after_the_texts(encoded_files):
    first, second = encoded_files
    rows = corpus_rows(text_paths=[second], row_paths=[first], bos=0)
    assert completions(rows) == [[11, 12, 13, 14, 50256], [5, 6, 50256, 7, 8, 9, 50256], [5, 50256, 10, 50256]]
    assert all(row["context"] == [0] for row in rows)


def test_the_batching_puts_the_loss_on_every_token(encoded_files, tmp_path):
    out = tmp_path / "corpus.jsonl"
    write_base_corpus(out, text_paths=encoded_files[:1], row_paths=encoded_files[1:], pack=16)
    for context, completion in load_encoded(out):
        example = make_example(context, completion, seq_len=64)
        assert example.input_ids == [50256] + completion
        assert [t for t, m in zip(example.targets, example.loss_mask) if m] == completion


def test_packing_joins_consecutive_pieces_within_the_budget(encoded_files):
    rows = corpus_rows(text_paths=encoded_files, pack=8)
    # 1 + 4 + 2 = 7 fits in 8; adding the 5-token text would not
    assert completions(rows) == [[7, 8, 9, 50256, 10, 50256], [11, 12, 13, 14, 50256]]


def test_a_piece_longer_than_the_budget_gets_a_row_of_its_own(encoded_files):
    rows = corpus_rows(row_paths=encoded_files, pack=6)
    assert completions(rows) == [[5, 6, 50256, 7, 8, 9, 50256], [5, 50256, 10, 50256],
                                 [1, 2, 3, 50256, 11, 12, 13, 14, 50256]]


def test_the_digest_is_that_of_the_written_file_and_follows_the_content(encoded_files, tmp_path):
    out = tmp_path / "corpus.jsonl"
    digest = write_base_corpus(out, text_paths=encoded_files)
    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    assert write_base_corpus(tmp_path / "other.jsonl", row_paths=encoded_files) != digest


def test_bad_input_names_the_file_and_line(tmp_path):
    bad = write_encoded(tmp_path / "bad.jsonl", [([1, 50256], [2, 50256]), ([1, 50256], [])])
    with pytest.raises(DataFormatError, match=r"bad\.jsonl: line 2"):
        corpus_rows(text_paths=[bad])


def test_command_line_writes_the_corpus_and_prints_its_digest(encoded_files, tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    first, second = map(str, encoded_files)
    assert main(["--out", str(out), "--bos", "0", "--pack", "128", "--texts", first, "--rows", second]) == 0
    assert capsys.readouterr().out.split()[-1] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"context": [0], "completion": [7, 8, 9, 50256, 10, 50256, 1, 2, 3, 50256, 11, 12, 13, 14, 50256]}]


def test_command_line_needs_some_input(tmp_path):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x.jsonl")])
