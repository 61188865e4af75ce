"""What every model builder shares.

- `check_builder_arguments`: the argument checks with the builder's name in
  the message.
- `attention_arguments`: resolves `attention=` / `attention_kwargs=` for a
  known sequence length, filling in what a variant needs and cannot guess
  (`max_length` for `"low_rank"`, `window_size` for `"regional"`), and
  rejecting unknown names with the list of valid ones.
- `embed_tokens`: token + position embeddings followed by dropout.
- `encoder_stack`: `num_layers` `TransformerEncoder` blocks taking any
  registered attention.
- `encode_with_positions`: learned positions and dropout added to embedded
  frames or patches, then `encoder_stack`.
- `classification_head`: mask-aware pooling, dropout and the logits layer
  that every classifier ends with.
- `compile_model`: AdamW with warm-up and cosine decay, gradient clipping
  and `jit_compile=True`.
"""

import keras

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention import registry
from keras_attention.layers.pooling.attention_pooling import AttentionPooling
from keras_attention.layers.pooling.masked_average_pooling import MaskedAveragePooling
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)
from keras_attention.layers.transformer.transformer_encoder import TransformerEncoder




def attention_arguments(builder, attention, attention_kwargs, sequence_length):
    """Resolves a builder's `attention` / `attention_kwargs`.

    Args:
        builder: str, the builder's name (for error messages).
        attention: a registered variant name (see
            `keras_attention.layers.available()`), or anything
            `TransformerEncoder(attention=...)` accepts (class, config dict,
            layer instance).
        attention_kwargs: dict or `None`, constructor arguments.
        sequence_length: int or `None`, the length the attention will see;
            used to default length-dependent arguments.

    Returns:
        `(attention, attention_kwargs)` to pass to a transformer block.
    """
    if attention_kwargs is not None and not isinstance(attention_kwargs, dict):
        raise argument_error(
            builder,
            "attention_kwargs",
            "must be a dict or None",
            f"attention_kwargs={attention_kwargs!r}",
        )
    kwargs = dict(attention_kwargs or {})
    if isinstance(attention, str):
        if registry.get_class(attention) is None:
            raise argument_error(
                builder,
                "attention",
                f"must be a registered attention variant, one of "
                f"{registry.available()}",
                f"attention={attention!r}",
            )
        kwargs.update(registry.length_defaults(attention, sequence_length, kwargs))
    return attention, kwargs or None


CONV_NORMALIZATIONS = ("batch", "group", "layer")


def conv_normalization(kind, filters, name):
    """The normalization after a convolution of `filters` channels.

    `"batch"`: `BatchNormalization` (running statistics: inference uses
    moving averages, which lag the weights when training is short);
    `"group"`: `GroupNormalization` with up to 8 groups; `"layer"`:
    `LayerNormalization` over the channels of each position. The last two
    keep no running statistics, so inference computes what training does.
    """
    if kind == "batch":
        return keras.layers.BatchNormalization(name=name)
    if kind == "group":
        groups = max(g for g in range(1, min(8, filters) + 1) if filters % g == 0)
        return keras.layers.GroupNormalization(groups=groups, name=name)
    return keras.layers.LayerNormalization(axis=-1, name=name)


def conv_block(x, filters, strides, name, normalization="layer"):
    """A 3x3 `Conv2D` (no bias, `"same"` padding) of `filters` channels at
    `strides`, then `conv_normalization(normalization)` and GELU; the
    layers are named `{name}_conv`, `{name}_norm` and `{name}_gelu`."""
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = conv_normalization(normalization, filters, f"{name}_norm")(x)
    return keras.layers.Activation("gelu", name=f"{name}_gelu")(x)


def encoder_stack(
    x,
    *,
    builder,
    num_layers,
    num_heads,
    intermediate_dim,
    attention,
    attention_kwargs,
    dropout,
    sequence_length,
    norm_first=True,
    activation="gelu",
    use_causal_mask=False,
    name="encoder",
):
    """Applies `num_layers` transformer encoder blocks to `x`.

    Args:
        x: `(batch, T, hidden_dim)` symbolic tensor (its Keras mask, if any,
            is honoured).
        builder: str, the builder's name (for error messages).
        num_layers, num_heads, intermediate_dim, dropout: block sizes.
        attention, attention_kwargs: the attention variant (see
            `attention_arguments`).
        sequence_length: int or `None`, `T` when static.
        norm_first: bool, pre-norm blocks (a final `LayerNormalization` is
            added).
        activation: feed-forward activation.
        use_causal_mask: bool, causal self-attention.
        name: prefix of the layer names.

    Returns:
        The encoded `(batch, T, hidden_dim)` tensor.
    """
    check_positive_int(builder, "num_layers", num_layers)
    check_positive_int(builder, "intermediate_dim", intermediate_dim)
    check_rate(builder, "dropout", dropout)
    attention, attention_kwargs = attention_arguments(
        builder, attention, attention_kwargs, sequence_length
    )
    for i in range(num_layers):
        block = TransformerEncoder(
            intermediate_dim=intermediate_dim,
            num_heads=num_heads,
            attention=attention,
            attention_kwargs=attention_kwargs,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            name=f"{name}_{i}",
        )
        x = block(x, use_causal_mask=use_causal_mask)
    if norm_first:
        x = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{name}_norm")(x)
    return x


def encode_with_positions(
    x,
    *,
    builder,
    num_layers,
    num_heads,
    intermediate_dim,
    attention,
    attention_kwargs,
    dropout,
):
    """Learned positions + dropout on embedded frames or patches, then the encoder.

    Adds a `PositionEmbedding` (layer `"position_embedding"`) over the
    static sequence length, applies `Dropout` (`"embedding_dropout"`), and
    encodes with `encoder_stack` (pre-norm blocks `"encoder_<i>"`).

    Args:
        x: `(batch, T, hidden_dim)` symbolic tensor with a static `T`.
        builder, num_layers, num_heads, intermediate_dim, attention,
            attention_kwargs, dropout: see `encoder_stack`.

    Returns:
        The encoded `(batch, T, hidden_dim)` tensor.
    """
    length = x.shape[1]
    x = x + PositionEmbedding(length, name="position_embedding")(x)
    x = Dropout(dropout, name="embedding_dropout")(x)
    return encoder_stack(
        x,
        builder=builder,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
        sequence_length=length,
    )


def embed_tokens(
    tokens,
    *,
    vocabulary_size,
    sequence_length,
    hidden_dim,
    dropout,
    position,
    mask_zero=True,
    name="embedding",
    dropout_name="embedding_dropout",
):
    """Token + position embeddings of `(batch, T)` ids, then dropout.

    With `mask_zero=True` the result carries the padding mask of id 0.
    """
    x = TokenAndPositionEmbedding(
        vocabulary_size,
        sequence_length,
        hidden_dim,
        mask_zero=mask_zero,
        position=position,
        name=name,
    )(tokens)
    return Dropout(dropout, name=dropout_name)(x)


def pool_sequence(x, pooling, num_heads):
    """Mask-aware pooling of `(batch, T, dim)` to `(batch, dim)`.

    `"attention"` (learned-query `AttentionPooling`), `"mean"`
    (`MaskedAveragePooling`, zeros for all-padding rows) or `"first"` (the
    first position, e.g. a class token).
    """
    if pooling == "attention":
        return AttentionPooling(num_heads=num_heads, name="pooling")(x)
    if pooling == "mean":
        return MaskedAveragePooling(name="pooling")(x)
    return x[:, 0]


def classification_head(x, *, pooling, num_heads, dropout, num_classes):
    """Pools encoded `(batch, T, dim)` features and returns class logits."""
    x = pool_sequence(x, pooling, num_heads)
    x = Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


def compile_model(
    model,
    loss,
    metrics=None,
    learning_rate=1e-3,
    weight_decay=0.01,
    warmup_steps=0,
    decay_steps=None,
    clipnorm=1.0,
    jit_compile=True,
    ema_momentum=None,
    **kwargs,
):
    """Compiles `model` with AdamW, optional warm-up + cosine decay, XLA.

    Args:
        model: the `keras.Model`.
        loss: the loss (or dict/list of losses).
        metrics: metrics, as `Model.compile` takes them.
        learning_rate: float, the peak learning rate.
        weight_decay: float, AdamW's decoupled weight decay.
        warmup_steps: int, linear warm-up steps.
        decay_steps: int or `None`; with an int, cosine decay to zero over
            that many steps after the warm-up.
        clipnorm: float or `None`, global gradient-norm clipping.
        jit_compile: bool, XLA compilation (explicit: Keras' `"auto"` means
            no XLA on CPU). Under a `tf.distribute` strategy where Keras
            cannot compile the cross-replica step with XLA (several
            mirrored devices, multi-worker), it is turned off with a warning
            (`keras_attention.distribute.resolve_jit_compile`). Under
            several replicas the optimizer is
            `keras_attention.distribute.CrossReplicaAdamW`, which clips the
            all-reduced gradient (Keras clips each replica's part).
        ema_momentum: float in `(0, 1)` or `None`; with a float, the
            optimizer keeps an exponential moving average of the weights
            and `fit` ends with the averaged weights (Keras'
            `use_ema=True`), which smooths the last noisy steps.
        **kwargs: passed to `Model.compile`.

    Returns:
        The compiled model.
    """
    schedule = learning_rate
    if decay_steps:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate,
            decay_steps,
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    if ema_momentum is not None and not (
        isinstance(ema_momentum, float) and 0.0 < ema_momentum < 1.0
    ):
        raise argument_error("compile_model", "ema_momentum", "must be a float in (0, 1) or None", f"ema_momentum={ema_momentum!r}")
    optimizer_class = keras.optimizers.AdamW
    strategy = getattr(model, "distribute_strategy", None)
    if keras.backend.backend() == "tensorflow":
        from keras_attention import distribute

        if getattr(strategy, "num_replicas_in_sync", 1) > 1:
            optimizer_class = distribute.CrossReplicaAdamW
        jit_compile = distribute.resolve_jit_compile(jit_compile, strategy)
    optimizer = optimizer_class(
        learning_rate=schedule,
        weight_decay=weight_decay,
        clipnorm=clipnorm,
        use_ema=ema_momentum is not None,
        ema_momentum=ema_momentum or 0.99,
    )
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile,
        **kwargs,
    )
    return model
