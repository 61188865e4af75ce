"""Tests for keras_attention.ops.positions against independent NumPy references."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention import ops as ka_ops

# --------------------------------------------------------------------------
# NumPy references, written from the papers' formulas rather than from the
# implementation (element-wise loops, complex numbers, published constants).
# --------------------------------------------------------------------------


def ref_sinusoidal(length, dim, max_wavelength=10000.0, start=0):
    # Vaswani et al. 3.5: PE(p, 2k) = sin(p / w^(2k/d)), PE(p, 2k+1) = cos(...)
    table = np.zeros((length, dim), dtype="float64")
    for row in range(length):
        p = row + start
        for i in range(dim):
            k = i // 2
            angle = p / max_wavelength ** (2 * k / dim)
            table[row, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return table


def ref_rope(x, positions=None, max_wavelength=10000.0, scaling_factor=1.0):
    # Rotate-half RoPE written as complex multiplication: channel k (first
    # half) is the real part and channel k + d/2 the imaginary part of one
    # complex number, which is multiplied by exp(i * theta_k * position).
    x = np.asarray(x, dtype="float64")
    batch, seq, heads, dim = x.shape
    half = dim // 2
    if positions is None:
        positions = np.arange(seq)
    positions = np.asarray(positions, dtype="float64")
    positions = np.broadcast_to(positions, (batch, seq)) / scaling_factor
    theta = max_wavelength ** (-2.0 * np.arange(half) / dim)
    rotor = np.exp(1j * positions[:, :, None, None] * theta)  # (b, s, 1, h)
    z = (x[..., :half] + 1j * x[..., half:]) * rotor
    return np.concatenate([z.real, z.imag], axis=-1)


def ref_rope_pairs(x, positions, max_wavelength=10000.0):
    # The same rotation with explicit 2x2 rotation matrices, pair by pair.
    x = np.asarray(x, dtype="float64")
    out = np.empty_like(x)
    _, seq, _, dim = x.shape
    half = dim // 2
    for s in range(seq):
        for k in range(half):
            angle = positions[s] / max_wavelength ** (2 * k / dim)
            rot = np.array(
                [
                    [math.cos(angle), -math.sin(angle)],
                    [math.sin(angle), math.cos(angle)],
                ]
            )
            pair = np.stack([x[:, s, :, k], x[:, s, :, k + half]], axis=-1)
            rotated = pair @ rot.T
            out[:, s, :, k] = rotated[..., 0]
            out[:, s, :, k + half] = rotated[..., 1]
    return out


def ref_alibi_bias(query_length, key_length, slopes):
    slopes = np.asarray(slopes, dtype="float64")
    bias = np.zeros((1, len(slopes), query_length, key_length))
    for h, m in enumerate(slopes):
        for i in range(query_length):
            for j in range(key_length):
                bias[0, h, i, j] = -m * abs(i - j)
    return bias


def to_np(x):
    return keras.ops.convert_to_numpy(keras.ops.cast(x, "float32"))


def dtype_of(x):
    return keras.backend.standardize_dtype(x.dtype)


# --------------------------------------------------------------------------
# sinusoidal_positions
# --------------------------------------------------------------------------


class TestSinusoidalPositions:
    @pytest.mark.parametrize(
        "length, dim, max_wavelength, start",
        [(1, 2, 10000.0, 0), (7, 16, 10000.0, 0), (5, 8, 100.0, 3), (9, 6, 1e4, 250)],
    )
    def test_values_match_reference(self, length, dim, max_wavelength, start):
        out = ka_ops.sinusoidal_positions(
            length, dim, max_wavelength=max_wavelength, start=start
        )
        assert tuple(out.shape) == (length, dim)
        assert dtype_of(out) == "float32"
        np.testing.assert_allclose(
            to_np(out),
            ref_sinusoidal(length, dim, max_wavelength, start),
            # float32 angles: the error grows with the position.
            atol=1e-6 if start < 10 else 1e-5,
        )

    def test_known_values(self):
        out = to_np(ka_ops.sinusoidal_positions(2, 4, max_wavelength=100.0))
        # Row 0: sin 0, cos 0, sin 0, cos 0. Row 1 (p = 1): frequencies 1 and
        # 100 ** (-2/4) = 0.1.
        np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0, 1.0], atol=1e-7)
        np.testing.assert_allclose(
            out[1],
            [math.sin(1.0), math.cos(1.0), math.sin(0.1), math.cos(0.1)],
            atol=1e-6,
        )

    def test_start_equals_slice_of_longer_table(self):
        full = to_np(ka_ops.sinusoidal_positions(12, 8))
        tail = to_np(ka_ops.sinusoidal_positions(4, 8, start=8))
        np.testing.assert_allclose(tail, full[8:], atol=1e-6)

    @pytest.mark.parametrize(
        "dtype, atol", [("float16", 1e-3), ("bfloat16", 8e-3), ("float64", 1e-5)]
    )
    def test_dtypes(self, dtype, atol):
        # Computed in float32 and cast, so float64 is only float32-accurate.
        out = ka_ops.sinusoidal_positions(20, 12, start=500, dtype=dtype)
        assert dtype_of(out) == dtype
        np.testing.assert_allclose(
            to_np(out), ref_sinusoidal(20, 12, start=500), atol=atol
        )

    def test_jit_equals_eager_with_tensor_length_and_start(self):
        @tf.function(jit_compile=True)
        def table(x, start):
            return ka_ops.sinusoidal_positions(
                tf.shape(x)[0], 10, start=start
            )

        x = tf.zeros((6,))
        compiled = table(x, tf.constant(3))
        eager = ka_ops.sinusoidal_positions(6, 10, start=3)
        np.testing.assert_allclose(to_np(compiled), to_np(eager), atol=1e-6)

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"length": 4, "dim": 5}, "`dim` must be even.*dim=5"),
            ({"length": 4, "dim": 0}, "`dim` must be an integer >= 1.*dim=0"),
            ({"length": 4, "dim": 4.0}, "`dim` must be an integer.*dim=4.0"),
            ({"length": -1, "dim": 4}, "`length` must be an integer >= 0.*length=-1"),
            ({"length": None, "dim": 4}, "`length` must be an integer.*length=None"),
            (
                {"length": 4, "dim": 4, "start": 1.5},
                "`start` must be an integer or scalar tensor.*start=1.5",
            ),
            (
                {"length": 4, "dim": 4, "start": np.array([1, 2])},
                r"`start` must be a scalar, got a tensor of shape \(2,\)",
            ),
            (
                {"length": 4, "dim": 4, "max_wavelength": 0},
                "`max_wavelength` must be a positive.*max_wavelength=0",
            ),
            (
                {"length": 4, "dim": 4, "dtype": "int32"},
                "`dtype` must be a floating point dtype.*dtype='int32'",
            ),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            ka_ops.sinusoidal_positions(**kwargs)


# --------------------------------------------------------------------------
# apply_rotary_embedding
# --------------------------------------------------------------------------


@pytest.fixture
def qk():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 7, 3, 8)).astype("float32")


class TestRotaryEmbedding:
    def test_default_positions_match_complex_reference(self, qk):
        out = ka_ops.apply_rotary_embedding(qk)
        assert tuple(out.shape) == qk.shape
        assert dtype_of(out) == "float32"
        np.testing.assert_allclose(to_np(out), ref_rope(qk), atol=1e-5)

    def test_matches_explicit_rotation_pairs(self, qk):
        positions = np.array([0, 3, 4, 10, 11, 12, 40])
        out = ka_ops.apply_rotary_embedding(
            qk, positions, max_wavelength=500.0
        )
        np.testing.assert_allclose(
            to_np(out),
            ref_rope_pairs(qk, positions, max_wavelength=500.0),
            atol=1e-5,
        )

    def test_position_zero_is_identity_and_norm_is_kept(self, qk):
        out = to_np(ka_ops.apply_rotary_embedding(qk))
        np.testing.assert_allclose(out[:, 0], qk[:, 0], atol=1e-7)
        np.testing.assert_allclose(
            np.linalg.norm(out, axis=-1), np.linalg.norm(qk, axis=-1), rtol=1e-5
        )

    def test_per_example_positions_and_scaling(self, qk):
        positions = np.array([[0, 1, 2, 3, 4, 5, 6], [5, 6, 7, 8, 9, 10, 11]])
        out = ka_ops.apply_rotary_embedding(
            qk, positions, max_wavelength=1000.0, scaling_factor=4.0
        )
        np.testing.assert_allclose(
            to_np(out),
            ref_rope(qk, positions, max_wavelength=1000.0, scaling_factor=4.0),
            atol=1e-5,
        )

    def test_scores_depend_only_on_relative_position(self):
        rng = np.random.default_rng(1)
        q = rng.standard_normal((1, 1, 1, 16)).astype("float32")
        k = rng.standard_normal((1, 1, 1, 16)).astype("float32")

        def score(m, n):
            rq = to_np(ka_ops.apply_rotary_embedding(q, np.array([m])))
            rk = to_np(ka_ops.apply_rotary_embedding(k, np.array([n])))
            return float(np.sum(rq * rk))

        assert score(3, 1) == pytest.approx(score(12, 10), abs=1e-4)
        assert score(0, 5) == pytest.approx(score(20, 25), abs=1e-4)
        assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)

    @pytest.mark.parametrize("dtype, tol", [("float16", 2e-3), ("bfloat16", 2e-2)])
    def test_low_precision_dtypes(self, qk, dtype, tol):
        x = keras.ops.cast(qk * 3.0, dtype)
        positions = np.arange(1000, 1007)
        out = ka_ops.apply_rotary_embedding(x, positions)
        assert dtype_of(out) == dtype
        # The reference sees the already-rounded input, so the only error left
        # is the final rounding of the float32 result.
        expected = ref_rope(to_np(x)[..., :], positions)
        np.testing.assert_allclose(to_np(out), expected, atol=tol * 8, rtol=tol)

    def test_jit_equals_eager_with_dynamic_shapes(self, qk):
        @tf.function(
            jit_compile=True,
            input_signature=[
                tf.TensorSpec((None, None, 3, 8), "float32"),
                tf.TensorSpec((None, None), "int32"),
            ],
        )
        def rotate(x, positions):
            return ka_ops.apply_rotary_embedding(x, positions)

        positions = np.array([[2, 3, 4, 5, 6, 7, 8], [0, 0, 1, 2, 3, 4, 5]])
        compiled = rotate(qk, positions.astype("int32"))
        eager = ka_ops.apply_rotary_embedding(qk, positions)
        np.testing.assert_allclose(to_np(compiled), to_np(eager), atol=1e-6)
        np.testing.assert_allclose(
            to_np(compiled), ref_rope(qk, positions), atol=1e-5
        )

    @pytest.mark.parametrize(
        "shape, positions, kwargs, message",
        [
            ((2, 7, 8), None, {}, r"`x` must have rank 4.*x.shape=\(2, 7, 8\)"),
            (
                (2, 7, 3, 5),
                None,
                {},
                r"head_dim\) must be static and even.*\(2, 7, 3, 5\)",
            ),
            (
                (2, 7, 3, 8),
                np.zeros((2, 7, 1)),
                {},
                r"`positions` must have shape \(seq,\) or \(batch, seq\).*\(2, 7, 1\)",
            ),
            (
                (2, 7, 3, 8),
                np.arange(6),
                {},
                r"must match the sequence axis of `x` \(7\).*positions.shape=\(6,\)",
            ),
            (
                (2, 7, 3, 8),
                None,
                {"scaling_factor": 0.0},
                "`scaling_factor` must be a positive.*scaling_factor=0.0",
            ),
            (
                (2, 7, 3, 8),
                None,
                {"max_wavelength": -1},
                "`max_wavelength` must be a positive.*max_wavelength=-1",
            ),
        ],
    )
    def test_bad_arguments(self, shape, positions, kwargs, message):
        with pytest.raises(ValueError, match=message):
            ka_ops.apply_rotary_embedding(
                np.zeros(shape, "float32"), positions, **kwargs
            )


# --------------------------------------------------------------------------
# ALiBi
# --------------------------------------------------------------------------


class TestAlibi:
    def test_slopes_for_eight_heads_are_the_papers(self):
        slopes = ka_ops.alibi_slopes(8)
        assert dtype_of(slopes) == "float32"
        # Press et al., section 3: "for 8 heads, 1/2, 1/2^2, ..., 1/2^8".
        expected = [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]
        np.testing.assert_array_equal(to_np(slopes), np.float32(expected))

    def test_slopes_for_sixteen_heads(self):
        # "for 16 heads, 1/sqrt(2), 1/2, ..., 1/2^8" (ratio 1/sqrt(2)).
        expected = [2 ** (-(i + 1) / 2) for i in range(16)]
        np.testing.assert_allclose(to_np(ka_ops.alibi_slopes(16)), expected, rtol=1e-6)

    @pytest.mark.parametrize(
        "num_heads, expected",
        [
            (1, [2.0**-8]),
            # 6 = 4 + 2: the 4-head slopes, then every other 8-head slope.
            (6, [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]),
            # 12 = 8 + 4: the 8-head slopes, then every other 16-head slope.
            (
                12,
                [2.0 ** -(i + 1) for i in range(8)]
                + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5],
            ),
        ],
    )
    def test_slopes_for_other_head_counts(self, num_heads, expected):
        np.testing.assert_allclose(
            to_np(ka_ops.alibi_slopes(num_heads)), expected, rtol=1e-6
        )

    @pytest.mark.parametrize("query_length, key_length", [(5, 5), (3, 6), (6, 2)])
    def test_bias_values(self, query_length, key_length):
        slopes = ka_ops.alibi_slopes(4)
        bias = ka_ops.alibi_bias(query_length, key_length, slopes)
        assert tuple(bias.shape) == (1, 4, query_length, key_length)
        assert dtype_of(bias) == "float32"
        np.testing.assert_allclose(
            to_np(bias),
            ref_alibi_bias(query_length, key_length, [1 / 4, 1 / 16, 1 / 64, 1 / 256]),
            atol=1e-7,
        )

    def test_bias_accepts_list_slopes_and_low_precision_slopes(self):
        bias = ka_ops.alibi_bias(3, 3, keras.ops.cast([0.5, 0.25], "float16"))
        assert dtype_of(bias) == "float32"
        np.testing.assert_allclose(
            to_np(bias), ref_alibi_bias(3, 3, [0.5, 0.25]), atol=1e-7
        )

    def test_bias_jit_equals_eager(self):
        @tf.function(jit_compile=True)
        def bias(q, k):
            return ka_ops.alibi_bias(
                tf.shape(q)[0], tf.shape(k)[0], ka_ops.alibi_slopes(6)
            )

        compiled = bias(tf.zeros((4,)), tf.zeros((7,)))
        eager = ka_ops.alibi_bias(4, 7, ka_ops.alibi_slopes(6))
        np.testing.assert_array_equal(to_np(compiled), to_np(eager))

    @pytest.mark.parametrize(
        "num_heads, message",
        [
            (0, "`num_heads` must be an integer >= 1.*num_heads=0"),
            (2.5, "`num_heads` must be an integer >= 1.*num_heads=2.5"),
            ("8", "`num_heads` must be an integer >= 1.*num_heads='8'"),
        ],
    )
    def test_slopes_bad_arguments(self, num_heads, message):
        with pytest.raises(ValueError, match=message):
            ka_ops.alibi_slopes(num_heads)

    def test_bias_bad_arguments(self):
        with pytest.raises(ValueError, match="`query_length` must be.*query_length=-2"):
            ka_ops.alibi_bias(-2, 3, [0.5])
        with pytest.raises(
            ValueError, match=r"`slopes` must be a 1D tensor.*slopes.shape=\(2, 1\)"
        ):
            ka_ops.alibi_bias(2, 3, [[0.5], [0.25]])
