"""Tests for `keras_attention.ops.sequence_parallel`.

Expected numbers come from a float64 NumPy softmax attention over the whole
key sequence (written out below); the shards' partials, merged, must equal
it. Masks include fully masked query rows and shards in which a query sees
nothing.
"""


import keras
import numpy as np
import pytest

from keras_attention.ops import dot_product_attention
from keras_attention.ops import sequence_parallel as sp


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def reference(q, k, v, allowed, scale=None):
    """Full softmax attention in float64; rows seeing nothing give zeros.

    q `(b, tq, h, d)`, k `(b, tk, kv, d)`, v `(b, tk, kv, dv)`; query head
    `i` reads key/value head `i // (h // kv)`; `allowed` broadcasts to
    `(b, h, tq, tk)`. Returns the output and the log-sum-exp `(b, tq, h)`
    (`-inf` where nothing is seen).
    """
    q, k, v = (np.asarray(t, "float64") for t in (q, k, v))
    h, kv = q.shape[2], k.shape[2]
    k = np.repeat(k, h // kv, axis=2)
    v = np.repeat(v, h // kv, axis=2)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    z = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    allowed = np.broadcast_to(allowed, z.shape)
    z = np.where(allowed, z, -np.inf)
    top = z.max(-1, keepdims=True, initial=-np.inf)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.where(allowed, np.exp(z - top), 0.0)
    total = e.sum(-1, keepdims=True)
    w = e / np.where(total > 0, total, 1.0)
    out = np.einsum("bhqk,bkhd->bqhd", w, v)
    with np.errstate(divide="ignore"):
        lse = (top + np.log(total))[..., 0]
    return out, lse.transpose(0, 2, 1)


def problem(rng, b=2, tq=6, tk=11, h=4, kv=2, d=8, dv=5):
    q = rng.standard_normal((b, tq, h, d)).astype("float32")
    k = rng.standard_normal((b, tk, kv, d)).astype("float32")
    v = rng.standard_normal((b, tk, kv, dv)).astype("float32")
    return q, k, v


def hard_mask(rng, b, h, tq, tk):
    """Random mask with a fully masked row and a key block hidden from a row."""
    mask = rng.random((b, h, tq, tk)) < 0.6
    mask[0, :, 1, :] = False  # query 1 of example 0 sees nothing
    mask[1, :, 2, : tk // 2] = False  # query 2 sees nothing in early shards
    mask[1, :, 3, tk // 2 :] = False  # query 3 sees nothing in late shards
    return mask


def causal(tq, tk):
    return np.arange(tk)[None, :] <= np.arange(tq)[:, None]


def split(tk, num_shards):
    shard = -(-tk // num_shards)
    return [(s * shard, min(tk, (s + 1) * shard)) for s in range(num_shards)]


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("masking", ["none", "mask", "causal", "both"])
def test_merged_partials_equal_full_attention(num_shards, masking):
    rng = np.random.default_rng(num_shards)
    q, k, v = problem(rng)
    b, tq, h, _ = q.shape
    tk = k.shape[1]
    mask = hard_mask(rng, b, h, tq, tk) if masking in ("mask", "both") else None
    is_causal = masking in ("causal", "both")
    allowed = np.ones((b, h, tq, tk), bool)
    if mask is not None:
        allowed &= mask
    if is_causal:
        allowed &= causal(tq, tk)
    want, want_lse = reference(q, k, v, allowed)

    outputs, lses = [], []
    for start, stop in split(tk, num_shards):
        out, lse = sp.partial_attention(
            q,
            k[:, start:stop],
            v[:, start:stop],
            mask=None if mask is None else mask[..., start:stop],
            is_causal=is_causal,
            key_offset=start,
        )
        # Each partial is the attention over its own keys.
        part, part_lse = reference(
            q, k[:, start:stop], v[:, start:stop], allowed[..., start:stop]
        )
        np.testing.assert_allclose(to_np(out), part, atol=1e-5)
        seen = np.isfinite(part_lse)
        np.testing.assert_allclose(to_np(lse)[seen], part_lse[seen], atol=1e-4)
        assert (to_np(lse)[~seen] == sp.NEG).all()
        outputs.append(out)
        lses.append(lse)

    got, got_lse = sp.merge_partials(outputs, lses, return_lse=True)
    got = to_np(got)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=1e-5)
    seen = np.isfinite(want_lse)
    np.testing.assert_allclose(to_np(got_lse)[seen], want_lse[seen], atol=1e-4)
    assert (to_np(got_lse)[~seen] == sp.NEG).all()
    if mask is not None:
        assert not seen[0, 1].any()
        np.testing.assert_array_equal(got[0, 1], 0.0)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4, 5, 13])
@pytest.mark.parametrize("is_causal", [False, True])
def test_sequence_parallel_attention_pads_the_last_shard(num_shards, is_causal):
    # 11 keys never split evenly except in 1 shard; 13 shards > 11 keys
    # leaves shards holding padding only.
    rng = np.random.default_rng(7)
    q, k, v = problem(rng)
    b, tq, h, _ = q.shape
    mask = hard_mask(rng, b, 1, tq, k.shape[1])
    got = sp.sequence_parallel_attention(
        q, k, v, num_shards=num_shards, mask=mask, is_causal=is_causal
    )
    allowed = mask & (causal(tq, k.shape[1]) if is_causal else True)
    want, _ = reference(q, k, v, allowed)
    np.testing.assert_allclose(to_np(got), want, atol=1e-5)


def test_padding_mask_of_rank_4_broadcast_heads_and_queries():
    rng = np.random.default_rng(3)
    q, k, v = problem(rng, tk=9)
    pad = np.ones((2, 1, 1, 9), bool)
    pad[0, ..., 5:] = False
    got = sp.sequence_parallel_attention(q, k, v, num_shards=4, mask=pad)
    want, _ = reference(q, k, v, pad)
    np.testing.assert_allclose(to_np(got), want, atol=1e-5)


def test_custom_scale_and_cross_lengths():
    rng = np.random.default_rng(4)
    q, k, v = problem(rng, tq=3, tk=8, h=2, kv=1)
    got = sp.sequence_parallel_attention(
        q, k, v, num_shards=3, scale=0.3, is_causal=True
    )
    want, _ = reference(q, k, v, causal(3, 8), scale=0.3)
    np.testing.assert_allclose(to_np(got), want, atol=1e-5)


def test_merge_is_associative():
    rng = np.random.default_rng(5)
    q, k, v = problem(rng, tk=12)
    parts = [
        sp.partial_attention(q, k[:, i : i + 3], v[:, i : i + 3], key_offset=i)
        for i in range(0, 12, 3)
    ]
    outs, lses = [p[0] for p in parts], [p[1] for p in parts]
    left = sp.merge_partials(outs[:2], lses[:2], return_lse=True)
    right = sp.merge_partials(outs[2:], lses[2:], return_lse=True)
    tree = sp.merge_partials([left[0], right[0]], [left[1], right[1]])
    flat = sp.merge_partials(outs, lses)
    np.testing.assert_allclose(to_np(tree), to_np(flat), atol=1e-6)


def test_all_sentinel_rows_merge_to_zero_not_nan():
    outs = [np.zeros((1, 2, 1, 3), "float32")] * 3
    lses = [np.full((1, 2, 1), sp.NEG, "float32")] * 3
    out, lse = sp.merge_partials(outs, lses, return_lse=True)
    np.testing.assert_array_equal(to_np(out), 0.0)
    np.testing.assert_array_equal(to_np(lse), sp.NEG)


def test_gradients_equal_the_exact_core():
    import tensorflow as tf

    rng = np.random.default_rng(6)
    q, k, v = (tf.constant(t) for t in problem(rng))
    mask = tf.constant(hard_mask(rng, 2, 4, 6, 11))
    upstream = tf.constant(rng.standard_normal((2, 6, 4, 5)).astype("float32"))

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            loss = tf.reduce_sum(fn() * upstream)
        return tape.gradient(loss, [q, k, v])

    want = grads(
        lambda: dot_product_attention(
            q, k, v, mask=mask, is_causal=True, implementation="exact"
        )
    )
    got = grads(
        lambda: sp.sequence_parallel_attention(
            q, k, v, num_shards=4, mask=mask, is_causal=True
        )
    )
    for g, w in zip(got, want):
        assert np.isfinite(to_np(g)).all()
        np.testing.assert_allclose(to_np(g), to_np(w), atol=1e-5)


def test_placement_scopes_every_shard():
    entered = []

    class Scope:
        def __init__(self, s):
            self.s = s

        def __enter__(self):
            entered.append(self.s)

        def __exit__(self, *args):
            return False

    rng = np.random.default_rng(8)
    q, k, v = problem(rng)
    sp.sequence_parallel_attention(q, k, v, num_shards=3, placement=Scope)
    assert entered == [0, 1, 2]


def test_bad_arguments():
    q, k, v = problem(np.random.default_rng(9))
    with pytest.raises(ValueError, match=r"`num_shards` must be a positive int"):
        sp.sequence_parallel_attention(q, k, v, num_shards=0)
    with pytest.raises(ValueError, match=r"`key` must have rank 4"):
        sp.partial_attention(q, k[0], v)
    with pytest.raises(ValueError, match=r"`key` must have a static number"):
        sp.partial_attention(q[:, :, :3], k, v)
    with pytest.raises(ValueError, match=r"as long as `lses`"):
        sp.merge_partials([v], [])


