"""`image_classifier`: a ViT with any attention variant."""

import keras

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_positive_int
from keras_attention.layers.attention.cbam import CBAM
from keras_attention.layers.attention.channel_attention import ChannelAttention
from keras_attention.layers.embeddings.class_token import ClassToken
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.preprocessing.random_shift import RandomShift
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.models import common

BUILDER = "image_classifier"
POOLINGS = ("attention", "mean", "class_token")
CONV_ATTENTION = (None, "channel", "cbam")


def image_classifier(
    image_shape,
    num_classes,
    patch_size=4,
    hidden_dim=64,
    num_layers=4,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    conv_stem=True,
    conv_attention=None,
    pooling="attention",
    augmentation=False,
    stem_normalization="layer",
    name=BUILDER,
):
    """A vision transformer (ViT) image classifier: images in, logits out.

    Rescaling to `[0, 1]` and (optionally) augmentation happen inside the
    model, so it takes raw `uint8` images (what tfds yields; the exported
    SavedModel's signature is `uint8` too). An optional
    small convolutional stem (two 3x3 convolutions, optionally followed by
    `ChannelAttention` or `CBAM`) feeds a patch embedding (a convolution
    with kernel and stride `patch_size`) plus learned position embeddings,
    then `num_layers` transformer encoder blocks with the chosen attention,
    then pooling and a linear head.

    Args:
        image_shape: `(height, width, channels)`; height and width divisible
            by `patch_size`.
        num_classes: int >= 2.
        patch_size: int, patch side in pixels.
        hidden_dim, num_layers, num_heads, intermediate_dim, dropout: encoder
            sizes (`intermediate_dim` defaults to `2 * hidden_dim`).
        attention, attention_kwargs: the attention variant (see
            `keras_attention.layers.available()`).
        conv_stem: bool, the convolutional stem before patching (a stride-2
            and a stride-1 3x3 convolution; `patch_size` must then be even).
        conv_attention: `None`, `"channel"` (squeeze-and-excitation) or
            `"cbam"` in the stem.
        pooling: `"attention"`, `"mean"` or `"class_token"`.
        augmentation: bool, random shifts of up to 10% of the image side in
            training (`RandomShift`, which compiles with XLA).
        stem_normalization: the stem's normalization, `"layer"` (default),
            `"group"` or `"batch"` (see `common.conv_normalization`).
            `"batch"` keeps running statistics that lag the weights after
            short training: one epoch on mnist scored 0.590 in inference
            against 0.956 in training mode, where `"layer"` scored 0.963
            (`benchmarks/stem_normalization.py`).
        name: model name.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> from keras_attention.models import compile_classifier
    >>> model = image_classifier((28, 28, 1), 10, patch_size=4, hidden_dim=32,
    ...                          num_layers=1, num_heads=2, attention="linear")
    >>> model = compile_classifier(model)
    >>> model.output_shape
    (None, 10)

    Reference:
        - [Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"](
          https://arxiv.org/abs/2010.11929).
        - [Xiao et al., 2021, "Early Convolutions Help Transformers See
          Better"](https://arxiv.org/abs/2106.14881) (the conv stem).
    """
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in image_shape)
    ):
        raise argument_error(
            BUILDER, "image_shape", "must be (height, width, channels) positive ints",
            f"image_shape={image_shape!r}",
        )
    check_positive_int(BUILDER, "patch_size", patch_size)
    height, width, _ = image_shape
    if height % patch_size or width % patch_size:
        raise argument_error(
            BUILDER, "patch_size", f"must divide the image size {height}x{width}",
            f"patch_size={patch_size}",
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise argument_error(BUILDER, "num_classes", "must be an int >= 2", f"num_classes={num_classes!r}")
    check_heads(BUILDER, hidden_dim, num_heads)
    check_choice(BUILDER, "pooling", pooling, POOLINGS)
    check_choice(BUILDER, "conv_attention", conv_attention, CONV_ATTENTION)
    check_choice(BUILDER, "stem_normalization", stem_normalization, common.CONV_NORMALIZATIONS)
    if conv_stem and patch_size % 2:
        raise argument_error(
            BUILDER, "patch_size", "must be even with conv_stem=True (the stem halves the resolution)",
            f"patch_size={patch_size}",
        )
    if conv_attention is not None and not conv_stem:
        raise argument_error(
            BUILDER, "conv_attention", "needs conv_stem=True", f"conv_attention={conv_attention!r}"
        )

    images = keras.Input(tuple(image_shape), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1.0 / 255, name="rescaling")(images)
    if augmentation:
        x = RandomShift(max(1, round(0.1 * min(height, width))), name="random_shift")(x)
    patch_stride = patch_size
    if conv_stem:
        # The stem halves the resolution, so patches are `patch_size // 2`
        # stem pixels wide: `patch_size` image pixels either way.
        patch_stride = patch_size // 2
        for i, filters in enumerate((hidden_dim // 2, hidden_dim)):
            x = keras.layers.Conv2D(
                filters, 3, strides=2 - i, padding="same", use_bias=False, name=f"stem_conv_{i}"
            )(x)
            x = common.conv_normalization(stem_normalization, filters, f"stem_norm_{i}")(x)
            x = keras.layers.Activation("gelu", name=f"stem_gelu_{i}")(x)
        if conv_attention == "channel":
            x = ChannelAttention(reduction=4, name="stem_attention")(x)
        elif conv_attention == "cbam":
            x = CBAM(reduction=4, name="stem_attention")(x)
    x = keras.layers.Conv2D(hidden_dim, patch_stride, strides=patch_stride, name="patch_embedding")(x)
    patches = (height // patch_size) * (width // patch_size)
    x = keras.layers.Reshape((patches, hidden_dim), name="patches")(x)
    x = x + PositionEmbedding(patches, name="position_embedding")(x)
    if pooling == "class_token":
        x = ClassToken(name="class_token")(x)
        patches += 1
    x = Dropout(dropout, name="embedding_dropout")(x)
    x = common.encoder_stack(
        x,
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim or 2 * hidden_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
        sequence_length=patches,
    )
    logits = common.classification_head(
        x,
        pooling="first" if pooling == "class_token" else pooling,
        num_heads=num_heads,
        dropout=dropout,
        num_classes=num_classes,
    )
    return keras.Model(images, logits, name=name)
