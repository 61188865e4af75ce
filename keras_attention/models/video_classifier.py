"""`video_classifier`: a ViViT-style video transformer with any attention."""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention.spatiotemporal_attention import SpatioTemporalAttention
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.pooling.attention_pooling import AttentionPooling
from keras_attention.layers.pooling.masked_average_pooling import MaskedAveragePooling
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.models import common
from keras_attention.models.text_classifier import compile_classifier

BUILDER = "video_classifier"
MODES = ("factorized", "joint", "divided")
POOLINGS = ("attention", "mean")
INPUT_DTYPES = ("uint8", "float32")


def _check_sizes(argument, value, rank):
    """`value` (an int or a `rank`-tuple of positive ints) as a tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * rank
    if (
        not isinstance(value, (tuple, list))
        or len(value) != rank
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value)
    ):
        raise argument_error(
            BUILDER, argument, f"must be a positive int or a tuple of {rank} positive ints",
            f"{argument}={value!r}",
        )
    return tuple(value)


def _pool(x, pooling, num_heads, name):
    if pooling == "attention":
        return AttentionPooling(num_heads=num_heads, name=name)(x)
    return MaskedAveragePooling(name=name)(x)


def _spatiotemporal_blocks(x, *, mode, num_layers, num_heads, intermediate_dim, attention,
                           attention_kwargs, dropout):
    """Pre-norm residual blocks `x + SpatioTemporalAttention(norm(x))`, then
    `x + MLP(norm(x))`, on `(batch, T, N, hidden_dim)`."""
    hidden_dim = x.shape[-1]
    for i in range(num_layers):
        prefix = f"encoder_{i}"
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_attention_norm")(x)
        h = SpatioTemporalAttention(
            num_heads=num_heads,
            key_dim=hidden_dim // num_heads,
            mode=mode,
            attention=attention,
            attention_kwargs=attention_kwargs,
            name=f"{prefix}_attention",
        )(h)
        h = Dropout(dropout, name=f"{prefix}_attention_dropout")(h)
        x = keras.layers.Add(name=f"{prefix}_attention_residual")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_mlp_norm")(x)
        h = keras.layers.Dense(intermediate_dim, activation="gelu", name=f"{prefix}_mlp_in")(h)
        h = Dropout(dropout, name=f"{prefix}_mlp_hidden_dropout")(h)
        h = keras.layers.Dense(hidden_dim, name=f"{prefix}_mlp_out")(h)
        h = Dropout(dropout, name=f"{prefix}_mlp_dropout")(h)
        x = keras.layers.Add(name=f"{prefix}_mlp_residual")([x, h])
    return keras.layers.LayerNormalization(epsilon=1e-5, name="encoder_norm")(x)


def video_classifier(
    frames,
    image_size,
    num_classes,
    channels=3,
    tubelet_size=(2, 4, 4),
    hidden_dim=64,
    num_layers=2,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    mode="factorized",
    temporal_layers=None,
    temporal_attention=None,
    temporal_attention_kwargs=None,
    pooling="attention",
    input_dtype="uint8",
    rescale=1.0 / 255,
    name=BUILDER,
):
    """A video vision transformer (ViViT): clips in, class logits out.

    The model takes clips `(batch, frames, height, width, channels)`,
    `uint8` by default (what `keras_attention.data.video_classification_data`
    yields; the exported SavedModel's signature is then `uint8` too) and
    rescales them inside (multiplies by `rescale`). A tubelet embedding (a
    `Conv3D` with kernel and stride `tubelet_size`) turns the clip into
    `T = frames / t` frames of `N = (height / p) * (width / p)` tokens, which
    are encoded in one of three ways:

    - `mode="factorized"` (ViViT's factorised encoder, model 2): each frame's
      `N` tokens (plus learned spatial position embeddings) go through
      `num_layers` transformer blocks with the chosen `attention` (any
      registered variant), are pooled into one token per frame, and the `T`
      frame tokens (plus learned temporal position embeddings) go through
      `temporal_layers` more blocks (`temporal_attention`, by default the
      same variant). Cost `O(T N^2 + T^2)` per layer.
    - `mode="joint"`: `num_layers` pre-norm blocks of `SpatioTemporalAttention`
      over all `T * N` tokens (spatio-temporal position embeddings), each
      followed by an MLP: `O((T N)^2)`.
    - `mode="divided"`: the same blocks with TimeSformer's divided
      space-time attention (temporal, then spatial): `O(T N (T + N))`.

    The encoded tokens are pooled (`"attention"` or `"mean"`) into logits.

    Args:
        frames: int, frames per clip; divisible by the tubelet's frames.
        image_size: int or `(height, width)`; divisible by the tubelet's
            spatial size.
        num_classes: int >= 2.
        channels: int, channels per frame.
        tubelet_size: int or `(frames, height, width)` of one tubelet.
        hidden_dim, num_layers, num_heads, intermediate_dim, dropout: encoder
            sizes (`intermediate_dim` defaults to `2 * hidden_dim`).
        attention, attention_kwargs: the attention variant (see
            `keras_attention.layers.available()`); in `"joint"` and
            `"divided"` modes the inner variant of `SpatioTemporalAttention`
            (a registered name).
        mode: `"factorized"`, `"joint"` or `"divided"`.
        temporal_layers: int, blocks of the temporal encoder in
            `"factorized"` mode. Defaults to `num_layers`.
        temporal_attention, temporal_attention_kwargs: the temporal
            encoder's attention in `"factorized"` mode. Default to
            `attention` / `attention_kwargs`.
        pooling: `"attention"` (learned query) or `"mean"`, used both for
            the frame tokens in `"factorized"` mode and for the final
            pooling.
        input_dtype: `"uint8"` or `"float32"`, the input's dtype.
        rescale: float or `None`, the factor the inputs are multiplied by
            (`None`: no rescaling, for inputs already scaled).
        name: model name.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> model = video_classifier(8, 32, 10, tubelet_size=(2, 8, 8),
    ...                          hidden_dim=32, num_layers=1, num_heads=2,
    ...                          attention="linear")
    >>> model = compile_video_classifier(model)
    >>> model.output_shape
    (None, 10)

    Reference:
        - [Arnab et al., 2021, "ViViT: A Video Vision Transformer"](
          https://arxiv.org/abs/2103.15691).
        - [Bertasius et al., 2021, "Is Space-Time Attention All You Need
          for Video Understanding?"](https://arxiv.org/abs/2102.05095)
          (divided space-time attention).
    """
    check_positive_int(BUILDER, "frames", frames)
    height, width = _check_sizes("image_size", image_size, 2)
    check_positive_int(BUILDER, "channels", channels)
    tubelet = _check_sizes("tubelet_size", tubelet_size, 3)
    if frames % tubelet[0]:
        raise argument_error(
            BUILDER, "frames", f"must be divisible by the tubelet's frames tubelet_size[0]={tubelet[0]}",
            f"frames={frames}",
        )
    if height % tubelet[1] or width % tubelet[2]:
        raise argument_error(
            BUILDER, "image_size",
            f"must be divisible by the tubelet's spatial size {tubelet[1]}x{tubelet[2]}",
            f"image_size={image_size!r}",
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise argument_error(BUILDER, "num_classes", "must be an int >= 2", f"num_classes={num_classes!r}")
    check_heads(BUILDER, hidden_dim, num_heads)
    check_positive_int(BUILDER, "num_layers", num_layers)
    check_positive_int(BUILDER, "intermediate_dim", intermediate_dim, allow_none=True)
    check_rate(BUILDER, "dropout", dropout)
    check_choice(BUILDER, "mode", mode, MODES)
    check_choice(BUILDER, "pooling", pooling, POOLINGS)
    check_choice(BUILDER, "input_dtype", input_dtype, INPUT_DTYPES)
    if rescale is not None and (isinstance(rescale, bool) or not isinstance(rescale, (int, float))):
        raise argument_error(BUILDER, "rescale", "must be a float or None", f"rescale={rescale!r}")
    if mode != "factorized":
        for argument, value in (
            ("temporal_layers", temporal_layers),
            ("temporal_attention", temporal_attention),
            ("temporal_attention_kwargs", temporal_attention_kwargs),
        ):
            if value is not None:
                raise argument_error(
                    BUILDER, argument, "is only used with mode='factorized'",
                    f"{argument}={value!r} with mode={mode!r}",
                )
        if not isinstance(attention, str):
            raise argument_error(
                BUILDER, "attention",
                f"must be a registered attention name with mode={mode!r} (the inner "
                f"variant of SpatioTemporalAttention)",
                f"attention={attention!r}",
            )
    check_positive_int(BUILDER, "temporal_layers", temporal_layers, allow_none=True)
    intermediate_dim = intermediate_dim or 2 * hidden_dim
    steps = frames // tubelet[0]
    tokens = (height // tubelet[1]) * (width // tubelet[2])

    clips = keras.Input((frames, height, width, channels), dtype=input_dtype, name="video")
    # `Rescaling` also casts `uint8` clips to floats.
    x = keras.layers.Rescaling(1.0 if rescale is None else rescale, name="rescaling")(clips)
    x = keras.layers.Conv3D(hidden_dim, tubelet, strides=tubelet, name="tubelet_embedding")(x)
    x = keras.layers.Reshape((steps, tokens, hidden_dim), name="tubelets")(x)

    if mode == "factorized":
        # Spatial encoder: the N tokens of each of the T frames.
        x = ops.reshape(x, (-1, tokens, hidden_dim))
        x = x + PositionEmbedding(tokens, name="spatial_position_embedding")(x)
        x = Dropout(dropout, name="embedding_dropout")(x)
        x = common.encoder_stack(
            x,
            builder=BUILDER,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            attention=attention,
            attention_kwargs=attention_kwargs,
            dropout=dropout,
            sequence_length=tokens,
            name="spatial_encoder",
        )
        x = _pool(x, pooling, num_heads, "frame_pooling")
        # Temporal encoder: one token per frame.
        x = ops.reshape(x, (-1, steps, hidden_dim))
        x = x + PositionEmbedding(steps, name="temporal_position_embedding")(x)
        same = temporal_attention is None
        x = common.encoder_stack(
            x,
            builder=BUILDER,
            num_layers=temporal_layers or num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            attention=attention if same else temporal_attention,
            attention_kwargs=(
                attention_kwargs if same and temporal_attention_kwargs is None
                else temporal_attention_kwargs
            ),
            dropout=dropout,
            sequence_length=steps,
            name="temporal_encoder",
        )
    else:
        common.attention_arguments(BUILDER, attention, attention_kwargs, steps * tokens)
        x = keras.layers.Reshape((steps * tokens, hidden_dim), name="tokens")(x)
        x = x + PositionEmbedding(steps * tokens, name="position_embedding")(x)
        x = Dropout(dropout, name="embedding_dropout")(x)
        x = keras.layers.Reshape((steps, tokens, hidden_dim), name="frames")(x)
        x = _spatiotemporal_blocks(
            x,
            mode=mode,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_dim=intermediate_dim,
            attention=attention,
            attention_kwargs=attention_kwargs,
            dropout=dropout,
        )
        x = keras.layers.Reshape((steps * tokens, hidden_dim), name="encoded")(x)
    x = _pool(x, pooling, num_heads, "pooling")
    x = Dropout(dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(clips, logits, name=name)


def compile_video_classifier(model, learning_rate=1e-3, **kwargs):
    """Compiles a video classifier: sparse cross-entropy from logits,
    accuracy, AdamW, `jit_compile=True`.

    Args:
        model: a model returning class logits (e.g. `video_classifier`).
        learning_rate: peak learning rate.
        **kwargs: passed to `keras_attention.models.compile_model`
            (`warmup_steps`, `decay_steps`, `weight_decay`, ...).

    Returns:
        The compiled model.

    Example:

    ```python
    model = video_classifier(8, 32, 10, tubelet_size=(2, 8, 8),
                             hidden_dim=32, num_layers=1, num_heads=2)
    compile_video_classifier(model, warmup_steps=100, decay_steps=1000)
    ```
    """
    return compile_classifier(model, learning_rate=learning_rate, **kwargs)
