"""Batches: microsoft/LoRA's example semantics, dynamic padding, seeded order, resume, rank split."""
import json

import numpy as np
import pytest

from common_data.training.batching import (BatchConfig, collate, epoch_order, eval_batches, load_encoded, make_examples,
                                  num_train_batches, train_batches)
from common_data.util.errors import DataFormatError


@pytest.fixture(scope="module")
def pairs(shared):
    return load_encoded(shared / "fixtures/seed_run/e2e_test_sampled_encoded.jsonl")


def lora_padded_example(context, completion, seq_len):
    """FT_Dataset.__getitem__ of microsoft/LoRA (no prefix/infix), padded to seq_len as there."""
    def pad(tokens, value):
        tokens = tokens[:seq_len]
        return tokens + [value] * (seq_len - len(tokens)), len(tokens)

    inputs, input_len = pad(context + completion, 0)
    targets, _ = pad((context + completion)[1:], 0)
    mask, _ = pad([0.0] * (len(context) - 1) + [1.0] * (input_len - len(context)), 0.0)
    return inputs, targets, mask


@pytest.mark.parametrize("seq_len", [512, 40, 25])
def test_examples_match_lora_ft_dataset(pairs, seq_len):
    config = BatchConfig(batch_size=8, seq_len=seq_len, pad_to_seq_len=True)
    batch = next(eval_batches(make_examples(pairs, seq_len), config))
    for row, (context, completion) in enumerate(pairs[:8]):
        inputs, targets, mask = lora_padded_example(context, completion, seq_len)
        assert batch.input_ids[row].tolist() == inputs
        assert batch.targets[row].tolist() == targets
        assert batch.loss_mask[row].tolist() == mask


def test_loss_mask_covers_exactly_the_completion(pairs):
    batch = next(eval_batches(make_examples(pairs, 512), BatchConfig(batch_size=16)))
    for row, (_, completion) in enumerate(pairs[:16]):
        assert batch.targets[row][batch.loss_mask[row] == 1.0].tolist() == completion


def test_dynamic_padding_shapes_and_dtypes(pairs):
    config = BatchConfig(batch_size=8, seq_len=64, pad_multiple=32)
    examples = make_examples(pairs, config.seq_len)
    widths = set()
    for batch in train_batches(examples, config, seed=1, epoch=0):
        longest = int((batch.input_ids != 0).sum(axis=1).max())
        assert batch.input_ids.shape[1] % 32 == 0 or batch.input_ids.shape[1] == config.seq_len
        assert longest <= batch.input_ids.shape[1] < longest + 32
        assert batch.input_ids.dtype == np.int64 and batch.targets.dtype == np.int64
        assert batch.loss_mask.dtype == np.float32
        widths.add(batch.input_ids.shape[1])
    assert widths <= {32, 64}
    fixed = BatchConfig(batch_size=8, seq_len=96, pad_to_seq_len=True)
    assert {b.input_ids.shape for b in train_batches(make_examples(pairs, 96), fixed, 1, 0)} == {(8, 96)}


def test_epoch_order_seeded_and_complete():
    order = epoch_order(845, 8, seed=3, epoch=2)
    assert order.shape == (num_train_batches(845, 8), 8)
    assert set(order.ravel()) == set(range(845))
    assert np.array_equal(order, epoch_order(845, 8, seed=3, epoch=2))
    assert not np.array_equal(order, epoch_order(845, 8, seed=3, epoch=3))
    assert not np.array_equal(order, epoch_order(845, 8, seed=4, epoch=2))


def _arrays(batch):
    return batch.input_ids, batch.targets, batch.loss_mask


def test_resume_from_batch_k(pairs):
    config = BatchConfig(batch_size=8, seq_len=128)
    examples = make_examples(pairs, config.seq_len)
    whole = list(train_batches(examples, config, seed=5, epoch=1))
    resumed = list(train_batches(examples, config, seed=5, epoch=1, start_batch=40))
    assert len(resumed) == len(whole) - 40
    for a, b in zip(whole[40:], resumed):
        assert all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_split_the_global_batch(pairs, world_size):
    config = BatchConfig(batch_size=8, seq_len=128)
    examples = make_examples(pairs, config.seq_len)
    single = list(train_batches(examples, config, seed=5, epoch=0))
    per_rank = [list(train_batches(examples, config, seed=5, epoch=0, rank=r, world_size=world_size))
                for r in range(world_size)]
    for index, whole in enumerate(single):
        parts = [per_rank[r][index] for r in range(world_size)]
        assert all(part.input_ids.shape == (8 // world_size, whole.input_ids.shape[1]) for part in parts)
        for field in range(3):
            assert np.array_equal(np.concatenate([_arrays(p)[field] for p in parts]), _arrays(whole)[field])
    with pytest.raises(ValueError):
        next(train_batches(examples, config, seed=5, epoch=0, rank=0, world_size=3))


def test_eval_batches_in_file_order(pairs):
    config = BatchConfig(batch_size=10, seq_len=512)
    examples = make_examples(pairs, config.seq_len)
    batches = list(eval_batches(examples, config))
    assert [len(b.input_ids) for b in batches] == [10] * 84 + [4]
    rows = [row[row != 0].tolist() for b in batches for row in b.input_ids]
    assert rows == [context + completion for context, completion in pairs]
    reference = collate(examples[:10], batches[0].input_ids.shape[1])
    assert np.array_equal(reference.input_ids, batches[0].input_ids)
    halves = [list(eval_batches(examples, config, rank=r, world_size=2)) for r in range(2)]
    for whole, first, second in zip(batches, *halves):
        assert np.array_equal(np.concatenate([first.loss_mask, second.loss_mask]), whole.loss_mask)


def test_load_encoded_rejects_bad_rows(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"context": [1, 2], "completion": [3]}) + "\n"
                    + json.dumps({"context": [1, "x"], "completion": [3]}) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"train\.jsonl: line 2"):
        load_encoded(path)
