"""A transformer encoder block that takes any attention variant."""

import keras
from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.masking import set_keras_mask

from keras_attention.layers.transformer.transformer_block import TransformerBlock


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerEncoder(TransformerBlock):
    """Transformer encoder block: self-attention and a feed-forward network.

    Each of the two sub-layers (self-attention, then the position-wise
    feed-forward network `Dense(intermediate_dim, activation) -> dropout ->
    Dense(hidden_dim)`) is wrapped in dropout, a residual connection and a
    `LayerNormalization`, in one of three arrangements:

    - post-norm (default, the original Transformer):
      `x = norm(x + dropout(sublayer(x)))`;
    - pre-norm (`norm_first=True`, GPT-2 and most modern models):
      `x = x + dropout(sublayer(norm(x)))`;
    - parallel (`parallel=True`, GPT-J / PaLM): both sub-layers read the same
      normalised input and are added to the residual together,
      `x = x + dropout(attention(norm(x))) + dropout(ffn(norm(x)))`, with a
      single `LayerNormalization`. A parallel block is always pre-norm;
      `norm_first` is then not used.

    The attention sub-layer is any attention layer of this package (or any
    layer with the call signature of `keras.layers.MultiHeadAttention`),
    chosen with `attention=`. It is created in `build()`, once the hidden size
    (the last axis of the input, kept by the block) is known.

    Padding masks: the Keras mask of `inputs` (e.g. from
    `keras.layers.Embedding(mask_zero=True)`) and `padding_mask` are combined;
    padded positions are never attended to, and the output carries the Keras
    mask of `inputs`, so blocks can be stacked. Outputs at padded positions
    are unspecified (finite) values.

    Args:
        intermediate_dim: positive int, the hidden width of the feed-forward
            network.
        num_heads: positive int, the number of attention heads. Passed to the
            attention layer (when its constructor takes `num_heads`) unless
            `attention_kwargs` has `num_heads`.
        attention: the attention variant: a registered name (`"multi_head"`,
            see `keras_attention.layers.available()`), a layer class, a config
            dict (`{"variant": name, **kwargs}`, or a serialized layer
            `{"class_name": ..., "config": ...}`) or a layer instance. Names,
            classes and `"variant"` dicts are constructed with
            `attention_kwargs` plus the defaults the constructor accepts and
            does not get: `num_heads`, `key_dim=hidden_dim // num_heads`, the
            block's initializers and dtype policy. Instances and serialized
            layers are used as they are. Defaults to `"multi_head"`.
        attention_kwargs: dict or `None`, more constructor arguments of the
            attention layer (e.g. `{"dropout": 0.1}` for dropout on the
            attention weights, `{"num_key_value_heads": 2}`,
            `{"position_encoding": "rope"}`). Not allowed with an instance.
        dropout: float in `[0, 1)`, the dropout rate on each sub-layer's
            output (before the residual addition) and on the feed-forward
            network's hidden activations. Defaults to `0`.
        activation: activation of the feed-forward network (name, serialized
            activation or callable). Defaults to `"relu"`.
        layer_norm_epsilon: positive float, epsilon of the layer norms.
            Defaults to `1e-5`.
        norm_first: bool, pre-norm (`True`) or post-norm (`False`, default).
        parallel: bool, the parallel (GPT-J / PaLM) block. Defaults to
            `False`.
        kernel_initializer: initializer of the dense kernels (each layer gets
            its own copy). Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of the dense biases. Defaults to
            `"zeros"`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: tensor `(batch, seq, hidden_dim)`.
        padding_mask: optional boolean `(batch, seq)`, `True` for real tokens;
            combined with the Keras mask of `inputs`.
        attention_mask: optional boolean `(batch, seq, seq)` (or any shape the
            attention layer accepts), `True` meaning "may attend".
        use_causal_mask: bool, hide later positions from each position.
            Defaults to `False`.
        return_attention_scores: bool, also return the attention layer's
            weights. Defaults to `False`.
        training: bool, whether dropout is active.

    Returns:
        A tensor `(batch, seq, hidden_dim)`, and with
        `return_attention_scores=True` the tuple `(output, scores)`, `scores`
        being the attention weights (`(batch, num_heads, seq, seq)` for
        multi-head attention).

    Example:

    >>> tokens = keras.Input(shape=(None,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    >>> x = TransformerEncoder(intermediate_dim=256, num_heads=4)(x)
    >>> x = TransformerEncoder(
    ...     intermediate_dim=256,
    ...     num_heads=4,
    ...     attention="multi_head",
    ...     attention_kwargs={"num_key_value_heads": 2},
    ...     norm_first=True,
    ... )(x)
    >>> x = keras.layers.GlobalAveragePooling1D()(x)  # skips the padding
    >>> model = keras.Model(tokens, keras.layers.Dense(2)(x))
    >>> model.output_shape
    (None, 2)
    >>> block = TransformerEncoder(intermediate_dim=32, num_heads=2,
    ...                            attention="linear")
    >>> tuple(block(keras.random.normal((2, 10, 16))).shape)
    (2, 10, 16)

    Reference:
        - [Vaswani et al., 2017, "Attention Is All You Need"](
          https://arxiv.org/abs/1706.03762) (post-norm block).
        - [Xiong et al., 2020, "On Layer Normalization in the Transformer
          Architecture"](https://arxiv.org/abs/2002.04745) (pre-norm).
        - [Wang & Komatsuzaki, 2021, "GPT-J-6B"](
          https://github.com/kingoflolz/mesh-transformer-jax) and
          [Chowdhery et al., 2022, "PaLM"](https://arxiv.org/abs/2204.02311)
          (parallel block).
    """

    def build(self, inputs_shape):
        shape = self._check_sequence("inputs", inputs_shape)
        self.self_attention_layer = self._build_attention(
            self.attention_spec, "self_attention", shape, shape
        )
        self._build_common(shape)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        self._check_sequence("inputs", inputs.shape)
        keras_mask = get_keras_mask(inputs)
        padding = self._padding("padding_mask", inputs, padding_mask)
        scores = []

        def self_attention(x):
            out, weights = self._attend(
                self.self_attention_layer,
                x,
                x,
                padding,
                padding,
                attention_mask,
                use_causal_mask,
                return_attention_scores,
                training,
            )
            scores.append(weights)
            return out

        def feed_forward(x):
            return self.feed_forward_layer(x, training=training)

        outputs = self._residual(
            inputs,
            [
                (self.self_attention_norm, self_attention, self.self_attention_dropout),
                (self.feed_forward_norm, feed_forward, self.feed_forward_dropout),
            ],
            training,
        )
        self._restore_masks([(inputs, keras_mask)])
        set_keras_mask(outputs, keras_mask)
        if return_attention_scores:
            return outputs, scores[0]
        return outputs

    def compute_output_shape(self, inputs_shape):
        return self._check_sequence("inputs", inputs_shape)

    def compute_output_spec(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        output = keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype=self.compute_dtype
        )
        if not self.built:
            self.build(inputs.shape)
        if use_causal_mask:
            self._check_causal_support(self.self_attention_layer, inputs)
        if not return_attention_scores:
            return output
        return output, self._scores_spec(self.self_attention_layer, inputs, inputs)
