"""A transformer decoder block that takes any attention variant."""

import keras
from keras import ops
from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.masking import set_keras_mask

from keras_attention.arguments import argument_error
from keras_attention.layers.transformer.transformer_block import AttentionSpec
from keras_attention.layers.transformer.transformer_block import TransformerBlock
from keras_attention.layers.transformer.transformer_block import call_parameters
from keras_attention.layers.transformer.transformer_block import serialize_kwargs


def _positions(cache):
    """A stand-in `(batch, cache_length, 1)` sequence for a cache's shape."""
    return keras.KerasTensor((cache.shape[0], cache.shape[2], 1))


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerDecoder(TransformerBlock):
    """Transformer decoder block: causal self-attention, cross-attention, FFN.

    The sub-layers, each wrapped in dropout, a residual connection and a
    `LayerNormalization` (arranged as in `TransformerEncoder`: post-norm by
    default, pre-norm with `norm_first=True`, or the parallel block with
    `parallel=True`), are:

    1. self-attention over the decoder sequence, causal by default;
    2. cross-attention from the decoder sequence to the encoder sequence,
       only in an encoder-decoder block (see below);
    3. the position-wise feed-forward network
       `Dense(intermediate_dim, activation) -> dropout -> Dense(hidden_dim)`.

    Encoder-decoder or decoder-only is fixed when the layer is built: the
    block has a cross-attention sub-layer exactly when it is built with an
    encoder sequence, i.e. when its first call passes `encoder_sequence`
    (or `build(decoder_sequence_shape, encoder_sequence_shape)` is called
    with an encoder shape). Later calls must agree: passing an encoder
    sequence to a decoder-only block, or leaving it out for an
    encoder-decoder block, raises a `ValueError`.

    In a parallel block all sub-layers read the same normalised decoder
    sequence and are added to the residual together (the encoder sequence
    is used as it is, as in every arrangement).

    Padding masks: the Keras masks of `decoder_sequence` and
    `encoder_sequence` (e.g. from `keras.layers.Embedding(mask_zero=True)`,
    or the outputs of a masked `TransformerEncoder`) are combined with
    `decoder_padding_mask` and `encoder_padding_mask`; padded positions are
    never attended to. The output carries the Keras mask of
    `decoder_sequence`.

    Args:
        intermediate_dim: positive int, the hidden width of the feed-forward
            network.
        num_heads: positive int, the number of attention heads of both
            attention layers (unless their kwargs say otherwise).
        attention: the self-attention variant: a registered name, a layer
            class, a config dict or a layer instance, as in
            `TransformerEncoder`. Defaults to `"multi_head"`.
        attention_kwargs: dict or `None`, more constructor arguments of the
            self-attention layer.
        cross_attention: the cross-attention variant, in the same forms.
            `None` (default) means "like `attention`": the same name, class
            or config (a fresh layer with its own weights; an instance is
            cloned from its config).
        cross_attention_kwargs: dict or `None`, constructor arguments of the
            cross-attention layer. When both `cross_attention` and
            `cross_attention_kwargs` are `None`, `attention_kwargs` is used.
        dropout: float in `[0, 1)`, the dropout rate on each sub-layer's
            output and on the feed-forward network's hidden activations.
        activation: activation of the feed-forward network. Defaults to
            `"relu"`.
        layer_norm_epsilon: positive float, epsilon of the layer norms.
        norm_first: bool, pre-norm (`True`) or post-norm (`False`, default).
        parallel: bool, the parallel (GPT-J / PaLM) block; always pre-norm.
        kernel_initializer: initializer of the dense kernels.
        bias_initializer: initializer of the dense biases.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        decoder_sequence: tensor `(batch, target_len, hidden_dim)`.
        encoder_sequence: optional tensor `(batch, source_len, encoder_dim)`;
            see above for when it must be given.
        decoder_padding_mask: optional boolean `(batch, target_len)`.
        decoder_attention_mask: optional boolean
            `(batch, target_len, target_len)`; combined with the causal mask.
        encoder_padding_mask: optional boolean `(batch, source_len)`.
        encoder_attention_mask: optional boolean
            `(batch, target_len, source_len)`.
        use_causal_mask: bool, hide later decoder positions in the
            self-attention. Defaults to `True`.
        return_attention_scores: bool, also return the attention weights.
        training: bool, whether dropout is active.
        self_attention_cache: optional key/value cache of the
            self-attention, `(batch, 2, cache_length, kv_heads, head_dim)`
            (`self_attention_layer.empty_cache(batch, length)` makes one),
            for decoding step by step; see `BaseAttention`.
        self_attention_cache_update_index: int or scalar int tensor, the
            position of the first token of `decoder_sequence` (where its
            keys and values go in the cache). `0` as a Python int prefills
            the cache with a prompt.
        cross_attention_cache: optional key/value cache of the
            cross-attention, `(batch, 2, source_len, kv_heads, head_dim)`,
            usually `compute_cross_attention_cache(encoder_sequence)`,
            computed once per source. With
            `cross_attention_cache_update_index=None` it is used as it is,
            and `encoder_sequence` may be left out (give
            `encoder_padding_mask` for a padded source).
        cross_attention_cache_update_index: int or scalar int tensor, where
            the projected `encoder_sequence` goes in `cross_attention_cache`,
            or `None` (the default) to use the cache as it is.

    With caches, `decoder_attention_mask` covers the whole self-attention
    cache, `(batch, target_len, cache_length)`, the causal mask follows the
    absolute positions, and the decoder padding masks the new queries only
    (right padding never reaches a real token through a causal mask; mask
    cached positions with `decoder_attention_mask`). Decoding step by step
    with caches gives what one causal call over the whole target sequence
    gives.

    Returns:
        A tensor `(batch, target_len, hidden_dim)`. With
        `return_attention_scores=True`, the tuple
        `(output, self_attention_scores, cross_attention_scores)` for an
        encoder-decoder block, `(output, self_attention_scores)` for a
        decoder-only block. With caches, the updated caches follow, in the
        order `self_attention_cache`, `cross_attention_cache` (those given):
        e.g. `(output, self_attention_cache, cross_attention_cache)`.

    Example:

    >>> from keras_attention.layers import TransformerEncoder
    >>> source = keras.Input(shape=(None,), dtype="int32")
    >>> target = keras.Input(shape=(None,), dtype="int32")
    >>> encoded = keras.layers.Embedding(1000, 64, mask_zero=True)(source)
    >>> encoded = TransformerEncoder(intermediate_dim=256, num_heads=4)(encoded)
    >>> x = keras.layers.Embedding(1000, 64, mask_zero=True)(target)
    >>> x = TransformerDecoder(intermediate_dim=256, num_heads=4)(x, encoded)
    >>> logits = keras.layers.Dense(1000)(x)
    >>> model = keras.Model([source, target], logits)
    >>> model.output_shape
    (None, None, 1000)
    >>> # Decoder-only (GPT-style), grouped-query self-attention:
    >>> gpt_block = TransformerDecoder(
    ...     intermediate_dim=256,
    ...     num_heads=8,
    ...     attention_kwargs={"num_key_value_heads": 2},
    ...     norm_first=True,
    ... )
    >>> tuple(gpt_block(keras.random.normal((2, 6, 64))).shape)
    (2, 6, 64)

    Reference:
        - [Vaswani et al., 2017, "Attention Is All You Need"](
          https://arxiv.org/abs/1706.03762).
        - [Radford et al., 2019, "Language Models are Unsupervised Multitask
          Learners"](https://openai.com/research/better-language-models)
          (pre-norm decoder-only block).
        - [Chowdhery et al., 2022, "PaLM"](https://arxiv.org/abs/2204.02311)
          (parallel block).
    """

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        attention="multi_head",
        attention_kwargs=None,
        cross_attention=None,
        cross_attention_kwargs=None,
        dropout=0.0,
        activation="relu",
        layer_norm_epsilon=1e-5,
        norm_first=False,
        parallel=False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(
            intermediate_dim=intermediate_dim,
            num_heads=num_heads,
            attention=attention,
            attention_kwargs=attention_kwargs,
            dropout=dropout,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            norm_first=norm_first,
            parallel=parallel,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        # The raw identifiers live in the (untracked) specs, so that a layer
        # instance is reachable from one attribute only (weights paths).
        self._cross_like_attention = cross_attention is None
        self._cross_attention_kwargs = cross_attention_kwargs
        if cross_attention is None:
            kwargs_given = cross_attention_kwargs
            if kwargs_given is None:
                kwargs_given = attention_kwargs
            if self.attention_spec.is_instance:
                identifier = self.attention_spec.template("cross_attention")
            else:
                identifier = attention
        else:
            identifier, kwargs_given = cross_attention, cross_attention_kwargs
        self.cross_attention_spec = AttentionSpec(
            self,
            "cross_attention",
            identifier,
            kwargs_given,
            "cross_attention_kwargs",
        )
        # Created (or adopted, for an instance) in `build()` when an encoder
        # sequence is given.
        self.cross_attention_layer = None
        self.cross_attention_dropout = self._dropout("cross_attention_dropout")
        self.cross_attention_norm = (
            None if parallel else self._layer_norm("cross_attention_norm")
        )

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        shape = self._check_sequence("decoder_sequence", decoder_sequence_shape)
        self.self_attention_layer = self._build_attention(
            self.attention_spec, "self_attention", shape, shape
        )
        if encoder_sequence_shape is not None:
            encoder_shape = self._check_sequence(
                "encoder_sequence", encoder_sequence_shape
            )
            self.cross_attention_layer = self._build_attention(
                self.cross_attention_spec,
                "cross_attention",
                shape,
                encoder_shape,
                seed_offset=4,
            )
            if self.cross_attention_norm is not None:
                self.cross_attention_norm.build(shape)
        self._build_common(shape)
        self.built = True

    @property
    def has_cross_attention(self):
        """Whether the block was built with an encoder sequence."""
        return self.cross_attention_layer is not None

    def compute_cross_attention_cache(self, encoder_sequence):
        """The cross-attention key/value cache of an encoded source.

        The keys and values of the source, projected once, for calls with
        `cross_attention_cache=...` (and no update index) at every decoding
        step.

        Args:
            encoder_sequence: tensor `(batch, source_len, encoder_dim)`.

        Returns:
            `(batch, 2, source_len, kv_heads, head_dim)`.
        """
        if not self.has_cross_attention:
            raise argument_error(
                self,
                "encoder_sequence",
                "needs a block with a cross-attention sub-layer (built with "
                "an encoder sequence)",
                "a decoder-only block",
            )
        layer = self._cached_attention_layer(
            self.cross_attention_layer, "cross_attention_cache"
        )
        return layer.project_cache(encoder_sequence)

    def _cached_attention_layer(self, layer, argument):
        if "cache" not in call_parameters(layer) or not hasattr(
            layer, "project_cache"
        ):
            raise argument_error(
                self,
                argument,
                "needs an attention layer built on `BaseAttention` (its call "
                "takes a key/value `cache`)",
                f"{type(layer).__name__}",
            )
        return layer

    def _check_encoder(
        self, encoder_sequence, *encoder_arguments, cross_cached=False
    ):
        if not self.built:
            return
        if cross_cached and not self.has_cross_attention:
            raise argument_error(
                self,
                "cross_attention_cache",
                "must not be given: the layer was built without an encoder "
                "sequence (decoder-only, no cross-attention sub-layer)",
                "a cross_attention_cache",
            )
        if cross_cached:
            return
        if encoder_sequence is None and self.has_cross_attention:
            raise argument_error(
                self,
                "encoder_sequence",
                "must be given: the layer was built with an encoder sequence "
                "(it has a cross-attention sub-layer)",
                "encoder_sequence=None",
            )
        if encoder_sequence is not None and not self.has_cross_attention:
            raise argument_error(
                self,
                "encoder_sequence",
                "must not be given: the layer was built without an encoder "
                "sequence (decoder-only, no cross-attention sub-layer); "
                "build it on its first call with the encoder sequence",
                f"encoder_sequence.shape={tuple(encoder_sequence.shape)}",
            )
        if encoder_sequence is None:
            for argument, value in encoder_arguments:
                if value is not None:
                    raise argument_error(
                        self,
                        argument,
                        "needs an `encoder_sequence`",
                        f"{argument} given without encoder_sequence",
                    )

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        cross_attention_cache_update_index=None,
    ):
        self._check_sequence("decoder_sequence", decoder_sequence.shape)
        static_cross = (
            cross_attention_cache is not None
            and cross_attention_cache_update_index is None
        )
        self._check_encoder(
            encoder_sequence,
            ("encoder_padding_mask", encoder_padding_mask),
            ("encoder_attention_mask", encoder_attention_mask),
            cross_cached=cross_attention_cache is not None,
        )
        self._check_cache_arguments(
            encoder_sequence,
            self_attention_cache,
            self_attention_cache_update_index,
            cross_attention_cache,
            cross_attention_cache_update_index,
        )
        decoder_keras_mask = get_keras_mask(decoder_sequence)
        decoder_padding = self._padding(
            "decoder_padding_mask", decoder_sequence, decoder_padding_mask
        )
        encoder_keras_mask = None
        encoder_padding = None
        if encoder_sequence is not None and self.has_cross_attention:
            self._check_sequence("encoder_sequence", encoder_sequence.shape)
            encoder_keras_mask = get_keras_mask(encoder_sequence)
            encoder_padding = self._padding(
                "encoder_padding_mask", encoder_sequence, encoder_padding_mask
            )
        elif encoder_padding_mask is not None:
            encoder_padding = ops.cast(encoder_padding_mask, "bool")
        scores = {}
        caches = {}

        def self_attention(x):
            if self_attention_cache is None:
                out, weights = self._attend(
                    self.self_attention_layer,
                    x,
                    x,
                    decoder_padding,
                    decoder_padding,
                    decoder_attention_mask,
                    use_causal_mask,
                    return_attention_scores,
                    training,
                )
            else:
                out, weights, caches["self"] = self._attend_cached(
                    self.self_attention_layer,
                    "self_attention_cache",
                    x,
                    x,
                    decoder_padding,
                    None,
                    decoder_attention_mask,
                    use_causal_mask,
                    return_attention_scores,
                    training,
                    self_attention_cache,
                    self_attention_cache_update_index,
                )
            scores["self"] = weights
            return out

        def cross_attention(x):
            if cross_attention_cache is None:
                out, weights = self._attend(
                    self.cross_attention_layer,
                    x,
                    encoder_sequence,
                    decoder_padding,
                    encoder_padding,
                    encoder_attention_mask,
                    False,
                    return_attention_scores,
                    training,
                )
            else:
                out, weights, caches["cross"] = self._attend_cached(
                    self.cross_attention_layer,
                    "cross_attention_cache",
                    x,
                    x if static_cross else encoder_sequence,
                    decoder_padding,
                    encoder_padding,
                    encoder_attention_mask,
                    False,
                    return_attention_scores,
                    training,
                    cross_attention_cache,
                    cross_attention_cache_update_index,
                )
            scores["cross"] = weights
            return out

        def feed_forward(x):
            return self.feed_forward_layer(x, training=training)

        sublayers = [
            (self.self_attention_norm, self_attention, self.self_attention_dropout)
        ]
        if self.has_cross_attention:
            sublayers.append(
                (
                    self.cross_attention_norm,
                    cross_attention,
                    self.cross_attention_dropout,
                )
            )
        sublayers.append(
            (self.feed_forward_norm, feed_forward, self.feed_forward_dropout)
        )
        outputs = self._residual(decoder_sequence, sublayers, training)
        self._restore_masks(
            [
                (decoder_sequence, decoder_keras_mask),
                (encoder_sequence, encoder_keras_mask),
            ]
        )
        set_keras_mask(outputs, decoder_keras_mask)
        results = [outputs]
        if return_attention_scores:
            results.append(scores["self"])
            if self.has_cross_attention:
                results.append(scores["cross"])
        results.extend(caches[k] for k in ("self", "cross") if k in caches)
        if len(results) == 1:
            return outputs
        return tuple(results)

    def _check_cache_arguments(
        self,
        encoder_sequence,
        self_cache,
        self_index,
        cross_cache,
        cross_index,
    ):
        for argument, cache, index in (
            ("self_attention_cache", self_cache, self_index),
            ("cross_attention_cache", cross_cache, cross_index),
        ):
            if cache is None and index is not None:
                raise argument_error(
                    self,
                    f"{argument}_update_index",
                    f"needs a `{argument}`",
                    f"{argument}=None, {argument}_update_index={index!r}",
                )
        if cross_index is not None and encoder_sequence is None:
            raise argument_error(
                self,
                "encoder_sequence",
                "must be given to update `cross_attention_cache` (with "
                "`cross_attention_cache_update_index`)",
                "encoder_sequence=None",
            )

    def _attend_cached(
        self,
        layer,
        argument,
        query,
        value,
        query_mask,
        value_mask,
        attention_mask,
        use_causal_mask,
        return_attention_scores,
        training,
        cache,
        cache_update_index,
    ):
        """Calls an attention layer with a cache: `(output, scores, cache)`."""
        layer = self._cached_attention_layer(layer, argument)
        if value is query:
            # Self-attention, or a cache used as it is (`value` not read):
            # the decoder's Keras mask covers the new positions, not the
            # cache, so it must not be taken for the keys'.
            set_keras_mask(value, None)
        kwargs = {
            "query_mask": query_mask,
            "value_mask": value_mask,
            "attention_mask": attention_mask,
            "use_causal_mask": use_causal_mask,
            "return_attention_scores": return_attention_scores,
            "cache": cache,
            "cache_update_index": cache_update_index,
        }
        if "training" in call_parameters(layer):
            kwargs["training"] = training
        result = layer(query, value, **kwargs)
        if return_attention_scores:
            return result
        out, cache = result
        return out, None, cache

    def compute_output_shape(
        self, decoder_sequence_shape, encoder_sequence_shape=None
    ):
        if encoder_sequence_shape is not None:
            self._check_sequence("encoder_sequence", encoder_sequence_shape)
        return self._check_sequence("decoder_sequence", decoder_sequence_shape)

    def compute_output_spec(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        cross_attention_cache_update_index=None,
    ):
        encoder_shape = None if encoder_sequence is None else encoder_sequence.shape
        output = keras.KerasTensor(
            self.compute_output_shape(decoder_sequence.shape, encoder_shape),
            dtype=self.compute_dtype,
        )
        if not self.built:
            self.build(decoder_sequence.shape, encoder_shape)
        self._check_encoder(
            encoder_sequence,
            ("encoder_padding_mask", encoder_padding_mask),
            ("encoder_attention_mask", encoder_attention_mask),
            cross_cached=cross_attention_cache is not None,
        )
        self._check_cache_arguments(
            encoder_sequence,
            self_attention_cache,
            self_attention_cache_update_index,
            cross_attention_cache,
            cross_attention_cache_update_index,
        )
        if use_causal_mask and self.built and self_attention_cache is None:
            self._check_causal_support(self.self_attention_layer, decoder_sequence)
        results = [output]
        if return_attention_scores:
            results.append(
                self._scores_spec(
                    self.self_attention_layer,
                    decoder_sequence,
                    decoder_sequence
                    if self_attention_cache is None
                    else _positions(self_attention_cache),
                )
            )
            if self.has_cross_attention:
                results.append(
                    self._scores_spec(
                        self.cross_attention_layer,
                        decoder_sequence,
                        encoder_sequence
                        if cross_attention_cache is None
                        else _positions(cross_attention_cache),
                    )
                )
        for cache in (self_attention_cache, cross_attention_cache):
            if cache is not None:
                results.append(
                    keras.KerasTensor(tuple(cache.shape), dtype=self.compute_dtype)
                )
        if len(results) == 1:
            return output
        return tuple(results)

    def get_config(self):
        config = super().get_config()
        if self._cross_like_attention:
            cross = None
            cross_kwargs = serialize_kwargs(self._cross_attention_kwargs)
        else:
            cross, cross_kwargs = self.cross_attention_spec.to_config(
                self, self.cross_attention_layer
            )
        config.update(
            {
                "cross_attention": cross,
                "cross_attention_kwargs": cross_kwargs,
            }
        )
        return config
