"""NumPy forward passes of the transformer blocks, for the tests.

Written from the papers' equations, in float64, reading the weights of the
block under test (nothing else is shared with the implementation):

    attention(q, kv) = concat_h(softmax(Q_h K_h^T / sqrt(d_k), masked) V_h) W_o
    layer_norm(x) = (x - mean) / sqrt(var + eps) * gamma + beta
    ffn(x) = relu(x W_1 + b_1) W_2 + b_2

Post-norm: x = LN(x + f(x)); pre-norm: x = x + f(LN(x)); parallel:
x = x + sum_f f(LN(x)) with one shared LN.
"""

import keras
import numpy as np


def to_np(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def randomize(layer, seed=0):
    """Gives every weight of `layer` random, non-trivial values."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        shape = tuple(variable.shape)
        if variable.path.endswith("gamma"):
            value = 1.0 + 0.3 * rng.standard_normal(shape)
        else:
            value = 0.4 * rng.standard_normal(shape)
        variable.assign(value.astype("float32"))


def _dense(layer):
    return to_np(layer.kernel).astype("float64"), to_np(layer.bias).astype("float64")


def layer_norm(layer, x):
    gamma = to_np(layer.gamma).astype("float64")
    beta = to_np(layer.beta).astype("float64")
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def feed_forward(layer, x):
    w1, b1 = _dense(layer.intermediate_dense)
    w2, b2 = _dense(layer.output_dense)
    return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2


def attention(layer, query, value, query_mask=None, key_mask=None, causal=False):
    """Multi-head attention with `MultiHeadAttention`'s weights.

    Kernels: query/key/value `(dim, heads, head_dim)` with biases
    `(heads, head_dim)`, output `(heads, head_dim, dim)` with bias `(dim,)`.
    Masked keys get zero weight; a query without visible keys gets zero
    weights; masked queries get zero weights and a zero output.
    """
    wq, bq = _dense(layer.query_dense)
    wk, bk = _dense(layer.key_dense)
    wv, bv = _dense(layer.value_dense)
    wo, bo = _dense(layer.output_dense)
    q = np.einsum("btd,dhk->bthk", query, wq) + bq
    k = np.einsum("bsd,dhk->bshk", value, wk) + bk
    v = np.einsum("bsd,dhk->bshk", value, wv) + bv
    batch, tq, heads, key_dim = q.shape
    ts = k.shape[1]
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(key_dim)
    allowed = np.ones((batch, 1, tq, ts), bool)
    if key_mask is not None:
        allowed &= np.asarray(key_mask, bool)[:, None, None, :]
    if causal:
        allowed &= np.tril(np.ones((tq, ts), bool))[None, None]
    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    p = np.where(allowed, np.exp(logits - row_max), 0.0)
    total = p.sum(-1, keepdims=True)
    weights = p / np.where(total > 0, total, 1.0)
    attended = np.einsum("bhqs,bshk->bqhk", weights, v)
    out = np.einsum("bqhk,hkd->bqd", attended, wo) + bo
    if query_mask is not None:
        keep = np.asarray(query_mask, "float64")
        out = out * keep[:, :, None]
        weights = weights * keep[:, None, :, None]
    return out, weights


def encoder(block, x, mask=None, causal=False):
    """`TransformerEncoder` forward; returns `(output, attention weights)`."""
    x = np.asarray(x, "float64")
    kept = {}

    def attend(h):
        out, kept["scores"] = attention(
            block.self_attention_layer, h, h, mask, mask, causal
        )
        return out

    def ffn(h):
        return feed_forward(block.feed_forward_layer, h)

    if block.parallel:
        h = layer_norm(block.norm, x)
        out = x + attend(h) + ffn(h)
    elif block.norm_first:
        x = x + attend(layer_norm(block.self_attention_norm, x))
        out = x + ffn(layer_norm(block.feed_forward_norm, x))
    else:
        x = layer_norm(block.self_attention_norm, x + attend(x))
        out = layer_norm(block.feed_forward_norm, x + ffn(x))
    return out, kept["scores"]


def decoder(block, x, encoded=None, mask=None, encoder_mask=None, causal=True):
    """`TransformerDecoder` forward; returns `(output, self w, cross w)`."""
    x = np.asarray(x, "float64")
    kept = {"cross": None}

    def self_attend(h):
        out, kept["self"] = attention(
            block.self_attention_layer, h, h, mask, mask, causal
        )
        return out

    def cross_attend(h):
        out, kept["cross"] = attention(
            block.cross_attention_layer,
            h,
            np.asarray(encoded, "float64"),
            mask,
            encoder_mask,
        )
        return out

    def ffn(h):
        return feed_forward(block.feed_forward_layer, h)

    if block.parallel:
        h = layer_norm(block.norm, x)
        out = x + self_attend(h) + ffn(h)
        if encoded is not None:
            out = out + cross_attend(h)
    elif block.norm_first:
        x = x + self_attend(layer_norm(block.self_attention_norm, x))
        if encoded is not None:
            x = x + cross_attend(layer_norm(block.cross_attention_norm, x))
        out = x + ffn(layer_norm(block.feed_forward_norm, x))
    else:
        x = layer_norm(block.self_attention_norm, x + self_attend(x))
        if encoded is not None:
            x = layer_norm(block.cross_attention_norm, x + cross_attend(x))
        out = layer_norm(block.feed_forward_norm, x + ffn(x))
    return out, kept["self"], kept["cross"]


def copy_block_weights(source, target):
    """Copies weights sub-layer by sub-layer (robust to weight order)."""
    for name in (
        "self_attention_layer",
        "cross_attention_layer",
        "feed_forward_layer",
        "norm",
        "self_attention_norm",
        "cross_attention_norm",
        "feed_forward_norm",
    ):
        src = getattr(source, name, None)
        if src is not None and src.weights:
            getattr(target, name).set_weights(src.get_weights())
