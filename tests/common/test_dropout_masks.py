"""The shared dropout generator (--dropout_rng shared): splitmix64 over a per-call key, masks that depend on the
key and on each unit's place in the global batch only."""
import numpy as np
import pytest

from common_data.training.dropout_masks import (SharedMasks, keep_scale, mix64, mix64_array, module_key,
                                                stream_key, uniforms)


def test_the_stream_is_splitmix64():
    # splitmix64 seeded with 0 (Vigna's splitmix64.c) first outputs 0xE220A8397B1DCDAF, then 0x6E789E6AA1B965F4
    assert [int(u) for u in uniforms(0, [0], 2)[0]] == [0xE220A8397B1DCDAF >> 11, 0x6E789E6AA1B965F4 >> 11]
    words = np.random.default_rng(0).integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(2)
    assert [int(z) for z in mix64_array(words.copy())] == [mix64(int(w)) for w in words]


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
