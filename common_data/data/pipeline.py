"""Convert, sample and encode whole datasets: the work behind `nlg-data prepare` and sample_datasets.py.

Outputs per dataset under `out_root/<dataset>/`: formatted/ (every row of each split),
sampled/ (the stratified sample), encoded/ (the sample in GPT-2 token ids), all
`{split}_formatted.jsonl` except encoded/`{split}.jsonl`; encoded/prepared.json records what they
were made from, so that an unchanged dataset is not prepared twice.
"""
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common_data.data import e2e_text, encoding, formats, sampling, sources
from common_data.util import jsonl
from common_data.util.atomic import atomic_open
from common_data.data.download import download
from common_data.data.encoding import VOCAB_FILES, load_tokenizer, vocab_dir, write_encoded
from common_data.util.jsonl import write_jsonl
from common_data.util.paths import REPO_ROOT, shared_dir
from common_data.data.sampling import SPLITS, count_table, sample_rows, split_rng
from common_data.data.sources import data_root, find_source

DEFAULT_OUT_ROOT = REPO_ROOT / "common_data"
DEFAULT_RATIO = 0.18
DEFAULT_SEED = 1
PASSED_THROUGH = "passed through, source already sampled"
CODE_MODULES = (e2e_text, encoding, formats, jsonl, sampling, sources)


@dataclass(frozen=True)
class LoadedSplit:
    rows: list
    path: Path
    already_sampled: bool


def load_dataset(dataset, root=None):
    """{split: LoadedSplit} for every split of `dataset`, read from its first available source."""
    root = Path(root or data_root())
    loaded = {}
    for split in SPLITS:
        source, path = find_source(root, dataset, split)
        loaded[split] = LoadedSplit(source.read(path), path, source.already_sampled)
    return loaded


def sample_dataset(dataset, loaded, ratio, seed):
    """{split: sampled rows}; a split whose source is already a sample is passed through unchanged."""
    return {split: part.rows if part.already_sampled else sample_rows(part.rows, ratio, split_rng(seed, dataset, split))
            for split, part in loaded.items()}


def describe(dataset, loaded, sampled, ratio, seed):
    """The counts table of one dataset as printable text, with the sources and pass-through notes."""
    lines = [f"== {dataset}: rows per type, full -> sampled (ratio {ratio}, seed {seed})"]
    lines += [f"   {split}: {part.path}" + (f"  [{PASSED_THROUGH}]" if part.already_sampled else "")
              for split, part in loaded.items()]
    with pd.option_context("display.max_rows", None, "display.width", 200):
        lines.append(count_table({s: p.rows for s, p in loaded.items()}, sampled).to_string())
    return "\n".join(lines)


def write_sampled(folder, sampled):
    for split, rows in sampled.items():
        write_jsonl(Path(folder) / f"{split}_formatted.jsonl", rows)


def _signature(source_paths, vocab, ratio, seed):
    """What the outputs depend on: sizes and times of the sources and vocabulary, the settings, the code."""
    files = [f for path in source_paths for f in ([path] if path.is_file() else sorted(path.rglob("*.xml")))]
    files += [vocab / name for name in VOCAB_FILES]
    code = hashlib.sha256(b"".join(Path(path).read_bytes() for path in [__file__, *(m.__file__ for m in CODE_MODULES)]))
    return {"ratio": ratio, "seed": seed, "code": code.hexdigest(),
            "files": [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def prepare_dataset(dataset, out_root=DEFAULT_OUT_ROOT, ratio=DEFAULT_RATIO, seed=DEFAULT_SEED, root=None,
                    force=False):
    """Convert, sample and encode one dataset; skip the work when the stamp says the outputs are current."""
    root = Path(root or data_root())
    folder = Path(out_root) / dataset
    vocab = vocab_dir()
    signature = _signature([find_source(root, dataset, split)[1] for split in SPLITS], vocab, ratio, seed)
    stamp = folder / "encoded" / "prepared.json"
    outputs = [folder / stage / f"{split}{suffix}" for split in SPLITS
               for stage, suffix in (("formatted", "_formatted.jsonl"), ("sampled", "_formatted.jsonl"),
                                     ("encoded", ".jsonl"))]
    if not force and stamp.is_file() and all(path.is_file() for path in outputs):
        stored = json.loads(stamp.read_text(encoding="utf-8"))
        if stored["signature"] == signature:
            return f"{stored['table']}\n   (up to date: {folder}; --force redoes it)"
    loaded = load_dataset(dataset, root)
    sampled = sample_dataset(dataset, loaded, ratio, seed)
    write_sampled(folder / "formatted", {split: part.rows for split, part in loaded.items()})
    write_sampled(folder / "sampled", sampled)
    tokenizer = load_tokenizer(vocab)
    for split, rows in sampled.items():
        write_encoded(folder / "encoded" / f"{split}.jsonl", rows, tokenizer)
    table = describe(dataset, loaded, sampled, ratio, seed)
    with atomic_open(stamp, "w") as handle:
        json.dump({"signature": signature, "table": table}, handle, indent=1)
    return table


def fetch_if_no_mirror(dataset):
    """Download the official files of `dataset` unless ../shared (the mirror) exists."""
    if shared_dir() is None:
        download(dataset)


def prepare(datasets, out_root=DEFAULT_OUT_ROOT, ratio=DEFAULT_RATIO, seed=DEFAULT_SEED, force=False):
    """prepare_dataset for each dataset, downloading the official files first when there is no mirror."""
    for dataset in datasets:
        start = time.perf_counter()
        fetch_if_no_mirror(dataset)
        print(prepare_dataset(dataset, out_root, ratio, seed, force=force))
        print(f"   {dataset} done in {time.perf_counter() - start:.1f} s", flush=True)
