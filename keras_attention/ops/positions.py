"""Position encodings as pure functions: sinusoidal, rotary (RoPE) and ALiBi.

Everything here is written with `keras.ops` (plus NumPy for compile-time
constants), holds no weights, and works eagerly, inside `tf.function` and under
XLA (`jit_compile=True`). Trigonometry is always evaluated in float32, whatever
the requested or input dtype, because angles such as `position * frequency`
lose all precision in float16/bfloat16 beyond a few hundred positions.
"""

import keras
import numpy as np
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_float_dtype
from keras_attention.arguments import check_int
from keras_attention.arguments import check_int_or_scalar
from keras_attention.arguments import check_positive_float
from keras_attention.ops.as_written import as_written

__all__ = [
    "alibi_bias",
    "alibi_slopes",
    "apply_rotary_embedding",
    "sinusoidal_positions",
]


def _inverse_frequencies(num_frequencies, dim, max_wavelength):
    """`max_wavelength ** (-2k / dim)` for k in [0, num_frequencies), float32.

    Computed in float64 NumPy at trace time (it only depends on Python
    numbers), so it is a constant of the graph.
    """
    exponents = 2.0 * np.arange(num_frequencies, dtype="float64") / dim
    return (float(max_wavelength) ** -exponents).astype("float32")


# --------------------------------------------------------------------------
# Sinusoidal
# --------------------------------------------------------------------------


@as_written
def sinusoidal_positions(
    length, dim, *, max_wavelength=10000.0, start=0, dtype="float32"
):
    """Fixed sinusoidal position encodings (Vaswani et al., 2017).

    Channel pair `(2k, 2k + 1)` of position `p` holds

    ```
    table[p, 2k]     = sin(p / max_wavelength ** (2k / dim))
    table[p, 2k + 1] = cos(p / max_wavelength ** (2k / dim))
    ```

    i.e. sines on even channels and cosines on odd channels, *interleaved*
    (not "all sines then all cosines"). This is the layout of the original
    paper and of KerasHub's `SinePositionEncoding`, so tables are
    interchangeable with it. Positions run from `start` to
    `start + length - 1`, which lets a decoder with a cache encode only the new
    tokens. The table is computed in float32 and cast to `dtype` at the end.

    Args:
        length: int or scalar int tensor, the number of positions (rows).
        dim: int, the encoding size (columns). Must be even and static.
        max_wavelength: positive float, the longest wavelength
            (`2 * pi * max_wavelength` positions) used by the lowest-frequency
            channel pair. Defaults to `10000.0`, as in the paper.
        start: int or scalar int tensor, the position of the first row.
            Defaults to `0`.
        dtype: floating point dtype of the result. Defaults to `"float32"`.

    Returns:
        A tensor of shape `(length, dim)` and dtype `dtype`.

    Example:

    >>> table = sinusoidal_positions(4, 6)
    >>> tuple(table.shape)
    (4, 6)
    >>> # Row 0 is [sin 0, cos 0, ...] = [0, 1, 0, 1, 0, 1].

    Reference:
        - [Vaswani et al., 2017, "Attention Is All You Need", section 3.5](
          https://arxiv.org/abs/1706.03762)
    """
    check_int_or_scalar("sinusoidal_positions", "length", length, 0)
    check_int("sinusoidal_positions", "dim", dim, 1)
    if dim % 2:
        raise argument_error(
            "sinusoidal_positions",
            "dim",
            "must be even (sine and cosine channels come in pairs)",
            f"dim={dim}",
        )
    check_positive_float("sinusoidal_positions", "max_wavelength", max_wavelength)
    check_int_or_scalar("sinusoidal_positions", "start", start)
    dtype = check_float_dtype("sinusoidal_positions", "dtype", dtype)

    positions = ops.cast(ops.arange(length), "float32")
    positions = positions + ops.cast(start, "float32")
    inv_freq = ops.convert_to_tensor(
        _inverse_frequencies(dim // 2, dim, max_wavelength)
    )
    angles = ops.expand_dims(positions, -1) * ops.expand_dims(inv_freq, 0)
    # (length, dim // 2, 2) -> (length, dim): [sin_0, cos_0, sin_1, cos_1, ...]
    table = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
    table = ops.reshape(table, (-1, dim))
    return ops.cast(table, dtype)


# --------------------------------------------------------------------------
# Rotary (RoPE)
# --------------------------------------------------------------------------


@as_written
def apply_rotary_embedding(
    x, positions=None, *, max_wavelength=10000.0, scaling_factor=1.0
):
    """Rotates queries or keys by their positions (RoPE).

    Uses the "rotate half" layout of GPT-NeoX, Llama and KerasHub's
    `RotaryEmbedding`: channel `k` of the first half of `head_dim` is paired
    with channel `k + head_dim / 2` of the second half, and the pair
    `(a, b)` is rotated by the angle
    `theta = (position / scaling_factor) * max_wavelength ** (-2k / head_dim)`:

    ```
    a' = a * cos(theta) - b * sin(theta)
    b' = b * cos(theta) + a * sin(theta)
    ```

    (The original RoFormer paper pairs adjacent channels `(2k, 2k + 1)`
    instead; checkpoints must be permuted to move between the two.) The dot
    product of a rotated query at position `m` and a rotated key at position
    `n` depends only on `m - n`. `scaling_factor > 1` divides positions, which
    is linear "position interpolation" for extending the context.

    The rotation is computed in float32 and the result is cast back to the
    dtype of `x`.

    Args:
        x: tensor of shape `(batch, seq, heads, head_dim)`; `head_dim` must be
            static and even.
        positions: optional integer (or float) tensor of shape `(seq,)`, shared
            by the batch, or `(batch, seq)`, per example (e.g. for left padding
            or packed sequences). Defaults to `arange(seq)`.
        max_wavelength: positive float, the base of the frequencies.
            Defaults to `10000.0`.
        scaling_factor: positive float dividing the positions. Defaults to
            `1.0`.

    Returns:
        A tensor with the shape and dtype of `x`.

    Example:

    >>> q = keras.random.normal((2, 16, 4, 32))
    >>> q = apply_rotary_embedding(q)
    >>> # Continue a cached decode at position 16:
    >>> q_next = apply_rotary_embedding(
    ...     keras.random.normal((2, 1, 4, 32)), positions=keras.ops.array([16])
    ... )

    Reference:
        - [Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary
          Position Embedding"](https://arxiv.org/abs/2104.09864)
        - [Chen et al., 2023, "Extending Context Window of Large Language
          Models via Positional Interpolation"](
          https://arxiv.org/abs/2306.15595)
    """
    if not isinstance(x, keras.KerasTensor):
        x = ops.convert_to_tensor(x)
    if len(x.shape) != 4:
        raise argument_error(
            "apply_rotary_embedding",
            "x",
            "must have rank 4, shaped (batch, seq, heads, head_dim)",
            f"x.shape={tuple(x.shape)}",
        )
    head_dim = x.shape[-1]
    if head_dim is None or head_dim % 2:
        raise argument_error(
            "apply_rotary_embedding",
            "x.shape[-1]",
            "(head_dim) must be static and even (channels are rotated in pairs)",
            f"x.shape={tuple(x.shape)}",
        )
    check_positive_float("apply_rotary_embedding", "max_wavelength", max_wavelength)
    check_positive_float("apply_rotary_embedding", "scaling_factor", scaling_factor)

    seq_len = ops.shape(x)[1]
    if positions is None:
        positions = ops.arange(seq_len)
    else:
        if not isinstance(positions, keras.KerasTensor):
            positions = ops.convert_to_tensor(positions)
        rank = len(positions.shape)
        if rank not in (1, 2):
            raise argument_error(
                "apply_rotary_embedding",
                "positions",
                "must have shape (seq,) or (batch, seq)",
                f"positions.shape={tuple(positions.shape)}",
            )
        static_seq = positions.shape[-1]
        if (
            static_seq is not None
            and x.shape[1] is not None
            and static_seq != x.shape[1]
        ):
            raise ValueError(
                "The last axis of `positions` must match the sequence axis of "
                f"`x` ({x.shape[1]}). Received: "
                f"positions.shape={tuple(positions.shape)}, "
                f"x.shape={tuple(x.shape)}"
            )
    positions = ops.cast(positions, "float32")
    if scaling_factor != 1.0:
        positions = positions / float(scaling_factor)

    half = head_dim // 2
    inv_freq = ops.convert_to_tensor(
        _inverse_frequencies(half, head_dim, max_wavelength)
    )
    # (..., seq, half) -> (batch or 1, seq, 1, half), broadcasting over heads.
    angles = ops.expand_dims(positions, -1) * inv_freq
    angles = ops.expand_dims(angles, -2)
    if len(positions.shape) == 1:
        angles = ops.expand_dims(angles, 0)
    cos = ops.cos(angles)
    sin = ops.sin(angles)

    x32 = ops.cast(x, "float32")
    first, second = x32[..., :half], x32[..., half:]
    rotated = ops.concatenate(
        [first * cos - second * sin, second * cos + first * sin], axis=-1
    )
    return ops.cast(rotated, x.dtype)


# --------------------------------------------------------------------------
# ALiBi
# --------------------------------------------------------------------------


def _power_of_two_slopes(n):
    # Geometric sequence starting at, and with ratio, 2 ** (-8 / n).
    return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]


def _slopes_list(num_heads):
    if num_heads & (num_heads - 1) == 0:
        return _power_of_two_slopes(num_heads)
    lower = 1 << (num_heads.bit_length() - 1)
    # The paper's rule: the slopes of the largest power of two below, then
    # every other slope of the next power of two, to fill the remainder.
    extra = _slopes_list(2 * lower)[0::2][: num_heads - lower]
    return _power_of_two_slopes(lower) + extra


@as_written
def alibi_slopes(num_heads):
    """Per-head slopes of ALiBi (Attention with Linear Biases).

    For `n` heads, `n` a power of two, the slopes are the geometric sequence
    `2 ** (-8 / n), 2 ** (-16 / n), ..., 2 ** (-8)`; e.g. for 8 heads
    `1/2, 1/4, ..., 1/256`. When `n` is not a power of two, the paper takes
    the slopes for the largest power of two `p < n`, followed by
    `n - p` slopes taken from every other entry (starting with the first) of
    the sequence for `2p` heads.

    Args:
        num_heads: positive int, the number of attention heads.

    Returns:
        A float32 tensor of shape `(num_heads,)`.

    Example:

    >>> keras.ops.convert_to_numpy(alibi_slopes(4))
    array([0.25      , 0.0625    , 0.015625  , 0.00390625], dtype=float32)

    Reference:
        - [Press et al., 2022, "Train Short, Test Long: Attention with Linear
          Biases Enables Input Length Extrapolation"](
          https://arxiv.org/abs/2108.12409)
    """
    check_int("alibi_slopes", "num_heads", num_heads, 1)
    return ops.convert_to_tensor(
        np.asarray(_slopes_list(int(num_heads)), dtype="float32")
    )


@as_written
def alibi_bias(query_length, key_length, slopes):
    """The ALiBi attention bias `-slope_h * |i - j|`.

    Query `i` and key `j` are both counted from 0, so the bias is symmetric
    (the bidirectional form). Under a causal mask only `j <= i` survives and
    this equals the paper's `-slope_h * (i - j)`. When queries are the last
    tokens of a longer key sequence (decoding with a cache), offset yourself:
    the bias of query `i` is then row `i + key_length - query_length` of a
    square bias.

    Add the result to the attention logits before the softmax.

    Args:
        query_length: int or scalar int tensor, the number of queries.
        key_length: int or scalar int tensor, the number of keys.
        slopes: float tensor of shape `(num_heads,)`, usually
            `alibi_slopes(num_heads)`.

    Returns:
        A float32 tensor of shape `(1, num_heads, query_length, key_length)`,
        broadcastable over the batch.

    Example:

    >>> bias = alibi_bias(5, 5, alibi_slopes(8))
    >>> tuple(bias.shape)
    (1, 8, 5, 5)

    Reference:
        - [Press et al., 2022, "Train Short, Test Long: Attention with Linear
          Biases Enables Input Length Extrapolation"](
          https://arxiv.org/abs/2108.12409)
    """
    check_int_or_scalar("alibi_bias", "query_length", query_length, 0)
    check_int_or_scalar("alibi_bias", "key_length", key_length, 0)
    if not isinstance(slopes, keras.KerasTensor):
        slopes = ops.convert_to_tensor(slopes)
    if len(slopes.shape) != 1:
        raise argument_error(
            "alibi_bias",
            "slopes",
            "must be a 1D tensor of shape (num_heads,)",
            f"slopes.shape={tuple(slopes.shape)}",
        )
    slopes = ops.cast(slopes, "float32")
    query_pos = ops.cast(ops.arange(query_length), "float32")
    key_pos = ops.cast(ops.arange(key_length), "float32")
    distance = ops.abs(
        ops.expand_dims(query_pos, 1) - ops.expand_dims(key_pos, 0)
    )
    bias = -ops.reshape(slopes, (1, -1, 1, 1)) * distance[None, None, :, :]
    return bias
