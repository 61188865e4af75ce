"""Linear attention: softmax replaced by a feature map, O(T) time and memory.

Softmax attention weighs key `j` for query `i` by `exp(q_i . k_j)`. Linear
attention (Katharopoulos et al., 2020) uses a kernel `phi(q_i) . phi(k_j)`
instead, with a non-negative feature map `phi` of `m` features, so that

    out_i = phi(q_i)^T S / (phi(q_i)^T z + eps),
    S = sum_j phi(k_j) v_j^T   (m x dv),     z = sum_j phi(k_j)   (m),

and the sums over keys are shared by every query: `O(T * m * dv)` time and
`O(T * m + m * dv)` memory per head instead of `O(T^2)`.

Causal attention (query `i` sees keys `j <= i`) needs prefix sums of
`phi(k_j) v_j^T` instead. `linear_attention(..., is_causal=True)` cuts the
sequence into chunks of `c` positions and walks them in order
(`keras.ops.scan`) with a running state: inside a chunk it uses the masked
`(c x c)` quadratic form, across chunks the `(m x dv)` state and the
normaliser carried so far. Its backward pass, written out (see
`_causal_core`), walks the chunks in reverse with the transposed running sum
`R = sum_{j later} phi(Q_j)^T dO_j`. Per head, time is
`O(T * c * (m + dv) + T * m * dv)` and memory `O(T * (m + c) + (T / c) * m *
dv)` (the state at each chunk start is kept for the backward pass), forward
and backward alike. The normaliser travels as an extra value channel of
ones, so `dv` above is the value size plus one.

Feature maps (`FEATURE_MAPS`):

- `"elu"`: `elu(x) + 1` (Katharopoulos et al., 2020);
- `"relu"`: `relu(x)`;
- `"favor"`: FAVOR+ positive orthogonal random features (Choromanski et al.,
  2021), `exp(w_r^T x' - |x'|^2 / 2) / sqrt(m)` with `x' = x / d^(1/4)`,
  whose inner products estimate the softmax kernel `exp(q . k / sqrt(d))`.
  The projection `w` (`(m, d)`) comes from `orthogonal_random_features`.

Everything is computed in float32 whatever the input dtype (the FAVOR+
exponentials over- and underflow float16 otherwise); the output is cast
back.

Tensors follow `keras.ops.dot_product_attention`: `(batch, seq, heads, dim)`,
with grouped key/value heads (query head `h` reads key/value head
`h // (heads // kv_heads)`).
"""

import math

from keras import ops
from keras import random

from keras_attention.arguments import argument_error
from keras_attention.ops import scores as sc
from keras_attention.ops.as_written import as_written

FEATURE_MAPS = ("elu", "relu", "favor")
DEFAULT_CHUNK_SIZE = 64
DEFAULT_EPSILON = 1e-6




# --------------------------------------------------------------------------
# feature maps
# --------------------------------------------------------------------------
@as_written
def orthogonal_random_features(num_features, dim, seed=None):
    """Orthogonal Gaussian projection of FAVOR+, shape `(num_features, dim)`.

    Rows come in blocks of `dim` mutually orthogonal directions (the Q factor
    of a Gaussian matrix, sign-corrected so each block is Haar-distributed),
    each scaled by the norm of an independent Gaussian vector, so every row
    is marginally `N(0, I_dim)` while rows within a block are orthogonal.

    Args:
        num_features: positive int, the number of random features `m`.
        dim: positive int, the size of the vectors projected.
        seed: int, `keras.random.SeedGenerator` or `None` (see
            `keras.random.normal`). An int always gives the same matrix.

    Returns:
        A float32 tensor `(num_features, dim)`.
    """
    blocks = -(-num_features // dim)
    # One draw (an int seed repeats itself from one call to the next): the
    # first blocks * dim rows for the directions, the rest for the norms.
    gauss = random.normal(
        (blocks * dim + num_features, dim), dtype="float32", seed=seed
    )
    square = ops.reshape(gauss[: blocks * dim], (blocks, dim, dim))
    q, r = ops.qr(square)
    diag = ops.diagonal(r, axis1=-2, axis2=-1)
    q = q * ops.where(diag < 0.0, -1.0, 1.0)[:, None, :]
    rows = ops.reshape(ops.transpose(q, (0, 2, 1)), (blocks * dim, dim))
    norms = ops.sqrt(ops.sum(ops.square(gauss[blocks * dim :]), axis=-1))
    return rows[:num_features] * norms[:, None]


def _valid_keys(key_mask):
    """`(batch, T)` bool -> `(batch, T, 1, 1)` bool, or None."""
    if key_mask is None:
        return None
    return ops.cast(key_mask, "bool")[:, :, None, None]


def _features(x, kind, projection, is_query, key_mask):
    """`apply_feature_map`, also returning the FAVOR+ stabiliser.

    Returns:
        `(features, shift)`: the features are the map's values times
        `exp(-shift)`; `shift` is `None` (no scaling) except for `"favor"`,
        where it is `(batch, T, heads, 1)` for queries and
        `(batch, 1, heads, 1)` for keys (no gradient flows through it).
    """
    if kind not in FEATURE_MAPS:
        raise argument_error(
            "apply_feature_map",
            "kind",
            f"must be one of {FEATURE_MAPS}",
            f"kind={kind!r}",
        )
    x = ops.cast(x, "float32")
    valid = _valid_keys(key_mask)
    if valid is not None:
        # Masked positions may hold anything (NaN, inf): zero them before
        # the map, so neither the features nor their gradients see them.
        x = ops.where(valid, x, 0.0)
    shift = None
    if kind == "elu":
        features = ops.elu(x) + 1.0
    elif kind == "relu":
        features = ops.relu(x)
    else:
        if projection is None:
            raise argument_error(
                "apply_feature_map",
                "projection",
                "is required for kind='favor'",
                "projection=None",
            )
        projection = ops.cast(projection, "float32")
        d = x.shape[-1]
        num_features = projection.shape[0]
        x = x * (float(d) ** -0.25)
        logits = ops.einsum("bthd,md->bthm", x, projection)
        logits = logits - 0.5 * ops.sum(ops.square(x), axis=-1, keepdims=True)
        if is_query:
            shift = sc.row_max(logits)
        else:
            hidden = logits
            if valid is not None:
                hidden = ops.where(valid, logits, sc.NEG)
            shift = sc.row_max(hidden, axis=(1, 3))
            # No unmasked key at all: any finite shift will do.
            shift = ops.where(shift > 0.5 * sc.NEG, shift, 0.0)
        shift = ops.stop_gradient(shift)
        logits = logits - shift
        if valid is not None:
            # Before `exp`: a masked key's logit may lie far above the shift.
            logits = ops.where(valid, logits, sc.NEG)
        features = ops.exp(logits) * (1.0 / math.sqrt(num_features))
    if valid is not None:
        features = ops.where(valid, features, 0.0)
    return features, shift


@as_written
def apply_feature_map(x, kind, projection=None, is_query=True, key_mask=None):
    """Applies a linear-attention feature map to `(batch, T, heads, d)`.

    For `"favor"` the features are returned stabilised, i.e. multiplied by
    a factor that cancels in the normalised attention: queries by
    `exp(-max_r logit_r)` (their own largest logit), keys by the
    `exp(-max logit)` over all unmasked keys and features of a head. The
    exponentials then never overflow.

    Args:
        x: float tensor `(batch, T, heads, d)`; computed in float32.
        kind: one of `FEATURE_MAPS`.
        projection: `(m, d)` float tensor, required for `"favor"` (see
            `orthogonal_random_features`).
        is_query: bool, whether `x` holds queries or keys (the FAVOR+
            stabiliser differs).
        key_mask: optional boolean `(batch, T)`; masked positions get zero
            features (they then never contribute to any sum).

    Returns:
        Float32 features `(batch, T, heads, m)`, non-negative.
    """
    return _features(x, kind, projection, is_query, key_mask)[0]


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------
def _dims(x):
    return [sc.static_or_dynamic(x, i) for i in range(len(x.shape))]


def _with_ones(v):
    """`(..., dv)` -> `(..., dv + 1)`: the normaliser rides along as a last
    value channel of ones (masked keys have zero features, so their ones
    add nothing)."""
    return ops.concatenate([v, ops.ones_like(v[..., :1])], axis=-1)


def _normalise(numerator_and_total, epsilon):
    """`(..., dv + 1)` -> `(..., dv)`: numerator / (normaliser + epsilon).

    `epsilon` is a float or a tensor broadcastable to `(..., 1)`.

    A query that sees no key has numerator and normaliser 0 and gets zeros.
    """
    numerator = numerator_and_total[..., :-1]
    total = numerator_and_total[..., -1:] + epsilon
    return numerator / ops.where(total > 0.0, total, 1.0)


def _check(function, query, key, value, key_mask):
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            raise argument_error(
                function,
                name,
                "must have rank 4: (batch, seq, heads, head_dim)",
                f"{name}.shape={tuple(x.shape)}",
            )
    _, _, heads, d = query.shape
    _, tk, kv_heads, dk = key.shape
    if d is not None and dk is not None and d != dk:
        raise argument_error(
            function,
            "key",
            f"must have the query's head_dim ({d}) as its last dimension",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
        )
    if tuple(value.shape[1:3]) != (tk, kv_heads) and None not in (
        value.shape[1],
        tk,
    ):
        raise argument_error(
            function,
            "value",
            f"must have the key's positions and heads ({tk}, {kv_heads})",
            f"key.shape={tuple(key.shape)}, value.shape={tuple(value.shape)}",
        )
    if heads is None or kv_heads is None or heads % kv_heads:
        raise argument_error(
            function,
            "key",
            "must have a static number of heads dividing the query's",
            f"query.shape={tuple(query.shape)}, key.shape={tuple(key.shape)}",
        )
    if key_mask is not None and len(key_mask.shape) != 2:
        raise argument_error(
            function,
            "key_mask",
            "must be a boolean (batch, Tk) key padding mask",
            f"key_mask.shape={tuple(key_mask.shape)}",
        )


# --------------------------------------------------------------------------
# non-causal
# --------------------------------------------------------------------------
def _grouped(phi_q, kv_heads):
    """`(b, T, heads, m)` -> `(b, T, kv_heads, groups, m)`."""
    b, t, heads, m = _dims(phi_q)
    return ops.reshape(phi_q, (b, t, kv_heads, heads // kv_heads, m))


def _non_causal(phi_q, phi_k, v1):
    """phi_q `(b, Tq, kv, g, m)`, phi_k `(b, Tk, kv, m)`, v1 `(b, Tk, kv, e)`
    -> `(b, Tq, kv, g, e)`."""
    state = ops.einsum("bthm,bthe->bhme", phi_k, v1)
    return ops.einsum("bqhgm,bhme->bqhge", phi_q, state)


# --------------------------------------------------------------------------
# causal, by chunks
# --------------------------------------------------------------------------
def _lower_triangle(size):
    """`(size, size)` float32: 1 on and below the diagonal (key <= query)."""
    position = ops.arange(size, dtype="int32")
    return ops.cast(position[None, :] <= position[:, None], "float32")


def _scanned(tensors):
    """The inputs of a `scan` over `(n, b, ...)` tensors, and a function
    that turns one step's slice back into the `(b, ...)` tensors.

    Keras' TensorFlow `scan` fails on several scanned inputs whose length
    `n` is unknown when tracing (dynamic sequence lengths, as in an exported
    model): those then travel packed as one `(n, b, total)` tensor (the sizes
    after the batch axis are static). A known `n` needs no copy.
    """
    if tensors[0].shape[0] is not None:
        return tuple(tensors), list
    shapes = [tuple(t.shape[2:]) for t in tensors]
    sizes = [math.prod(shape) for shape in shapes]
    n, b = (sc.static_or_dynamic(tensors[0], axis) for axis in (0, 1))
    packed = ops.concatenate(
        [ops.reshape(t, (n, b, size)) for t, size in zip(tensors, sizes)],
        axis=-1,
    )

    def unpack(row):
        pieces, start = [], 0
        for shape, size in zip(shapes, sizes):
            piece = row[:, start : start + size]
            pieces.append(ops.reshape(piece, (-1,) + shape))
            start += size
        return pieces

    return packed, unpack


def _zeros_with_last(x, size):
    """Zeros shaped like `x` but with a last axis of `size`."""
    return ops.repeat(ops.zeros_like(x[..., :1]), size, axis=-1)


def _causal_core(chunk):
    """The chunked causal prefix sums with a hand-written backward pass.

    For each head (g query heads sharing a key/value head) and chunk `i`,
    with `Q_i` `(c, m)` query features, `K_i` `(c, m)` key features, `V_i`
    `(c, e)` values, `L` the `(c, c)` lower triangle (ones on and below the
    diagonal) and `*` the elementwise product:

        O_i = Q_i S_i + ((Q_i K_i^T) * L) V_i,    S_{i+1} = S_i + K_i^T V_i,

    from `S_0 = 0`. Backward, from `dO_i`, with `R_i = sum_{j>i} Q_j^T dO_j`
    (accumulated over the chunks in reverse) and `dA_i = (dO_i V_i^T) * L`:

        dQ_i = dO_i S_i^T + dA_i K_i,
        dK_i = V_i R_i^T + dA_i^T Q_i,
        dV_i = K_i R_i + ((Q_i K_i^T) * L)^T dO_i.

    Only the state at each chunk start (`S_i`) is kept between the passes.
    Both passes are `keras.ops.scan` loops (TensorArrays under TensorFlow:
    each step writes its chunk in place, eagerly, in graphs and under XLA);
    autodiff through the loop is not needed.
    """
    tri = _lower_triangle(chunk)

    def core(qb, kb, vb):
        # qb (n, b, kv, g, c, m), kb (n, b, kv, c, m), vb (n, b, kv, c, e).
        e = vb.shape[-1]

        # TensorFlow's `scan` wants the per-step outputs shaped like the
        # carry, so the carry holds a slot for them.
        def forward(carry, chunk_inputs):
            state, _ = carry
            q_i, k_i, v_i = unpack_inputs(chunk_inputs)
            a = ops.einsum("bhgcm,bhsm->bhgcs", q_i, k_i) * tri
            o = ops.einsum("bhgcm,bhme->bhgce", q_i, state)
            o = o + ops.einsum("bhgcs,bhse->bhgce", a, v_i)
            new_state = state + ops.einsum("bhsm,bhse->bhme", k_i, v_i)
            return (new_state, o), (state, o)

        # state (b, kv, m, e); an output slot (b, kv, g, c, e).
        state = _zeros_with_last(kb[0, :, :, 0, :, None], e)
        init = (state, _zeros_with_last(qb[0], e))
        scan_inputs, unpack_inputs = _scanned([qb, kb, vb])
        _, (state_buf, out_buf) = ops.scan(forward, init, scan_inputs)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args

            def backward(carry, chunk_inputs):
                r = carry[0]
                q_i, k_i, v_i, do_i, s_i = unpack_grads(chunk_inputs)
                a = ops.einsum("bhgcm,bhsm->bhgcs", q_i, k_i) * tri
                da = ops.einsum("bhgce,bhse->bhgcs", do_i, v_i) * tri
                dq = ops.einsum("bhgce,bhme->bhgcm", do_i, s_i)
                dq = dq + ops.einsum("bhgcs,bhsm->bhgcm", da, k_i)
                dk = ops.einsum("bhse,bhme->bhsm", v_i, r)
                dk = dk + ops.einsum("bhgcs,bhgcm->bhsm", da, q_i)
                dv = ops.einsum("bhsm,bhme->bhse", k_i, r)
                dv = dv + ops.einsum("bhgcs,bhgce->bhse", a, do_i)
                new_r = r + ops.einsum("bhgcm,bhgce->bhme", q_i, do_i)
                return (new_r, dq, dk, dv), (r, dq, dk, dv)

            init = (
                ops.zeros_like(state_buf[0]),
                ops.zeros_like(qb[0]),
                ops.zeros_like(kb[0]),
                ops.zeros_like(vb[0]),
            )
            scan_grads, unpack_grads = _scanned(
                [qb, kb, vb, upstream, state_buf]
            )
            _, (_, dq_buf, dk_buf, dv_buf) = ops.scan(
                backward, init, scan_grads, reverse=True
            )
            return dq_buf, dk_buf, dv_buf

        return out_buf, grad

    return ops.custom_gradient(core)


def _to_chunks(x, chunk, length, group_axes):
    """`(b, T, *heads, last)` -> `(n, b, *heads, c, last)`, zero-padded to
    `length = n * c` positions."""
    dims = _dims(x)
    pad = length - dims[1]
    widths = [(0, 0)] * len(dims)
    widths[1] = (0, pad)
    x = ops.pad(x, widths)
    n = length // chunk
    x = ops.reshape(x, [dims[0], n, chunk] + dims[2:])
    # (b, n, c, *heads, last) -> (n, b, *heads, c, last)
    heads = list(range(3, 3 + group_axes))
    return ops.transpose(x, [1, 0] + heads + [2, 3 + group_axes])


def _from_chunks(x, length):
    """`(n, b, kv, g, c, e)` -> `(b, length, kv, g, e)`."""
    n, b, kv, g, c, e = _dims(x)
    x = ops.transpose(x, (1, 0, 4, 2, 3, 5))
    x = ops.reshape(x, (b, n * c, kv, g, e))
    return x[:, :length]


def _causal(phi_q, phi_k, v1, chunk_size):
    """phi_q `(b, Tq, kv, g, m)`, phi_k `(b, Tk, kv, m)`, v1 `(b, Tk, kv, e)`.

    Top-left aligned: query `i` sees keys `j <= i`. Queries and keys are
    padded to a common multiple of the chunk size (padded keys have zero
    features, padded queries are cut off).
    """
    tq, tk = sc.static_or_dynamic(phi_q, 1), sc.static_or_dynamic(phi_k, 1)
    if isinstance(tq, int) and tq == 0:
        # No query: no chunk to walk.
        return _zeros_with_last(phi_q, v1.shape[-1])
    if isinstance(tq, int) and isinstance(tk, int):
        longest = max(tq, tk)
        chunk = max(1, min(chunk_size, longest))
        length = -(-longest // chunk) * chunk
    else:
        chunk = chunk_size
        longest = ops.maximum(tq, tk)
        length = -ops.floor_divide(-longest, chunk) * chunk
    qb = _to_chunks(phi_q, chunk, length, 2)
    kb = _to_chunks(phi_k, chunk, length, 1)
    vb = _to_chunks(v1, chunk, length, 1)
    out = _causal_core(chunk)(qb, kb, vb)
    return _from_chunks(out, tq)


# --------------------------------------------------------------------------
# dense weights, for inspection
# --------------------------------------------------------------------------
def _weights(phi_q, phi_k, is_causal, epsilon):
    """The implicit weights `(b, heads, Tq, Tk)`: `O(Tq * Tk)` memory.

    `epsilon` is a float, or per query `(b, Tq, kv, g, 1)`.
    """
    b, tq, kv, g, _ = _dims(phi_q)
    tk = sc.static_or_dynamic(phi_k, 1)
    a = ops.einsum("bqhgm,bkhm->bhgqk", phi_q, phi_k)
    if is_causal:
        allowed = sc.position_mask(
            ops.arange(tq, dtype="int32"),
            ops.arange(tk, dtype="int32"),
            is_causal=True,
        )
        a = ops.where(allowed, a, 0.0)
    if not isinstance(epsilon, float):
        # Per query (FAVOR+): (b, Tq, kv, g, 1) -> (b, kv, g, Tq, 1).
        epsilon = ops.transpose(epsilon, (0, 2, 3, 1, 4))
    total = ops.sum(a, axis=-1, keepdims=True) + epsilon
    a = a / ops.where(total > 0.0, total, 1.0)
    return ops.reshape(a, (b, kv * g, tq, tk))


# --------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------
@as_written
def linear_attention(
    query,
    key,
    value,
    *,
    feature_map="elu",
    projection=None,
    key_mask=None,
    is_causal=False,
    epsilon=DEFAULT_EPSILON,
    chunk_size=DEFAULT_CHUNK_SIZE,
    return_scores=False,
):
    """Linear attention with a feature map, per head (see the module doc).

    `out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j)
    + epsilon)`, the sums running over the visible keys `j` (unmasked, and
    `j <= i` when causal). A query with no visible key gets zeros.

    Args:
        query: `(batch, Tq, heads, d)`.
        key: `(batch, Tk, kv_heads, d)`; `kv_heads` divides `heads`.
        value: `(batch, Tk, kv_heads, dv)`.
        feature_map: one of `FEATURE_MAPS`.
        projection: `(m, d)` FAVOR+ projection (`feature_map="favor"` only).
        key_mask: optional boolean `(batch, Tk)` key padding mask (`True` =
            may be attended). Only key padding can be expressed in linear
            form; a general `(Tq, Tk)` mask cannot. Masked keys and values
            never enter a sum (they may be NaN).
        is_causal: bool, query `i` sees keys `j <= i` (top-left aligned).
        epsilon: float >= 0 added to the normaliser.
        chunk_size: positive int, positions per chunk of the causal form
            (`O(T * chunk_size)` work inside chunks, `T / chunk_size` steps).
        return_scores: bool, also return the implicit normalised weights
            `(batch, heads, Tq, Tk)`. This materialises them: `O(Tq * Tk)`
            time and memory, for inspection only.

    Returns:
        `(batch, Tq, heads, dv)` in the query's dtype, and with
        `return_scores=True` the tuple `(output, weights)`.

    Example:

    >>> q = keras.random.normal((2, 100, 4, 16))
    >>> kv = keras.random.normal((2, 100, 2, 16))
    >>> out = linear_attention(q, kv, kv, is_causal=True, chunk_size=32)
    >>> tuple(out.shape)
    (2, 100, 4, 16)

    Reference:
        - Katharopoulos et al., 2020, "Transformers are RNNs: Fast
          Autoregressive Transformers with Linear Attention".
        - Choromanski et al., 2021, "Rethinking Attention with Performers".
    """
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key)
    value = ops.convert_to_tensor(value)
    if key_mask is not None:
        key_mask = ops.convert_to_tensor(key_mask)
    _check("linear_attention", query, key, value, key_mask)
    if feature_map not in FEATURE_MAPS:
        raise argument_error(
            "linear_attention",
            "feature_map",
            f"must be one of {FEATURE_MAPS}",
            f"feature_map={feature_map!r}",
        )
    if feature_map == "favor":
        if projection is None:
            raise argument_error(
                "linear_attention",
                "projection",
                "is required with feature_map='favor' (see "
                "`orthogonal_random_features`)",
                "projection=None",
            )
        projection = ops.convert_to_tensor(projection)
        if tuple(projection.shape[1:]) != (query.shape[-1],):
            raise argument_error(
                "linear_attention",
                "projection",
                f"must have shape (num_features, head_dim={query.shape[-1]})",
                f"projection.shape={tuple(projection.shape)}",
            )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or (
        chunk_size < 1
    ):
        raise argument_error(
            "linear_attention",
            "chunk_size",
            "must be a positive int",
            f"chunk_size={chunk_size!r}",
        )
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or (
        epsilon < 0
    ):
        raise argument_error(
            "linear_attention",
            "epsilon",
            "must be a number >= 0",
            f"epsilon={epsilon!r}",
        )
    epsilon = float(epsilon)
    kv_heads = key.shape[2]
    phi_q, q_shift = _features(query, feature_map, projection, True, None)
    phi_k, k_shift = _features(key, feature_map, projection, False, key_mask)
    phi_q = _grouped(phi_q, kv_heads)
    if q_shift is not None and epsilon > 0.0:
        # The FAVOR+ features carry the factor exp(-q_shift - k_shift), which
        # cancels between numerator and normaliser; epsilon gets it too, so
        # that the result is the one of the unstabilised features.
        log_eps = math.log(epsilon) - _grouped(q_shift, kv_heads)
        log_eps = log_eps - ops.expand_dims(k_shift, -2)
        epsilon = ops.exp(ops.minimum(log_eps, 80.0))
    value = ops.cast(value, "float32")
    if key_mask is not None:
        # Masked keys have zero features, but `0 * nan` is nan: padded
        # values may hold anything and must not enter the sums.
        value = ops.where(_valid_keys(key_mask), value, 0.0)
    v1 = _with_ones(value)
    if is_causal:
        out = _causal(phi_q, phi_k, v1, chunk_size)
    else:
        out = _non_causal(phi_q, phi_k, v1)
    out = _normalise(out, epsilon)
    b, tq, heads = _dims(query)[:3]
    out = ops.reshape(out, (b, tq, heads, sc.static_or_dynamic(value, 3)))
    out = ops.cast(out, query.dtype)
    if not return_scores:
        return out
    weights = _weights(phi_q, phi_k, is_causal, epsilon)
    return out, ops.cast(weights, query.dtype)

