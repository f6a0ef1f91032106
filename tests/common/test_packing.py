"""Packing a right-padded batch (common_data.model.packing): the real tokens one after another, and back."""
import numpy as np
import pytest

from common_data.model.packing import pack
from common_data.training.dropout_masks import keep_scale, stream_key


def test_places_pick_the_real_tokens_and_slots_put_them_back():
    lengths, length = np.array([3, 1, 4]), 4
    packing = pack(lengths, length)
    tokens = np.arange(12).reshape(3, 4) * 10
    packed = tokens.reshape(-1)[packing.places]
    np.testing.assert_array_equal(packed, [0, 10, 20, 40, 80, 90, 100, 110])
    with_zero = np.append(packed, 0)[packing.slots].reshape(3, 4)
    np.testing.assert_array_equal(with_zero, np.where(np.arange(4) < lengths[:, None], tokens, 0))


@pytest.mark.parametrize("lengths", [[3, 0], [5, 2], []])
def test_rows_without_tokens_or_longer_than_the_batch_are_refused(lengths):
    with pytest.raises(ValueError, match="row lengths"):
        pack(lengths, 4)


def test_a_packed_dropout_mask_is_the_padded_mask_at_the_real_tokens():
    key, rows, lengths = stream_key(3, 2, 1, 99), [4, 5, 6], np.array([2, 5, 3])
    padded = keep_scale(key, rows, (3, 5, 8), 0.3)
    packed = keep_scale(key, rows, (10, 8), 0.3, lengths)
    np.testing.assert_array_equal(packed, padded.reshape(15, 8)[pack(lengths, 5).places])
