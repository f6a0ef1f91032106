"""Stratified group sampling on the real splits: per-type counts, whole groups, determinism."""
import numpy as np
import pytest

import sample_datasets
from common_data.data.pipeline import load_dataset, sample_dataset
from common_data.data.sampling import count_table, group_sizes, group_types, sample_rows, split_rng

RATIO = 0.18


@pytest.fixture(scope="module")
def loaded(shared):
    return {dataset: load_dataset(dataset, shared / "datasets") for dataset in ("e2e", "webnlg", "dart")}


SAMPLED_SPLITS = [("webnlg", "train"), ("webnlg", "valid"), ("webnlg", "test"),
                  ("e2e", "valid"), ("e2e", "test"), ("dart", "valid"), ("dart", "test")]


@pytest.mark.parametrize("dataset, split", SAMPLED_SPLITS)
def test_per_type_counts_within_one_group(loaded, dataset, split):
    rows = loaded[dataset][split].rows
    kept = sample_rows(rows, RATIO, split_rng(7, dataset, split))
    types, sizes = group_types(rows), group_sizes(rows)
    kept_groups = group_sizes(kept)
    for row_type in set(types.values()):
        groups = [group for group in sizes if types[group] == row_type]
        full = sum(sizes[group] for group in groups)
        sampled = sum(kept_groups.get(group, 0) for group in groups)
        assert abs(sampled - RATIO * full) < max(sizes[group] for group in groups), row_type


@pytest.mark.parametrize("dataset, split", SAMPLED_SPLITS)
def test_groups_kept_or_dropped_whole_in_file_order(loaded, dataset, split):
    rows = loaded[dataset][split].rows
    kept = sample_rows(rows, RATIO, split_rng(7, dataset, split))
    sizes, kept_sizes = group_sizes(rows), group_sizes(kept)
    assert all(kept_sizes[group] == sizes[group] for group in kept_sizes)
    kept_ids = {id(row) for row in kept}
    assert [row for row in rows if id(row) in kept_ids] == kept
    assert 0.15 * len(rows) < len(kept) < 0.21 * len(rows)


def test_already_sampled_sources_pass_through(loaded):
    for dataset in ("e2e", "dart"):
        assert loaded[dataset]["train"].already_sampled
        sampled = sample_dataset(dataset, loaded[dataset], RATIO, seed=3)
        assert sampled["train"] == loaded[dataset]["train"].rows
        assert len(sampled["valid"]) < len(loaded[dataset]["valid"].rows)
    assert not loaded["webnlg"]["train"].already_sampled


def test_unbiased_rounding_over_many_small_types():
    # 400 types of one 2-row group each: each type rounds to 0 or 1 group, the total stays near 18%.
    rows = [{"context": f"c{i}", "completion": str(j), "type": f"t{i}", "group": f"c{i}"}
            for i in range(400) for j in range(2)]
    kept = sample_rows(rows, RATIO, np.random.default_rng(0))
    assert abs(len(kept) - RATIO * len(rows)) < 40
    assert sample_rows(rows, 1.0, np.random.default_rng(0)) == rows
    with pytest.raises(ValueError):
        sample_rows(rows, 0.0, np.random.default_rng(0))


def test_count_table_totals(loaded):
    full = {split: part.rows for split, part in loaded["dart"].items()}
    sampled = sample_dataset("dart", loaded["dart"], RATIO, seed=3)
    table = count_table(full, sampled, max_types=10)
    assert len(table) == 12
    assert table.loc["total", ("valid", "full")] == len(full["valid"])
    assert table.loc["total", ("test", "sampled")] == len(sampled["test"])
    assert table.loc["total", ("total", "full")] == sum(len(rows) for rows in full.values())


def _run(tmp_path, name, seed):
    out = tmp_path / name
    sample_datasets.main(["--seed", str(seed), "--out", str(out / "{dataset}"), "--datasets", "e2e"])
    return {path.relative_to(out): path.read_bytes() for path in sorted(out.rglob("*.jsonl"))}


def test_same_seed_same_files_other_seed_other_files(shared, tmp_path, capsys):
    first, again, other = _run(tmp_path, "a", 5), _run(tmp_path, "b", 5), _run(tmp_path, "c", 6)
    assert sorted(map(str, first)) == [f"e2e/{split}_formatted.jsonl" for split in ("test", "train", "valid")]
    assert first == again
    assert [first[name] == other[name] for name in sorted(first)] == [False, True, False]
    assert "passed through, source already sampled" in capsys.readouterr().out


@pytest.mark.parametrize("dataset", ["webnlg", "dart"])
def test_same_seed_same_sample_other_seed_other_sample(loaded, dataset):
    first = sample_dataset(dataset, loaded[dataset], RATIO, seed=5)
    assert first == sample_dataset(dataset, loaded[dataset], RATIO, seed=5)
    other = sample_dataset(dataset, loaded[dataset], RATIO, seed=6)
    for split in ("train", "valid", "test"):
        assert (first[split] == other[split]) == loaded[dataset][split].already_sampled, split
