"""Plain text for pre-training a small base GPT-2 where no pretrained checkpoint can be had.

Each output row is `{"context": [bos], "completion": ids}`: with a one-token context the training
batches (common_data.training.batching) put the loss on every token, so the trainer learns an ordinary
language model on the text. Two kinds of text come from encoded files (each part ends in
<|endoftext|> as encoded):
  - texts: the completions only (e.g. the target sentences of E2E train), the data records left out;
  - rows: context then completion (e.g. WebNLG and DART train: "record<|endoftext|> sentence<|endoftext|>"),
    so that the base also learns to write about a record it has read, in other domains.
With `pack` > 0, consecutive pieces share a row as long as the row (bos included) stays within `pack`
tokens, as in GPT-2 pre-training: no padding, and every position up to `pack` is trained.

    python -m common_data.cli.base_corpus --pack 128 --out .cache/base/train.jsonl \\
        --rows common_data/{webnlg,dart}/encoded/train.jsonl --texts common_data/e2e/encoded/train.jsonl
"""
import hashlib

from common_data.training.batching import load_encoded
from common_data.data.encoding import END_OF_TEXT
from common_data.util.jsonl import write_jsonl


def pieces(text_paths=(), row_paths=()):
    """The completions of the `text_paths` files, then context + completion of the `row_paths` files, in order."""
    texts = [completion for path in text_paths for _, completion in load_encoded(path)]
    return texts + [context + completion for path in row_paths for context, completion in load_encoded(path)]


def packed(parts, pack):
    """Consecutive parts joined while 1 + their total length stays within `pack` (0: one part a row)."""
    rows, current = [], []
    for part in parts:
        if current and (not pack or 1 + len(current) + len(part) > pack):
            rows.append(current)
            current = []
        current = current + part
    return rows + [current] if current else rows


def corpus_rows(text_paths=(), row_paths=(), bos=END_OF_TEXT, pack=0):
    """Rows with context [bos] and the pieces of the encoded files, packed to `pack` tokens."""
    return [{"context": [bos], "completion": ids} for ids in packed(pieces(text_paths, row_paths), pack)]


def write_base_corpus(out, text_paths=(), row_paths=(), bos=END_OF_TEXT, pack=0):
    """Write corpus_rows(...) to `out` (JSONL, atomically); returns the sha256 of the written file."""
    write_jsonl(out, corpus_rows(text_paths, row_paths, bos, pack))
    with open(out, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
