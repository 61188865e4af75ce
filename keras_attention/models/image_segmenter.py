"""`image_segmenter`: a transformer U-Net with any attention variant."""

import keras

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.models import common

BUILDER = "image_segmenter"
UPSAMPLINGS = ("bilinear", "transpose")


def _attention_gate(skip, gate, filters, name):
    """Additive attention gate (Oktay et al., 2018): the decoder features
    `gate` weigh each position of the encoder features `skip` by
    `sigmoid(psi(relu(W_s skip + W_g gate)))`."""
    s = keras.layers.Conv2D(filters, 1, name=f"{name}_skip_projection")(skip)
    g = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_gate_projection")(gate)
    a = keras.layers.Activation("relu", name=f"{name}_relu")(keras.layers.Add(name=f"{name}_add")([s, g]))
    a = keras.layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_coefficients")(a)
    return keras.layers.Multiply(name=f"{name}_gated")([skip, a])


def image_segmenter(
    image_size,
    num_classes,
    channels=3,
    patch_size=4,
    hidden_dim=64,
    num_layers=2,
    num_heads=4,
    intermediate_dim=None,
    decoder_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    attention_gates=True,
    upsampling="bilinear",
    normalization="layer",
    name=BUILDER,
):
    """A transformer U-Net for semantic segmentation: images in, per-pixel
    logits out.

    Rescaling to `[0, 1]` happens inside the model, so it takes raw `uint8`
    images `(batch, height, width, channels)` (what
    `keras_attention.data.segmentation_data` yields; the exported
    SavedModel's signature is `uint8` too) and returns logits `(batch,
    height, width, num_classes)`.

    Encoder: a convolutional stem keeps feature maps at full resolution and
    at every power-of-two stride below `patch_size` (a 3x3 convolution, then
    stride-2 3x3 convolutions; these are the skip connections), then a patch
    embedding (a stride-2 convolution) yields `(height / patch_size) *
    (width / patch_size)` tokens which, with learned position embeddings,
    go through `num_layers` transformer encoder blocks with the chosen
    attention variant (the global context).

    Decoder (U-Net): the tokens are reshaped to a map and, level by level,
    upsampled by 2, concatenated with the skip connection of that
    resolution (optionally weighed by an additive attention gate driven by
    the decoder features) and fused by a 3x3 convolution; a 1x1 convolution
    gives the per-pixel logits.

    Args:
        image_size: int or `(height, width)`, divisible by `patch_size`.
        num_classes: int >= 2.
        channels: int, image channels.
        patch_size: int, a power of two >= 2, the stride of the tokens.
        hidden_dim, num_layers, num_heads, intermediate_dim, dropout: the
            transformer's sizes (`intermediate_dim` defaults to
            `2 * hidden_dim`).
        decoder_dim: int, channels of the stem and decoder convolutions.
            Defaults to `max(hidden_dim // 2, num_classes)`.
        attention, attention_kwargs: the attention variant (see
            `keras_attention.layers.available()`).
        attention_gates: bool, attention gates on the skip connections
            (Attention U-Net).
        upsampling: `"bilinear"` (bilinear resize) or `"transpose"`
            (learned stride-2 transposed convolution).
        normalization: after each stem and decoder convolution, `"layer"`
            (default), `"group"` or `"batch"` (running statistics, which lag
            the weights after short training; see
            `common.conv_normalization`).
        name: model name.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> model = image_segmenter(64, 3, patch_size=4, hidden_dim=32,
    ...                         num_layers=1, num_heads=2, attention="linear")
    >>> model = compile_segmenter(model)
    >>> model.output_shape
    (None, 64, 64, 3)

    Reference:
        - [Chen et al., 2021, "TransUNet: Transformers Make Strong Encoders
          for Medical Image Segmentation"](https://arxiv.org/abs/2102.04306).
        - [Oktay et al., 2018, "Attention U-Net: Learning Where to Look for
          the Pancreas"](https://arxiv.org/abs/1804.03999) (attention gates).
        - [Ronneberger et al., 2015, "U-Net: Convolutional Networks for
          Biomedical Image Segmentation"](https://arxiv.org/abs/1505.04597).
    """
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in image_size)
    ):
        raise argument_error(
            BUILDER, "image_size", "must be a positive int or (height, width) positive ints",
            f"image_size={image_size!r}",
        )
    check_positive_int(BUILDER, "channels", channels)
    check_positive_int(BUILDER, "patch_size", patch_size)
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise argument_error(
            BUILDER, "patch_size", "must be a power of two >= 2", f"patch_size={patch_size}"
        )
    height, width = image_size
    if height % patch_size or width % patch_size:
        raise argument_error(
            BUILDER, "image_size", f"must be divisible by patch_size={patch_size}",
            f"image_size={tuple(image_size)!r}",
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise argument_error(BUILDER, "num_classes", "must be an int >= 2", f"num_classes={num_classes!r}")
    check_heads(BUILDER, hidden_dim, num_heads)
    check_positive_int(BUILDER, "intermediate_dim", intermediate_dim, allow_none=True)
    check_positive_int(BUILDER, "decoder_dim", decoder_dim, allow_none=True)
    check_rate(BUILDER, "dropout", dropout)
    check_choice(BUILDER, "upsampling", upsampling, UPSAMPLINGS)
    check_choice(BUILDER, "normalization", normalization, common.CONV_NORMALIZATIONS)
    check_choice(BUILDER, "attention_gates", attention_gates, (True, False))
    decoder_dim = decoder_dim or max(hidden_dim // 2, num_classes)
    levels = patch_size.bit_length() - 1  # stride-2 steps down to the tokens
    grid = (height // patch_size, width // patch_size)
    tokens = grid[0] * grid[1]

    images = keras.Input((height, width, channels), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1.0 / 255, name="rescaling")(images)
    skips = []  # skips[k] has stride 2**k
    for k in range(levels):
        x = common.conv_block(x, decoder_dim, 1 if k == 0 else 2, f"stem_{k}", normalization)
        skips.append(x)
    x = keras.layers.Conv2D(hidden_dim, 2, strides=2, name="patch_embedding")(x)
    x = keras.layers.Reshape((tokens, hidden_dim), name="patches")(x)
    x = common.encode_with_positions(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim or 2 * hidden_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
    )
    x = keras.layers.Reshape(grid + (hidden_dim,), name="feature_map")(x)
    x = keras.layers.Conv2D(decoder_dim, 1, name="decoder_projection")(x)
    for k in reversed(range(levels)):
        prefix = f"decoder_{k}"
        if upsampling == "bilinear":
            x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{prefix}_upsample")(x)
        else:
            x = keras.layers.Conv2DTranspose(decoder_dim, 2, strides=2, name=f"{prefix}_upsample")(x)
        skip = skips[k]
        if attention_gates:
            skip = _attention_gate(skip, x, max(1, decoder_dim // 2), f"{prefix}_attention_gate")
        x = keras.layers.Concatenate(name=f"{prefix}_concat")([x, skip])
        x = common.conv_block(x, decoder_dim, 1, prefix, normalization)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(images, logits, name=name)


def compile_segmenter(model, learning_rate=1e-3, ignore_class=None, **kwargs):
    """Compiles a per-pixel logits model: sparse cross-entropy, pixel
    accuracy, AdamW, `jit_compile=True`.

    Args:
        model: a model returning `(batch, H, W, num_classes)` logits (e.g.
            `image_segmenter`).
        learning_rate: peak learning rate.
        ignore_class: optional int, a label value left out of the loss
            (e.g. a "don't care" border class).
        **kwargs: passed to `keras_attention.models.compile_model`
            (`warmup_steps`, `decay_steps`, `weight_decay`, ...).

    Returns:
        The compiled model.

    Example:

    ```python
    model = image_segmenter(64, 3, hidden_dim=32, num_layers=1, num_heads=2)
    compile_segmenter(model, learning_rate=3e-4)
    ```
    """
    return common.compile_model(
        model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        learning_rate=learning_rate,
        **kwargs,
    )
