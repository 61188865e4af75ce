"""Attention whose pattern depends on the input beyond the scores."""

import math

import keras
from keras import ops

from keras_attention import ops as attention_ops
from keras_attention.layers.attention.base import BaseAttention
from keras_attention.layers.attention.registry import Tunable
from keras_attention.layers.attention.registry import register_attention
from keras_attention.ops import scores as sc
from keras_attention.ops.dropout import dropout

# softplus(_UNIT_TEMPERATURE) == 1: every temperature starts at one.
_UNIT_TEMPERATURE = math.log(math.e - 1.0)


@register_attention("dynamic")
class DynamicAttention(BaseAttention):
    """Multi-head attention with input-dependent temperature, head gates and
    talking heads.

    Three switchable changes to multi-head attention, each predicted from or
    acting on the projected query heads `q[i, h]` (`(batch, Tq, heads,
    key_dim)`) with keys `k`, values `v`, `d = key_dim`:

    - per-query temperature (`temperature=True`): each query token and head
      predicts how peaked its attention is,
      `tau[i, h] = softplus(q[i, h] . w_tau[h] + b_tau[h]) + epsilon`, and
      the logits are `l[h, i, j] = q[i, h] . k[j, h] / (sqrt(d) * tau[i, h])`
      (`w_tau = 0`, `softplus(b_tau) = 1` at initialisation);
    - talking heads (`talking_heads=True`, Shazeer et al., 2020): the
      logits are mixed across heads before the softmax and the weights after
      it, `l'[g] = sum_h P_logits[h, g] l[h]`,
      `a = softmax_j(l')` (masked), `a'[g] = sum_h P_weights[h, g] a[h]`,
      with `P_logits`, `P_weights` `(heads, heads)`, identity at
      initialisation;
    - per-token head gating (`head_gating=True`): each query token decides
      how much of each head to keep,
      `g[i, h] = sigmoid(q[i, h] . w_g[h] + b_g[h])` (0.5 at
      initialisation), and the head output `o[i, h] = g[i, h] *
      sum_j a'[h, i, j] v[j, h]` goes to the output projection.

    With all three off it computes what `MultiHeadAttention` computes. Masks,
    `use_causal_mask`, dropout on the weights, grouped key/value heads and
    `return_attention_scores` (the final weights `a'`) work as in the shared
    shell; a query with nothing to attend to outputs zeros.
    Temperatures, gates, scores, the softmax and the weighted sums run in
    float32 under every dtype policy; the results are cast back to the
    compute dtype.

    Args:
        num_heads: int, number of query heads.
        key_dim: int, size of each query/key head.
        temperature: bool, learn a per-query, per-head temperature.
        head_gating: bool, gate each head's output per query token.
        talking_heads: bool, mix logits and weights across heads.
        epsilon: float, lower bound added to the temperature.
        **kwargs: the arguments of `BaseAttention` (`value_dim`,
            `num_key_value_heads`, `dropout`, `use_bias`, `output_shape`,
            initializers, ...) and of `keras.layers.Layer`.

    Call arguments:
        Those of `keras.layers.MultiHeadAttention` (see `BaseAttention`).

    Returns:
        `(batch, Tq, output_shape)`, and with `return_attention_scores=True`
        also the weights `(batch, num_heads, Tq, Tv)` after talking-heads
        mixing.

    Example:

    >>> layer = DynamicAttention(num_heads=4, key_dim=8)
    >>> x = keras.random.normal((2, 6, 32))
    >>> out, weights = layer(x, x, use_causal_mask=True,
    ...                      return_attention_scores=True)
    >>> tuple(out.shape), tuple(weights.shape)
    ((2, 6, 32), (2, 4, 6, 6))

    Reference:
        - [Shazeer et al., 2020, "Talking-Heads Attention"](
          https://arxiv.org/abs/2003.02436).
        - [Qiu et al., 2025, "Gated Attention for Large Language Models"](
          https://arxiv.org/abs/2505.06708) (sigmoid head gates from the
          query token).
        - [Henry et al., 2020, "Query-Key Normalization for Transformers"](
          https://arxiv.org/abs/2010.04245) (learned attention temperature).
    """

    search_space = {"talking_heads": Tunable([True, False], True)}

    def __init__(
        self,
        num_heads,
        key_dim,
        temperature=True,
        head_gating=True,
        talking_heads=True,
        epsilon=1e-2,
        **kwargs,
    ):
        super().__init__(num_heads=num_heads, key_dim=key_dim, **kwargs)
        cls = type(self).__name__
        for argument, value in (
            ("temperature", temperature),
            ("head_gating", head_gating),
            ("talking_heads", talking_heads),
        ):
            if not isinstance(value, bool):
                raise ValueError(
                    f"{cls}: `{argument}` must be a bool. Received: "
                    f"{argument}={value!r}"
                )
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, (int, float))
            or not epsilon > 0
        ):
            raise ValueError(
                f"{cls}: `epsilon` must be a positive float. Received: "
                f"epsilon={epsilon!r}"
            )
        self.temperature = temperature
        self.head_gating = head_gating
        self.talking_heads = talking_heads
        self.epsilon = float(epsilon)

    def build_attention(self, query_shape, value_shape, key_shape):
        h, d = self.num_heads, self.key_dim
        if self.temperature:
            self.temperature_kernel = self.add_weight(
                name="temperature_kernel", shape=(h, d), initializer="zeros"
            )
            self.temperature_bias = self.add_weight(
                name="temperature_bias",
                shape=(h,),
                initializer=keras.initializers.Constant(_UNIT_TEMPERATURE),
            )
        if self.head_gating:
            self.gate_kernel = self.add_weight(
                name="gate_kernel", shape=(h, d), initializer="zeros"
            )
            self.gate_bias = self.add_weight(
                name="gate_bias", shape=(h,), initializer="zeros"
            )
        if self.talking_heads:
            self.logits_mixing = self.add_weight(
                name="logits_mixing", shape=(h, h), initializer="identity"
            )
            self.weights_mixing = self.add_weight(
                name="weights_mixing", shape=(h, h), initializer="identity"
            )

    def _per_head(self, query, kernel, bias):
        """`q[i, h] . kernel[h] + bias[h]` as `(batch, Tq, heads)`, float32."""
        q = ops.cast(query, "float32")
        kernel = ops.cast(kernel, "float32")
        return ops.einsum("bqhd,hd->bqh", q, kernel) + ops.cast(bias, "float32")

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
        # The scores run in float32 (see `dot_product_attention`); so does
        # the division by the temperature, which may be as small as
        # `epsilon`.
        scaled = ops.cast(query, "float32")
        if self.temperature:
            tau = ops.softplus(
                self._per_head(
                    query, self.temperature_kernel, self.temperature_bias
                )
            ) + self.epsilon
            scaled = scaled / tau[..., None]
        if self.talking_heads:
            out, weights = self._talking_heads(
                scaled, key, value, mask, use_causal_mask, training
            )
        else:
            out, weights = attention_ops.dot_product_attention(
                scaled,
                key,
                value,
                mask=mask,
                is_causal=use_causal_mask,
                dropout_rate=self.dropout,
                seed=self.seed_generator,
                training=bool(training),
                return_scores=True,
                implementation="exact",
            )
        if self.head_gating:
            gate = ops.sigmoid(
                self._per_head(query, self.gate_kernel, self.gate_bias)
            )
            out = ops.cast(out, "float32") * gate[..., None]
        out = ops.cast(out, query.dtype)
        if not return_attention_scores:
            return out, None
        return out, ops.cast(weights, query.dtype)

    def _talking_heads(
        self, query, key, value, mask, use_causal_mask, training
    ):
        # Padding may hold anything (NaN, inf): keep it out of the products.
        key, value = sc.hide_unseen(mask, key, value)
        groups = self.num_heads // self.num_key_value_heads
        if groups > 1:
            key = ops.repeat(key, groups, axis=2)
            value = ops.repeat(value, groups, axis=2)
        scale = 1.0 / math.sqrt(self.key_dim)
        logits = ops.einsum(
            "bqhd,bkhd->bhqk",
            ops.cast(query, "float32") * scale,
            ops.cast(key, "float32"),
        )
        logits = ops.einsum(
            "bhqk,hg->bgqk", logits, ops.cast(self.logits_mixing, "float32")
        )
        tq, tk = sc.static_or_dynamic(query, 1), sc.static_or_dynamic(key, 1)
        allowed = sc.both(
            None if mask is None else ops.cast(mask, "bool"),
            sc.position_mask(
                ops.arange(tq, dtype="int32"),
                ops.arange(tk, dtype="int32"),
                is_causal=use_causal_mask,
            ),
        )
        weights = sc.masked_softmax(logits, allowed)
        weights = ops.einsum(
            "bhqk,hg->bgqk", weights, ops.cast(self.weights_mixing, "float32")
        )
        if allowed is not None:
            weights = ops.where(allowed, weights, 0.0)
        attended = weights
        if self.dropout and training:
            attended = dropout(
                weights, self.dropout, seed=self.seed_generator
            )
        out = ops.einsum(
            "bhqk,bkhd->bqhd", attended, ops.cast(value, "float32")
        )
        return out, weights

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "temperature": self.temperature,
                "head_gating": self.head_gating,
                "talking_heads": self.talking_heads,
                "epsilon": self.epsilon,
            }
        )
        return config
