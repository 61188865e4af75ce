"""Tests for `keras_attention.ops.linear` (feature maps, linear attention).

Expected numbers come from `linear_reference.py`: the quadratic form
`phi(Q) phi(K)^T`, masked, row-normalised, times V, in float64 NumPy, with
no chunking, prefix sums or stabilisers. Gradients are checked against
central finite differences of that reference.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import linear_reference as lin

from keras_attention.ops import linear as L

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_rng():
    global RNG
    RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (scale * RNG.standard_normal(shape)).astype("float32")


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def projection(num_features, dim, seed=3):
    return to_np(L.orthogonal_random_features(num_features, dim, seed=seed))


def inputs(b=2, tq=9, tk=9, heads=4, kv_heads=2, d=8, dv=5, scale=1.0):
    return (
        normal(b, tq, heads, d, scale=scale),
        normal(b, tk, kv_heads, d, scale=scale),
        normal(b, tk, kv_heads, dv),
    )


def padding(b, tk):
    mask = np.ones((b, tk), bool)
    mask[-1, tk - 3 :] = False  # the last example has 3 padded keys
    return mask


# --------------------------------------------------------------------------
# against the quadratic form
# --------------------------------------------------------------------------
SHAPES = {
    # name: (Tq, Tk, heads, kv_heads)
    "self": (9, 9, 4, 4),
    "gqa": (9, 9, 4, 2),
    "mqa_cross_longer_keys": (6, 11, 4, 1),
    "gqa_cross_longer_queries": (11, 6, 4, 2),
}


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("kind", L.FEATURE_MAPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_quadratic_form(shape, kind, is_causal):
    tq, tk, heads, kv_heads = SHAPES[shape]
    q, k, v = inputs(tq=tq, tk=tk, heads=heads, kv_heads=kv_heads)
    w = projection(16, 8) if kind == "favor" else None
    key_mask = padding(2, tk)
    # chunk_size=4: several chunks, the last one padded.
    out, weights = L.linear_attention(
        q,
        k,
        v,
        feature_map=kind,
        projection=w,
        key_mask=key_mask,
        is_causal=is_causal,
        chunk_size=4,
        return_scores=True,
    )
    want, want_weights = lin.linear_attention(
        q,
        k,
        v,
        kind,
        w,
        allowed=key_mask[:, None, None, :],
        is_causal=is_causal,
    )
    assert tuple(out.shape) == (2, tq, heads, 5)
    assert tuple(weights.shape) == (2, heads, tq, tk)
    np.testing.assert_allclose(to_np(out), want, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(to_np(weights), want_weights, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 500])
def test_causal_result_does_not_depend_on_chunk_size(chunk_size):
    q, k, v = inputs(tq=17, tk=17)
    want, _ = lin.linear_attention(q, k, v, "elu", is_causal=True)
    out = L.linear_attention(q, k, v, is_causal=True, chunk_size=chunk_size)
    np.testing.assert_allclose(to_np(out), want, atol=1e-5, rtol=1e-4)


def test_favor_approximates_softmax_attention():
    # With many random features the FAVOR+ kernel estimates
    # exp(q . k / sqrt(d)), so the output approaches softmax attention.
    q, k, v = inputs(b=1, tq=6, tk=6, heads=1, kv_heads=1, d=4, scale=0.5)
    w = projection(8192, 4, seed=0)
    out = to_np(L.linear_attention(q, k, v, feature_map="favor", projection=w))
    q64, k64, v64 = (np.asarray(t, "float64")[:, :, 0] for t in (q, k, v))
    logits = np.einsum("bqd,bkd->bqk", q64, k64) / 2.0
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    softmax = np.einsum("bqk,bkd->bqd", p, v64)
    np.testing.assert_allclose(out[:, :, 0], softmax, atol=0.05)


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_favor_is_stable_where_plain_exponentials_are_not(is_causal):
    # |x'|^2 / 2 is about 400: exp(-400) underflows float32 (the plain
    # features would all be 0, giving 0 / 0) but not float64. The
    # stabilised features, and epsilon scaled with them, give the
    # reference's result.
    q, k, v = inputs(b=1, tq=7, tk=7, heads=2, kv_heads=1, d=64, scale=10.0)
    w = projection(64, 64)
    key_mask = np.array([[True] * 5 + [False] * 2])
    out = L.linear_attention(
        q,
        k,
        v,
        feature_map="favor",
        projection=w,
        key_mask=key_mask,
        is_causal=is_causal,
        chunk_size=3,
    )
    want, _ = lin.linear_attention(
        q,
        k,
        v,
        "favor",
        w,
        allowed=key_mask[:, None, None],
        is_causal=is_causal,
    )
    assert np.isfinite(to_np(out)).all()
    np.testing.assert_allclose(to_np(out), want, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("kind", L.FEATURE_MAPS)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_rows_with_no_visible_key_are_zeros(kind, is_causal):
    q, k, v = inputs(b=2, tq=5, tk=5)
    w = projection(16, 8) if kind == "favor" else None
    key_mask = np.ones((2, 5), bool)
    key_mask[0] = False  # example 0: no key at all
    key_mask[1, 0] = False  # example 1: causal query 0 sees nothing
    q, k, v = (tf.constant(t) for t in (q, k, v))
    with tf.GradientTape() as tape:
        tape.watch([q, k, v])
        out, weights = L.linear_attention(
            q,
            k,
            v,
            feature_map=kind,
            projection=w,
            key_mask=key_mask,
            is_causal=is_causal,
            chunk_size=2,
            return_scores=True,
        )
        loss = tf.reduce_sum(out * out)
    grads = tape.gradient(loss, [q, k, v])
    out, weights = to_np(out), to_np(weights)
    assert all(np.isfinite(to_np(g)).all() for g in grads)
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(weights[0], 0.0)
    if is_causal:
        np.testing.assert_array_equal(out[1, 0], 0.0)
    np.testing.assert_array_equal(weights[1, :, :, 0], 0.0)


# --------------------------------------------------------------------------
# gradients: the hand-written backward pass of the causal form
# --------------------------------------------------------------------------
def _numeric_gradients(fn, arrays, step=1e-6):
    grads = []
    for index, array in enumerate(arrays):
        grad = np.zeros_like(array)
        for position in np.ndindex(array.shape):
            shifted = [a.copy() for a in arrays]
            shifted[index][position] += step
            up = fn(*shifted)
            shifted[index][position] -= 2 * step
            grad[position] = (up - fn(*shifted)) / (2 * step)
        grads.append(grad)
    return grads


@pytest.mark.parametrize(
    "kind, is_causal",
    [("elu", True), ("relu", True), ("favor", True), ("favor", False)],
)
def test_gradients_match_finite_differences(kind, is_causal):
    q, k, v = inputs(b=1, tq=7, tk=7, heads=2, kv_heads=1, d=3, dv=2)
    w = projection(6, 3) if kind == "favor" else None
    key_mask = np.array([[True] * 6 + [False]])
    cotangent = normal(1, 7, 2, 2).astype("float64")

    def loss(q, k, v):
        out, _ = lin.linear_attention(
            q,
            k,
            v,
            kind,
            w,
            allowed=key_mask[:, None, None],
            is_causal=is_causal,
        )
        return np.sum(out * cotangent)

    arrays = [np.asarray(t, "float64") for t in (q, k, v)]
    want = _numeric_gradients(loss, arrays)
    tensors = [tf.constant(t) for t in (q, k, v)]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        out = L.linear_attention(
            *tensors,
            feature_map=kind,
            projection=w,
            key_mask=key_mask,
            is_causal=is_causal,
            chunk_size=3,
        )
        total = tf.reduce_sum(out * tf.cast(cotangent, "float32"))
    got = tape.gradient(total, tensors)
    for g, expected in zip(got, want):
        assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(to_np(g), expected, atol=2e-4, rtol=2e-3)


def test_compiled_matches_eager_forward_and_backward():
    q, k, v = (tf.constant(t) for t in inputs(b=2, tq=21, tk=21))
    key_mask = tf.constant(padding(2, 21))

    def step(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = L.linear_attention(
                q, k, v, key_mask=key_mask, is_causal=True, chunk_size=8
            )
            loss = tf.reduce_sum(tf.sin(out))
        return [out] + tape.gradient(loss, [q, k, v])

    eager = step(q, k, v)
    compiled = tf.function(step, jit_compile=True)(q, k, v)
    for e, c in zip(eager, compiled):
        np.testing.assert_allclose(to_np(c), to_np(e), atol=1e-5, rtol=1e-5)


def test_dynamic_lengths_in_a_graph():
    # Exported models see `None` batch and sequence lengths.
    q, k, v = inputs(b=2, tq=10, tk=10)
    cotangent = normal(2, 10, 4, 5)
    specs = [
        tf.TensorSpec((None, None) + t.shape[2:], "float32") for t in (q, k, v)
    ]

    def step(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = L.linear_attention(q, k, v, is_causal=True, chunk_size=4)
            loss = tf.reduce_sum(out * cotangent)
        return [out] + tape.gradient(loss, [q, k, v])

    got = tf.function(step, input_signature=specs)(q, k, v)
    want = step(*(tf.constant(t) for t in (q, k, v)))  # static shapes
    reference, _ = lin.linear_attention(q, k, v, "elu", is_causal=True)
    np.testing.assert_allclose(to_np(got[0]), reference, atol=1e-5, rtol=1e-4)
    for g, w in zip(got, want):
        np.testing.assert_allclose(to_np(g), to_np(w), atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------
# efficiency: no tensor of the compiled program grows as T^2
# --------------------------------------------------------------------------
def _largest_hlo_tensor(fn, *args):
    """Elements of the largest f32 array in `fn`'s XLA program (HLO)."""
    hlo = tf.function(fn, jit_compile=True).experimental_get_compiler_ir(
        *args
    )(stage="hlo")
    sizes = [
        int(np.prod([int(n) for n in dims.split(",") if n] or [1]))
        for dims in re.findall(r"f32\[([\d,]*)\]", hlo)
    ]
    return max(sizes)


def test_compiled_program_has_no_quadratic_tensor():
    # Forward + backward at T = 4096, 4 heads of 64: a score matrix would
    # hold 4 * 4096^2 = 67M elements. Linear attention's largest arrays are
    # the (T/c) chunk states and (T, heads, c) chunk scores: ~1M elements.
    t, heads, d = 4096, 4, 64
    q, k, v = (tf.zeros((1, t, heads, d)) for _ in range(3))
    w = L.orthogonal_random_features(128, d, seed=0)

    def fwd_bwd(is_causal, kind, proj):
        def fn(q, k, v):
            with tf.GradientTape() as tape:
                tape.watch([q, k, v])
                out = L.linear_attention(
                    q, k, v, feature_map=kind, projection=proj,
                    is_causal=is_causal,
                )
                loss = tf.reduce_sum(out)
            return tape.gradient(loss, [q, k, v])

        return fn

    for is_causal in (False, True):
        for kind, proj in (("elu", None), ("favor", w)):
            step = fwd_bwd(is_causal, kind, proj)
            largest = _largest_hlo_tensor(step, q, k, v)
            assert largest <= 4 * t * 128 * 2, (is_causal, kind, largest)
    # The checker sees the score matrix of exact attention.
    from keras_attention.ops import dot_product_attention

    largest = _largest_hlo_tensor(
        lambda q, k, v: dot_product_attention(q, k, v, implementation="exact"),
        q,
        k,
        v,
    )
    assert largest >= heads * t * t


# --------------------------------------------------------------------------
# half precision
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, atol", [("float16", 5e-3), ("bfloat16", 5e-2)])
@pytest.mark.parametrize("kind", L.FEATURE_MAPS)
def test_half_precision_is_computed_in_float32(dtype, atol, kind):
    # The FAVOR+ logits of these inputs span about [-54, 3]: in float16
    # (smallest subnormal 6e-8 = exp(-16.6)) most features would vanish;
    # computed in float32 the only error left is the inputs' rounding.
    q, k, v = inputs(b=2, tq=9, tk=9, d=16, scale=3.0)
    w = projection(32, 16) if kind == "favor" else None
    key_mask = padding(2, 9)
    kwargs = dict(
        feature_map=kind, projection=w, key_mask=key_mask, chunk_size=4
    )
    for is_causal in (False, True):
        want = to_np(L.linear_attention(q, k, v, is_causal=is_causal, **kwargs))
        half = [keras.ops.cast(t, dtype) for t in (q, k, v)]
        got = L.linear_attention(*half, is_causal=is_causal, **kwargs)
        assert keras.backend.standardize_dtype(got.dtype) == dtype
        got = to_np(got)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, atol=atol, rtol=atol)


# --------------------------------------------------------------------------
# random features
# --------------------------------------------------------------------------
def test_orthogonal_random_features():
    w = projection(20, 8, seed=5)
    assert w.shape == (20, 8)
    for block in (w[:8], w[8:16], w[16:]):
        gram = block @ block.T
        off_diagonal = gram - np.diag(np.diag(gram))
        np.testing.assert_allclose(off_diagonal, 0.0, atol=1e-4)
    # Rows are scaled by chi(8) norms: spread around sqrt(8).
    norms = np.linalg.norm(w, axis=1)
    assert 1.0 < norms.mean() < 4.5 and norms.std() > 0.1
    np.testing.assert_array_equal(projection(20, 8, seed=5), w)
    assert np.abs(projection(20, 8, seed=6) - w).max() > 0.1
    generator = keras.random.SeedGenerator(1)
    first = to_np(L.orthogonal_random_features(20, 8, seed=generator))
    second = to_np(L.orthogonal_random_features(20, 8, seed=generator))
    assert np.abs(first - second).max() > 0.1


def test_apply_feature_map():
    x = normal(2, 5, 3, 4)
    np.testing.assert_allclose(
        to_np(L.apply_feature_map(x, "elu")),
        lin.feature_map(x, "elu"),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        to_np(L.apply_feature_map(x, "relu")), lin.feature_map(x, "relu")
    )
    # FAVOR+ keys: stabilised by one factor per (batch, head), which the
    # masked positions (zeroed) don't influence.
    w = projection(6, 4)
    mask = np.array([[True] * 5, [True] * 3 + [False] * 2])
    got = to_np(
        L.apply_feature_map(x, "favor", w, is_query=False, key_mask=mask)
    )
    want = lin.feature_map(x, "favor", w)
    np.testing.assert_array_equal(got[1, 3:], 0.0)
    for b, length in ((0, 5), (1, 3)):
        ratio = got[b, :length] / want[b, :length]
        np.testing.assert_allclose(
            ratio, np.broadcast_to(ratio[:1, :, :1], ratio.shape), rtol=1e-4
        )
    # Queries: one factor per query, and the largest feature is 1/sqrt(m).
    got = to_np(L.apply_feature_map(x, "favor", w, is_query=True))
    np.testing.assert_allclose(got.max(-1), 1 / np.sqrt(6), rtol=1e-6)


# --------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------
def test_bad_arguments():
    q, k, v = inputs()
    bad = [
        (
            dict(feature_map="softmax"),
            r"`linear_attention`: `feature_map` must be one of "
            r"\('elu', 'relu', 'favor'\).*'softmax'",
        ),
        (
            dict(feature_map="favor"),
            r"`linear_attention`: `projection` is required with "
            r"feature_map='favor'",
        ),
        (
            dict(feature_map="favor", projection=np.zeros((4, 5), "float32")),
            r"`projection` must have shape \(num_features, head_dim=8\).*"
            r"\(4, 5\)",
        ),
        (dict(chunk_size=0), r"`chunk_size` must be a positive int.*0"),
        (dict(epsilon=-1.0), r"`epsilon` must be a number >= 0.*-1.0"),
        (
            dict(key_mask=np.ones((2, 1, 9), bool)),
            r"`key_mask` must be a boolean \(batch, Tk\).*\(2, 1, 9\)",
        ),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            L.linear_attention(q, k, v, **kwargs)
    with pytest.raises(ValueError, match=r"`query` must have rank 4.*\(2, 9, 8\)"):
        L.linear_attention(q[:, :, 0], k, v)
    with pytest.raises(ValueError, match=r"`key` must have the query's head_dim"):
        L.linear_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match=r"`key` must have a static number of heads"):
        L.linear_attention(q, normal(2, 9, 3, 8), normal(2, 9, 3, 5))
    with pytest.raises(ValueError, match=r"`value` must have the key's positions"):
        L.linear_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match=r"`apply_feature_map`: `kind`"):
        L.apply_feature_map(q, "tanh")
