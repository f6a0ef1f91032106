"""The shared dropout generator (--dropout_rng shared): Philox streams under a splitmix64 key per dropout call, masks
that depend on the key and on each unit's place in the global batch only."""
import numpy as np
import pytest

from common_data.training.dropout_masks import (GOLDEN, SharedMasks, keep_scale, mix64, module_key, row_words,
                                                stream_key)


def test_each_row_reads_its_own_philox_stream_in_32_bit_words():
    key = stream_key(110, 7, 3, 1234)
    words = [(int(raw) & 0xFFFFFFFF, int(raw) >> 32)
             for raw in np.random.Philox(key=key, counter=5 << 128).random_raw(6)]
    expected = np.array([word for pair in words for word in pair], dtype=np.uint32)
    np.testing.assert_array_equal(row_words(key, 5, 11), expected[:11])
    scale = keep_scale(key, [5], (1, 11), 0.5)
    np.testing.assert_array_equal(scale[0] == 0, expected[:11] < 2**31)


def test_stream_keys_are_splitmix64_hashes():
    # splitmix64 seeded with 0 (Vigna's splitmix64.c) first outputs 0xE220A8397B1DCDAF
    assert mix64(GOLDEN) == 0xE220A8397B1DCDAF
    keys = {stream_key(seed, step, layer, tensor) for seed in (0, 1) for step in (0, 1, 2) for layer in (-1, 0, 1)
            for tensor in (0, 2**31)}
    assert len(keys) == 36 and all(0 <= key < 2**64 for key in keys)


def test_the_same_key_gives_the_same_mask_and_each_key_word_another():
    base = (110, 7, 3, 1234)
    mask = keep_scale(stream_key(*base), range(4), (4, 9, 32), 0.5)
    np.testing.assert_array_equal(keep_scale(stream_key(*base), range(4), (4, 9, 32), 0.5), mask)
    for position in range(4):
        other = list(base)
        other[position] += 1
        changed = keep_scale(stream_key(*other), range(4), (4, 9, 32), 0.5)
        # two independent masks of p = 0.5 agree on about half of the units
        assert 0.4 < (changed == mask).mean() < 0.6, position


def test_keep_rate_and_scale():
    for p in (0.1, 0.5):
        scale = keep_scale(stream_key(1, 2, 3, 4), range(16), (16, 128, 256), p)
        assert scale.dtype == np.float32 and set(np.unique(scale)) == {0.0, np.float32(1 / (1 - p))}
        units = scale.size
        # within 5 standard deviations of the binomial
        assert abs((scale == 0).mean() - p) < 5 * np.sqrt(p * (1 - p) / units)
    assert (keep_scale(stream_key(1, 2, 3, 4), range(4), (4, 8, 8), 0.0) == 1).all()


def test_a_unit_keeps_its_mask_whatever_the_padding_and_the_rank_split():
    key = stream_key(3, 1, 0, 99)
    whole = keep_scale(key, range(8), (8, 20, 16), 0.3)
    np.testing.assert_array_equal(keep_scale(key, range(8), (8, 12, 16), 0.3), whole[:, :12])
    np.testing.assert_array_equal(keep_scale(key, [4, 5, 6, 7], (4, 20, 16), 0.3), whole[4:])


def test_module_keys_name_the_block_and_the_tensor_in_it():
    assert module_key("h.3.attn.c_attn.lora_dropout")[0] == 3
    assert module_key("h.3.attn.c_attn.lora_dropout")[1] == module_key("h.0.attn.c_attn.lora_dropout")[1]
    assert module_key("h.3.attn.c_attn.lora_dropout")[1] != module_key("h.3.mlp.c_fc.lora_dropout")[1]
    assert module_key("drop")[0] == -1


def test_shared_masks_key_by_step_and_check_the_rows():
    masks = SharedMasks(seed=5, rows=[2, 3])
    masks.step = 1
    first = masks.scale(0, 1, (2, 6, 8), 0.5)
    np.testing.assert_array_equal(first, keep_scale(stream_key(5, 1, 0, 1), [2, 3], (2, 6, 8), 0.5))
    masks.step = 2
    assert not np.array_equal(masks.scale(0, 1, (2, 6, 8), 0.5), first)
    with pytest.raises(ValueError, match="3 rows in a batch of 2"):
        masks.scale(0, 1, (3, 6, 8), 0.5)
    masks.step, masks.lengths = 1, np.array([4, 6])
    np.testing.assert_array_equal(masks.scale(0, 1, (10, 8), 0.5), first.reshape(12, 8)[[0, 1, 2, 3, 6, 7, 8, 9, 10, 11]])
    with pytest.raises(ValueError, match="12 rows in a batch of 10 packed tokens"):
        masks.scale(0, 1, (12, 8), 0.5)
