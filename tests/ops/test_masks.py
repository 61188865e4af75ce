"""Tests for keras_attention.ops.masks.

Expected values are small matrices written out by hand from each helper's
definition, plus brute-force loops over (query, key) pairs for random sizes.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_attention.ops import masks
from keras_attention.ops.masks import causal_mask
from keras_attention.ops.masks import padding_mask
from keras_attention.ops.masks import prefix_lm_mask
from keras_attention.ops.masks import segment_mask
from keras_attention.ops.masks import sliding_window_mask


def examples(n):
    """`n` hypothesis examples, scaled by the loaded profile's budget
    (`HYPOTHESIS_PROFILE=thorough` in tests/conftest.py runs 10x more)."""
    return max(1, n * settings.default.max_examples // 100)


def as_int(mask):
    """Boolean mask tensor -> nested int lists, after checking it is bool."""
    assert keras.backend.standardize_dtype(mask.dtype) == "bool"
    return keras.ops.convert_to_numpy(mask).astype(int).tolist()


# --------------------------------------------------------------------------
# Hand-written expected matrices
# --------------------------------------------------------------------------
class TestCausalMask:
    def test_square(self):
        assert as_int(causal_mask(4)) == [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [1, 1, 1, 1],
        ]

    def test_more_keys_than_queries_is_top_left_aligned(self):
        assert as_int(causal_mask(2, 4)) == [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
        ]

    def test_more_queries_than_keys(self):
        assert as_int(causal_mask(3, 2)) == [
            [1, 0],
            [1, 1],
            [1, 1],
        ]

    def test_offset_aligns_bottom_right_for_decoding(self):
        # Queries are key positions 2 and 3 of a 4-long cache.
        assert as_int(causal_mask(2, 4, offset=2)) == [
            [1, 1, 1, 0],
            [1, 1, 1, 1],
        ]

    def test_negative_offset_leaves_first_row_empty(self):
        assert as_int(causal_mask(3, offset=-1)) == [
            [0, 0, 0],
            [1, 0, 0],
            [1, 1, 0],
        ]

    def test_shape_and_dtype(self):
        m = causal_mask(5, 7)
        assert tuple(m.shape) == (5, 7)
        assert keras.backend.standardize_dtype(m.dtype) == "bool"


class TestSlidingWindowMask:
    def test_causal(self):
        assert as_int(sliding_window_mask(5, window_size=2, causal=True)) == [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 1, 1],
        ]

    def test_bidirectional(self):
        assert as_int(sliding_window_mask(5, window_size=2)) == [
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 1, 1],
            [0, 0, 0, 1, 1],
        ]

    def test_window_of_one_is_the_diagonal(self):
        assert as_int(sliding_window_mask(3, window_size=1)) == [
            [1, 0, 0],
            [0, 1, 0],
            [0, 0, 1],
        ]

    def test_causal_with_offset_and_cross_lengths(self):
        # Queries sit at key positions 3 and 4 of 6 keys; window of 3.
        assert as_int(
            sliding_window_mask(2, 6, window_size=3, causal=True, offset=3)
        ) == [
            [0, 1, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
        ]

    def test_bidirectional_cross_lengths(self):
        assert as_int(sliding_window_mask(2, 4, window_size=2)) == [
            [1, 1, 0, 0],
            [1, 1, 1, 0],
        ]

    def test_window_larger_than_sequence_is_causal_or_full(self):
        np.testing.assert_array_equal(
            as_int(sliding_window_mask(4, window_size=10, causal=True)),
            as_int(causal_mask(4)),
        )
        assert np.all(as_int(sliding_window_mask(4, window_size=10)))

    def test_shape_and_dtype(self):
        m = sliding_window_mask(3, 8, window_size=2)
        assert tuple(m.shape) == (3, 8)
        assert keras.backend.standardize_dtype(m.dtype) == "bool"


class TestPaddingMask:
    def test_from_lengths(self):
        m = padding_mask(np.array([0, 2, 3], "int32"), max_length=3)
        assert tuple(m.shape) == (3, 1, 1, 3)
        assert as_int(m[:, 0, 0]) == [
            [0, 0, 0],
            [1, 1, 0],
            [1, 1, 1],
        ]

    def test_from_int64_lengths(self):
        m = padding_mask(tf.constant([1, 4], tf.int64), max_length=4)
        assert as_int(m[:, 0, 0]) == [[1, 0, 0, 0], [1, 1, 1, 1]]

    def test_from_keras_embedding_mask(self):
        tokens = np.array([[5, 3, 0, 0], [1, 0, 0, 0]])
        keras_mask = keras.layers.Embedding(10, 4, mask_zero=True).compute_mask(
            tokens
        )
        m = padding_mask(keras_mask)
        assert tuple(m.shape) == (2, 1, 1, 4)
        assert as_int(m[:, 0, 0]) == [[1, 1, 0, 0], [1, 0, 0, 0]]

    @pytest.mark.parametrize("dtype", ["int32", "float32"])
    def test_from_zero_one_mask(self, dtype):
        m = padding_mask(np.array([[1, 0, 1]], dtype), max_length=3)
        assert as_int(m) == [[[[1, 0, 1]]]]

    def test_lengths_and_mask_agree(self):
        lengths = np.array([3, 0, 5, 1], "int32")
        as_mask = np.arange(5)[None, :] < lengths[:, None]
        np.testing.assert_array_equal(
            as_int(padding_mask(lengths, max_length=5)),
            as_int(padding_mask(as_mask)),
        )

    def test_broadcasts_over_heads_and_queries(self):
        m = padding_mask(np.array([1, 2], "int32"), max_length=2)
        full = keras.ops.broadcast_to(m, (2, 3, 4, 2))
        assert as_int(full[1, 2]) == [[1, 1]] * 4
        assert as_int(full[0, 1]) == [[1, 0]] * 4


class TestSegmentMask:
    def test_self_attention_block_diagonal(self):
        ids = np.array([[0, 0, 1, 1, 2], [4, 4, 4, 4, 4]], "int32")
        m = segment_mask(ids)
        assert tuple(m.shape) == (2, 1, 5, 5)
        assert as_int(m[0, 0]) == [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 0, 1],
        ]
        assert as_int(m[1, 0]) == [[1] * 5] * 5

    def test_cross_attention(self):
        q_ids = np.array([[1, 2]], "int32")
        k_ids = np.array([[1, 1, 2, 3]], "int32")
        m = segment_mask(q_ids, k_ids)
        assert tuple(m.shape) == (1, 1, 2, 4)
        assert as_int(m[0, 0]) == [
            [1, 1, 0, 0],
            [0, 0, 1, 0],
        ]

    def test_non_contiguous_segments_match_by_id(self):
        assert as_int(segment_mask(np.array([[7, 3, 7]], "int32"))[0, 0]) == [
            [1, 0, 1],
            [0, 1, 0],
            [1, 0, 1],
        ]


class TestPrefixLMMask:
    def test_int_prefix(self):
        m = prefix_lm_mask(4, prefix_length=2)
        assert tuple(m.shape) == (4, 4)
        assert as_int(m) == [
            [1, 1, 0, 0],
            [1, 1, 0, 0],
            [1, 1, 1, 0],
            [1, 1, 1, 1],
        ]

    def test_zero_prefix_is_causal(self):
        assert as_int(prefix_lm_mask(3, prefix_length=0)) == as_int(
            causal_mask(3)
        )

    def test_full_prefix_is_bidirectional(self):
        assert as_int(prefix_lm_mask(3, prefix_length=3)) == [[1, 1, 1]] * 3

    def test_cross_lengths(self):
        assert as_int(prefix_lm_mask(2, prefix_length=1, key_length=4)) == [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
        ]

    def test_per_example_tensor_prefix(self):
        m = prefix_lm_mask(3, prefix_length=np.array([0, 2, 3], "int32"))
        assert tuple(m.shape) == (3, 1, 3, 3)
        assert as_int(m[:, 0]) == [
            [[1, 0, 0], [1, 1, 0], [1, 1, 1]],
            [[1, 1, 0], [1, 1, 0], [1, 1, 1]],
            [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
        ]

    def test_tensor_prefix_matches_int_prefix(self):
        m = prefix_lm_mask(5, prefix_length=tf.constant([2, 4], tf.int64))
        for row, prefix in enumerate([2, 4]):
            assert as_int(m[row, 0]) == as_int(prefix_lm_mask(5, prefix))


class TestCombinations:
    def test_causal_and_padding(self):
        m = causal_mask(4) & padding_mask(np.array([2, 4], "int32"), max_length=4)
        assert tuple(m.shape) == (2, 1, 4, 4)
        assert as_int(m[:, 0]) == [
            [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]],
            [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]],
        ]

    def test_window_or_global_first_token(self):
        # Local attention plus a global first key (Longformer-style).
        first = np.array([True, False, False, False])[None, :]
        m = sliding_window_mask(4, window_size=1) | first
        assert as_int(m) == [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [1, 0, 1, 0],
            [1, 0, 0, 1],
        ]

    def test_segment_and_causal_for_packed_documents(self):
        ids = np.array([[0, 0, 1, 1]], "int32")
        m = segment_mask(ids) & causal_mask(4)
        assert as_int(m[0, 0]) == [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 1, 1],
        ]

    def test_ops_logical_functions_agree_with_operators(self):
        a, b = causal_mask(3), sliding_window_mask(3, window_size=2)
        assert as_int(a & b) == as_int(keras.ops.logical_and(a, b))
        assert as_int(a | b) == as_int(keras.ops.logical_or(a, b))
        assert as_int(a | b) == [[1, 1, 0], [1, 1, 1], [1, 1, 1]]


# --------------------------------------------------------------------------
# Brute force over random sizes
# --------------------------------------------------------------------------
def brute(tq, tk, allowed):
    return [[int(bool(allowed(i, j))) for j in range(tk)] for i in range(tq)]


@settings(max_examples=examples(40), deadline=None)
@given(
    tq=st.integers(1, 7),
    tk=st.integers(1, 7),
    offset=st.integers(-3, 6),
    window=st.integers(1, 8),
    prefix=st.integers(0, 8),
)
def test_helpers_match_brute_force(tq, tk, offset, window, prefix):
    assert as_int(causal_mask(tq, tk, offset=offset)) == brute(
        tq, tk, lambda i, j: j <= i + offset
    )
    assert as_int(
        sliding_window_mask(tq, tk, window_size=window, causal=True, offset=offset)
    ) == brute(tq, tk, lambda i, j: 0 <= i + offset - j < window)
    assert as_int(
        sliding_window_mask(tq, tk, window_size=window, offset=offset)
    ) == brute(tq, tk, lambda i, j: abs(i + offset - j) < window)
    assert as_int(prefix_lm_mask(tq, prefix, key_length=tk)) == brute(
        tq, tk, lambda i, j: j < prefix or j <= i
    )


@settings(max_examples=examples(25), deadline=None)
@given(
    ids=st.lists(
        st.lists(st.integers(0, 2), min_size=6, max_size=6), min_size=1, max_size=3
    )
)
def test_segment_mask_matches_brute_force(ids):
    ids = np.array(ids, "int32")
    m = keras.ops.convert_to_numpy(segment_mask(ids))
    assert m.shape == (len(ids), 1, 6, 6)
    for b, row in enumerate(ids):
        assert m[b, 0].astype(int).tolist() == brute(
            6, 6, lambda i, j: row[i] == row[j]
        )


def test_masks_under_xla_with_tensor_arguments():
    @tf.function(jit_compile=True)
    def build(lengths, prefix, ids):
        return (
            padding_mask(lengths, max_length=4),
            prefix_lm_mask(4, prefix),
            segment_mask(ids),
            causal_mask(4, offset=1) & sliding_window_mask(4, window_size=2),
        )

    pad, prefix, seg, combined = build(
        tf.constant([1, 3]), tf.constant([0, 2]), tf.constant([[0, 1, 1, 2]] * 2)
    )
    assert as_int(pad[:, 0, 0]) == [[1, 0, 0, 0], [1, 1, 1, 0]]
    assert as_int(prefix[1, 0]) == as_int(prefix_lm_mask(4, 2))
    assert as_int(prefix[0, 0]) == as_int(causal_mask(4))
    assert as_int(seg[0, 0])[1] == [0, 1, 1, 0]
    assert as_int(combined) == [
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [0, 1, 1, 1],
        [0, 0, 1, 1],
    ]


# --------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: causal_mask(0), r"`query_length`.*Received: query_length=0"),
        (lambda: causal_mask(-2), r"`query_length`.*Received: query_length=-2"),
        (lambda: causal_mask(2.0), r"`query_length`.*Received: query_length=2\.0"),
        (lambda: causal_mask(True), r"`query_length`.*Received: query_length=True"),
        (lambda: causal_mask(3, 0), r"`key_length`.*Received: key_length=0"),
        (
            lambda: sliding_window_mask(3, window_size=0),
            r"`window_size`.*Received: window_size=0",
        ),
        (
            lambda: sliding_window_mask(3, window_size=-1, causal=True),
            r"`window_size`.*Received: window_size=-1",
        ),
        (
            lambda: sliding_window_mask(3, window_size=1.5),
            r"`window_size`.*Received: window_size=1\.5",
        ),
        (
            lambda: sliding_window_mask(0, window_size=2),
            r"`query_length`.*Received: query_length=0",
        ),
        (
            lambda: padding_mask(np.array([1, 2], "int32")),
            r"`max_length` is required.*Received: max_length=None",
        ),
        (
            lambda: padding_mask(np.array([1, 2], "int32"), max_length=0),
            r"`max_length`.*Received: max_length=0",
        ),
        (
            lambda: padding_mask(np.array([1.0, 2.0], "float32"), max_length=3),
            r"lengths must be an integer tensor.*float32",
        ),
        (
            lambda: padding_mask(np.array([True, False]), max_length=3),
            r"lengths must be an integer tensor.*bool",
        ),
        (
            lambda: padding_mask(np.ones((2, 3, 4), "int32")),
            r"lengths of shape \(batch,\) or a mask.*Received shape=\(2, 3, 4\)",
        ),
        (
            lambda: padding_mask(np.int32(3), max_length=4),
            r"lengths of shape \(batch,\) or a mask.*Received shape=\(\)",
        ),
        (
            lambda: padding_mask(np.ones((2, 3), bool), max_length=4),
            r"`max_length`.*Received: mask shape=\(2, 3\), max_length=4",
        ),
        (
            lambda: segment_mask(np.array([0, 1], "int32")),
            r"`query_segment_ids`.*Received shape=\(2,\)",
        ),
        (
            lambda: segment_mask(
                np.zeros((1, 3), "int32"), np.zeros((1, 1, 3), "int32")
            ),
            r"`key_segment_ids`.*Received shape=\(1, 1, 3\)",
        ),
        (
            lambda: prefix_lm_mask(3, -1),
            r"`prefix_length` must be >= 0.*Received: prefix_length=-1",
        ),
        (
            lambda: prefix_lm_mask(3, np.array([[1, 2]], "int32")),
            r"`prefix_length`.*Received: shape=\(1, 2\)",
        ),
        (
            lambda: prefix_lm_mask(3, np.array([1.0], "float32")),
            r"`prefix_length`.*dtype=.*float32",
        ),
        (lambda: prefix_lm_mask(0, 1), r"`query_length`.*Received: query_length=0"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_public_names():
    assert sorted(masks.__all__) == [
        "causal_mask",
        "padding_mask",
        "prefix_lm_mask",
        "segment_mask",
        "sliding_window_mask",
    ]
