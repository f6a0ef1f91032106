"""GPT-2 byte-level BPE through `tokenizers`, and the encoded files microsoft/LoRA's gpt2_encode.py writes.

An encoded row is `{"context": ids + [50256], "completion": ids(" " + completion) + [50256]}`.
"""
import functools
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from common_data.data.download import download
from common_data.util.jsonl import write_jsonl
from common_data.util.paths import shared_dir

END_OF_TEXT = 50256
VOCAB_FILES = ("vocab.json", "merges.txt")


def vocab_dir():
    """../shared/vocab when it holds the GPT-2 vocabulary, else the downloaded copy (fetched if missing)."""
    shared = shared_dir()
    if shared is not None and all((shared / "vocab" / name).is_file() for name in VOCAB_FILES):
        return shared / "vocab"
    return download("gpt2") / "gpt2"


def load_tokenizer(folder=None):
    """GPT-2's tokenizer from `folder` (vocab.json + merges.txt), default vocab_dir()."""
    folder = Path(folder or vocab_dir())
    tokenizer = Tokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


@functools.cache
def default_tokenizer():
    """load_tokenizer() once per process."""
    return load_tokenizer()


def encode_rows(rows, tokenizer):
    """Encoded rows (see the module docstring) for formatted rows, in order."""
    contexts = tokenizer.encode_batch([row["context"] for row in rows])
    completions = tokenizer.encode_batch([" " + row["completion"] for row in rows])
    return [{"context": context.ids + [END_OF_TEXT], "completion": completion.ids + [END_OF_TEXT]}
            for context, completion in zip(contexts, completions)]


def write_encoded(path, rows, tokenizer):
    write_jsonl(path, encode_rows(rows, tokenizer))


def decode(ids, tokenizer=None):
    """The text of token ids, <|endoftext|> included as text (the caller cuts there)."""
    return (tokenizer or default_tokenizer()).decode([int(i) for i in ids], skip_special_tokens=False)
