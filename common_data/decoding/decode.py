"""Beam-search token ids back to text, and the references of the formatted rows (gpt2_decode.py's work):
cut at "<|endoftext|>" and at the first blank line, lowercased and tokenized as microsoft/LoRA's gpt2_decode.py.
"""
import re
from pathlib import Path

from common_data.data.encoding import VOCAB_FILES, decode, load_tokenizer
from common_data.util.errors import DataFormatError
from common_data.util.jsonl import read_jsonl

END_OF_TEXT = "<|endoftext|>"


def cut(text):
    """The text before <|endoftext|> and before the first blank line, stripped."""
    return text.split(END_OF_TEXT)[0].split("\n\n")[0].strip()


def tokenize_words(text):
    """Every non-word character a token of its own, tokens separated by single spaces."""
    return " ".join(" ".join(re.split(r"(\W)", text)).split())


def post_process(text, tokenize, lower):
    if lower:
        text = text.lower()
    return tokenize_words(text) if tokenize else text


def tokenizer_from(folder):
    """GPT-2's tokenizer from a vocabulary folder, or the default one (folder None)."""
    if folder is not None:
        missing = [name for name in VOCAB_FILES if not (Path(folder) / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: no {' or '.join(missing)} (the GPT-2 vocabulary: microsoft/LoRA's "
                                    "encoder.json and vocab.bpe under these names)")
    return load_tokenizer(folder)


def reference_groups(input_file):
    """(contexts of the rows in order, {context: [references]} in order of first appearance)."""
    rows = read_jsonl(input_file, required_keys=("context", "completion"))
    contexts = [row["context"] for row in rows]
    groups = {}
    for row in rows:
        groups.setdefault(row["context"], []).append(cut(row["completion"]))
    return contexts, groups


def predictions(sample_file, contexts, tokenizer):
    """{context: decoded prediction}; a later row of the same context replaces an earlier one."""
    texts = {}
    vocab_size = tokenizer.get_vocab_size()
    for line, row in enumerate(read_jsonl(sample_file, required_keys=("id", "predict")), start=1):
        index, ids = row["id"], row["predict"]
        if type(index) is not int or not 0 <= index < len(contexts):
            raise DataFormatError(sample_file, f"line {line}", f"id {index!r} is not a row of the input file "
                                                               f"(0 .. {len(contexts) - 1})")
        if not isinstance(ids, list) or not all(type(i) is int and 0 <= i < vocab_size for i in ids):
            raise DataFormatError(sample_file, f"line {line}", f"predict is not a list of token ids below {vocab_size}")
        texts[contexts[index]] = cut(decode(ids, tokenizer))
    return texts
