"""Linear attention: a kernel feature map in place of the softmax, O(T)."""

import math
import random as python_random

import numpy as np

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.registry import Tunable
from keras_attention.layers.attention.registry import register_attention
from keras_attention.ops import linear as linear_ops


def _default_num_features(key_dim):
    # About d * ln(d) features, the size the FAVOR+ analysis asks for
    # (256 for key_dim=64).
    return key_dim * max(1, round(math.log(key_dim)))


@register_attention("linear")
class LinearAttention(BaseAttention):
    """Multi-head linear attention (kernelised, no softmax), O(T) in length.

    Each head replaces `softmax(q_i . k_j)` by a kernel
    `phi(q_i) . phi(k_j)` with a non-negative feature map `phi`:

        out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T)
                / (phi(q_i)^T sum_j phi(k_j) + epsilon),

    the sums running over the keys query `i` may see. Without a causal mask
    the `(m x dv)` key-value summary is computed once and shared by every
    query: time `O(T * m * dv)`, memory `O(T * m)`. With
    `use_causal_mask=True` the sums are prefix sums, computed chunk by chunk
    (`chunk_size` positions: the masked quadratic form inside a chunk, a
    running `(m x dv)` state across chunks) with a hand-written backward
    pass, in time `O(T * chunk_size * (m + dv) + T * m * dv)` and memory
    `O(T * (m + chunk_size) + (T / chunk_size) * m * dv)`, forward and
    backward (`m` is the number of features: `key_dim` for `"elu"` and
    `"relu"`, `num_features` for `"favor"`).
    Everything runs in float32 whatever the dtype policy.

    Feature maps:

    - `"elu"` (default): `elu(x) + 1`, as in Katharopoulos et al.;
    - `"relu"`: `relu(x)`; a query whose features are all zero, or that
      sees only keys with zero features, gets zeros;
    - `"favor"`: FAVOR+ positive orthogonal random features,
      `exp(w^T x' - |x'|^2 / 2) / sqrt(m)` with `x' = x / key_dim^(1/4)`,
      an unbiased estimate of the softmax kernel `exp(q . k / sqrt(d))`.
      The `(num_features, key_dim)` projection `w` is a non-trainable
      weight drawn from `seed` (saved with the model, so a reloaded or
      exported model computes exactly the same thing). With `redraw=True`
      every training call draws a fresh projection (from the layer's seed
      generator); inference always uses the stored one. The exponentials
      are stabilised by factors that cancel exactly (also in `epsilon`).

    Masks: key padding (Keras masks of `value`/`key`, `value_mask`,
    `key_mask`) removes the masked keys from every sum; masked queries
    output zeros; queries that see no key output zeros. A general
    `attention_mask` (one that differs between queries) cannot be written
    in linear form and raises a `ValueError`: use key padding masks and
    `use_causal_mask` only.

    When to use it: long sequences (thousands of positions and more) where
    softmax attention's `O(T^2)` time or memory is the bottleneck and an
    approximation of it is acceptable: long documents, audio or genomic
    sequences, long autoregressive generation (the causal form is an RNN
    with an `(m x dv)` state). Expect a quality gap against softmax
    attention on tasks that need sharp, precise look-ups (copying,
    retrieval); `"favor"` approximates softmax more closely than `"elu"`,
    at about `num_features / key_dim` times the cost. For short sequences
    the quadratic term is small: prefer the exact `MultiHeadAttention`.

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        value_dim: int, size of each value head; defaults to `key_dim`.
        num_key_value_heads: int dividing `num_heads`; defaults to
            `num_heads`. Key/value heads are shared by groups of query
            heads (grouped-query attention), as in `MultiHeadAttention`.
        feature_map: `"elu"`, `"relu"` or `"favor"`.
        num_features: int, number of FAVOR+ random features `m`; only with
            `feature_map="favor"`. Defaults to `key_dim * round(ln key_dim)`
            (256 for `key_dim=64`).
        redraw: bool, draw new FAVOR+ features at every training call; only
            with `feature_map="favor"`.
        chunk_size: int, positions per chunk of the causal form (default
            64). Larger chunks do more work inside chunks, fewer steps.
        epsilon: float >= 0 added to the normaliser (default `1e-6`).
        **kwargs: the arguments of `BaseAttention` (`use_bias`,
            `output_shape`, initializers, regularizers, constraints, `seed`
            (which also draws the FAVOR+ projection)) and of
            `keras.layers.Layer`. `dropout` must be 0: linear attention
            never forms the weights it would drop.

    Call arguments:
        Those of `keras.layers.MultiHeadAttention` (see `BaseAttention`),
        except that `attention_mask` must be a key padding mask: one that
        is the same for every query and head, with a query axis of size 1
        (`(batch, 1, Tv)`, `(1, Tv)` or `(batch, 1, 1, Tv)`), which then
        acts like the same `value_mask`. `value_mask` / `key_mask` or Keras
        masks are the usual way to pass padding.

    Returns:
        `(batch, Tq, output_shape)`, and with `return_attention_scores=True`
        also the implicit normalised weights
        `phi(q_i) . phi(k_j) / (phi(q_i) . sum_j phi(k_j) + epsilon)` as a
        dense `(batch, num_heads, Tq, Tv)` tensor. Building that view takes
        `O(Tq * Tv)` time and memory: it is for inspection only.

    Example:

    >>> layer = LinearAttention(num_heads=4, key_dim=16, feature_map="favor",
    ...                         num_features=32, seed=0)
    >>> x = keras.random.normal((2, 300, 64))
    >>> tuple(layer(x, x, use_causal_mask=True).shape)
    (2, 300, 64)
    >>> out, weights = layer(x[:, :5], x[:, :5], return_attention_scores=True)
    >>> tuple(weights.shape)
    (2, 4, 5, 5)

    Reference:
        - Katharopoulos et al., 2020, "Transformers are RNNs: Fast
          Autoregressive Transformers with Linear Attention".
        - Choromanski et al., 2021, "Rethinking Attention with Performers"
          (FAVOR+).
    """

    search_space = {"feature_map": Tunable(["elu", "relu", "favor"], "elu")}

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        num_key_value_heads=None,
        feature_map="elu",
        num_features=None,
        redraw=False,
        chunk_size=linear_ops.DEFAULT_CHUNK_SIZE,
        epsilon=linear_ops.DEFAULT_EPSILON,
        **kwargs,
    ):
        super().__init__(
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            num_key_value_heads=num_key_value_heads,
            **kwargs,
        )
        cls = type(self)
        name = cls.__name__
        if self.dropout:
            raise ValueError(
                f"{name}: `dropout` must be 0: linear attention never forms "
                "the attention weights that dropout would act on. Received: "
                f"dropout={self.dropout!r}"
            )
        if feature_map not in linear_ops.FEATURE_MAPS:
            raise ValueError(
                f"{name}: `feature_map` must be one of "
                f"{linear_ops.FEATURE_MAPS}. Received: "
                f"feature_map={feature_map!r}"
            )
        check_positive_int(cls, "num_features", num_features, allow_none=True)
        if num_features is not None and feature_map != "favor":
            raise ValueError(
                f"{name}: `num_features` only applies to "
                f"`feature_map='favor'`. Received: num_features="
                f"{num_features!r}, feature_map={feature_map!r}"
            )
        if not isinstance(redraw, bool):
            raise ValueError(
                f"{name}: `redraw` must be a bool. Received: redraw={redraw!r}"
            )
        if redraw and feature_map != "favor":
            raise ValueError(
                f"{name}: `redraw=True` only applies to "
                f"`feature_map='favor'`. Received: feature_map={feature_map!r}"
            )
        check_positive_int(cls, "chunk_size", chunk_size)
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, (int, float))
            or not math.isfinite(epsilon)
            or epsilon < 0
        ):
            raise ValueError(
                f"{name}: `epsilon` must be a finite number >= 0. Received: "
                f"epsilon={epsilon!r}"
            )
        self.feature_map = feature_map
        self.num_features = num_features
        self.redraw = redraw
        self.chunk_size = chunk_size
        self.epsilon = float(epsilon)
        # The FAVOR+ projection's seed: `seed`, or one drawn from Python's
        # global generator (seeded by `keras.utils.set_random_seed`).
        self._projection_seed = (
            self.seed
            if self.seed is not None
            else python_random.randint(0, 2**31 - 1)
        )

    # ------------------------------------------------------------------
    def build_attention(self, query_shape, value_shape, key_shape):
        self.feature_projection = None
        if self.feature_map != "favor":
            return
        m = self.num_features or _default_num_features(self.key_dim)
        seed = self._projection_seed

        def initializer(shape, dtype=None):
            return linear_ops.orthogonal_random_features(
                shape[0], shape[1], seed=seed
            )

        self.feature_projection = self.add_weight(
            name="feature_projection",
            shape=(m, self.key_dim),
            initializer=initializer,
            dtype="float32",
            trainable=False,
            autocast=False,
        )

    # ------------------------------------------------------------------
    def _check_attention_mask(self, attention_mask):
        """Only key padding has a linear form: a mask over one query."""
        if attention_mask is None:
            return
        shape = getattr(attention_mask, "shape", None)
        shape = tuple(np.shape(attention_mask) if shape is None else shape)
        rank = len(shape)
        # The query axis (and the heads axis) must be 1: then the mask is
        # the same for every query, a key padding mask.
        if rank == 2:
            query_axes = shape[:1]
        elif rank == 3:
            query_axes = shape[1:2]
        elif rank == 4:
            query_axes = shape[1:3]
        else:
            return  # `merge_masks` names the accepted ranks.
        if all(size == 1 for size in query_axes):
            return
        raise argument_error(
            self,
            "attention_mask",
            "cannot be expressed in linear attention, which sums over keys "
            "once for all queries: only key padding masks (`value_mask`, "
            "`key_mask`, Keras masks of `value`/`key`) and "
            "`use_causal_mask=True` are supported",
            f"attention_mask.shape={shape}",
        )

    def check_call_arguments(
        self, value_shape, key_shape, attention_mask, use_causal_mask
    ):
        self._check_attention_mask(attention_mask)

    def attend(
        self,
        query,
        key,
        value,
        mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        key_mask = None
        if mask is not None:
            if mask.shape[1] != 1 or mask.shape[2] != 1:
                raise argument_error(
                    self,
                    "attention_mask",
                    "must be a key padding mask (the same for every query "
                    "and head)",
                    f"merged mask shape={tuple(mask.shape)}",
                )
            key_mask = mask[:, 0, 0, :]
        projection = self.feature_projection
        if self.redraw and training:
            projection = linear_ops.orthogonal_random_features(
                projection.shape[0], self.key_dim, seed=self.seed_generator
            )
        result = linear_ops.linear_attention(
            query,
            key,
            value,
            feature_map=self.feature_map,
            projection=projection,
            key_mask=key_mask,
            is_causal=use_causal_mask,
            epsilon=self.epsilon,
            chunk_size=self.chunk_size,
            return_scores=return_attention_scores,
        )
        if return_attention_scores:
            return result
        return result, None

    def cache_limitation(self, query_length, causal):
        """See `BaseAttention.cache_limitation`: one new token at a time once
        causal (only key padding reaches the summed keys)."""
        if query_length == 1 or not causal:
            return None
        return (
            "linear attention sums the keys once for all queries, so only a "
            "key padding mask reaches it: a causal cached call past the prefill "
            "(whose `cache_update_index` is the int 0) takes one new token at a "
            f"time. Received {query_length} query positions"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "feature_map": self.feature_map,
                "num_features": self.num_features,
                "redraw": self.redraw,
                "chunk_size": self.chunk_size,
                "epsilon": self.epsilon,
            }
        )
        return config
