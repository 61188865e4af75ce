"""`multimodal_classifier`: an image and a text -> class logits, fused by attention."""

import keras

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_choice
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_image_size
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.attention import registry
from keras_attention.layers.attention.multimodal_attention import MultiModalAttention
from keras_attention.layers.embeddings.position_embedding import PositionEmbedding
from keras_attention.layers.pooling.attention_pooling import AttentionPooling
from keras_attention.layers.pooling.masked_average_pooling import MaskedAveragePooling
from keras_attention.layers.regularization.dropout import Dropout
from keras_attention.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)
from keras_attention.models import common

BUILDER = "multimodal_classifier"
FUSIONS = ("cross", "co", "merged")
POOLINGS = ("attention", "mean")


def multimodal_classifier(
    image_size,
    sequence_length,
    vocabulary_size,
    num_classes,
    channels=3,
    patch_size=4,
    hidden_dim=64,
    num_layers=2,
    num_heads=4,
    intermediate_dim=None,
    fusion="cross",
    num_fusion_layers=1,
    attention="multi_head",
    attention_kwargs=None,
    dropout=0.1,
    pooling="attention",
    name=BUILDER,
):
    """Classifies an (image, text) pair: two encoders fused by attention.

    The image branch is a ViT: `uint8` pixels rescaled to `[0, 1]` inside
    the model, a patch embedding (a convolution with kernel and stride
    `patch_size`), learned positions and `num_layers` transformer blocks.
    The text branch embeds token ids with learned positions (id 0 is
    padding and is masked everywhere) and encodes them with `num_layers`
    blocks. Then `num_fusion_layers` pre-norm fusion blocks, each a
    `MultiModalAttention` (the text is stream `a`, the image patches stream
    `b`) added to its streams as residuals, then a feed-forward network per
    updated stream, let the modalities read each other:

    - `fusion="cross"`: the text reads the image (the image stream is not
      updated);
    - `fusion="co"` (ViLBERT): both read each other, each with its own
      weights;
    - `fusion="merged"` (VisualBERT): joint self-attention over the text
      tokens and the patches together.

    Both streams are pooled (mask-aware: padding never contributes),
    concatenated and classified by a linear layer. Every attention (both
    encoders and the fusion) is the `attention` variant.

    Args:
        image_size: int or `(height, width)`, divisible by `patch_size`.
        sequence_length: int, the fixed number of text tokens.
        vocabulary_size: int, the number of token ids (id 0 = padding).
        num_classes: int >= 2.
        channels: int, image channels.
        patch_size: int, patch side in pixels.
        hidden_dim: int, the width of both streams.
        num_layers: int, encoder blocks per modality.
        num_heads: int, attention heads (must divide `hidden_dim`).
        intermediate_dim: int, feed-forward width. Defaults to `2 *
            hidden_dim`.
        fusion: `"cross"`, `"co"` or `"merged"` (see above).
        num_fusion_layers: int, fusion blocks.
        attention: a registered attention variant name (see
            `keras_attention.layers.available()`).
        attention_kwargs: dict, extra constructor arguments of the variant
            (length-dependent ones default from each attention's length).
        dropout: float in `[0, 1)`.
        pooling: `"attention"` (learned-query attention pooling) or
            `"mean"` (masked average), for each stream.
        name: model name.

    Returns:
        An uncompiled functional `keras.Model` taking the dict
        `{"image": uint8 (batch, height, width, channels), "tokens": int32
        (batch, sequence_length)}` and returning `(batch, num_classes)`
        logits.

    Example:

    >>> from keras_attention.models import compile_classifier
    >>> model = multimodal_classifier(32, 16, 1000, 5, patch_size=4,
    ...                               hidden_dim=32, num_layers=1, num_heads=2,
    ...                               fusion="co", attention="linear")
    >>> model = compile_classifier(model)
    >>> model.output_shape
    (None, 5)
    >>> # model.fit({"image": images, "tokens": tokens}, labels)

    Reference:
        - [Lu et al., 2019, "ViLBERT"](https://arxiv.org/abs/1908.02265)
          (co-attention).
        - [Li et al., 2019, "VisualBERT"](https://arxiv.org/abs/1908.03557)
          (single-stream fusion).
        - [Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words"](
          https://arxiv.org/abs/2010.11929) (the image encoder).
    """
    height, width = check_image_size(BUILDER, image_size)
    check_positive_int(BUILDER, "channels", channels)
    check_positive_int(BUILDER, "patch_size", patch_size)
    if height % patch_size or width % patch_size:
        raise argument_error(
            BUILDER, "patch_size", f"must divide the image size {height}x{width}", f"patch_size={patch_size}"
        )
    check_positive_int(BUILDER, "sequence_length", sequence_length)
    check_positive_int(BUILDER, "vocabulary_size", vocabulary_size)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise argument_error(BUILDER, "num_classes", "must be an int >= 2", f"num_classes={num_classes!r}")
    check_heads(BUILDER, hidden_dim, num_heads)
    check_positive_int(BUILDER, "num_layers", num_layers)
    check_positive_int(BUILDER, "num_fusion_layers", num_fusion_layers)
    check_choice(BUILDER, "fusion", fusion, FUSIONS)
    check_choice(BUILDER, "pooling", pooling, POOLINGS)
    check_rate(BUILDER, "dropout", dropout)
    if not isinstance(attention, str) or registry.get_class(attention) is None:
        raise argument_error(
            BUILDER,
            "attention",
            f"must be a registered attention variant, one of {registry.available()}",
            f"attention={attention!r}",
        )
    common.attention_arguments(BUILDER, attention, attention_kwargs, None)
    intermediate_dim = intermediate_dim or 2 * hidden_dim
    check_positive_int(BUILDER, "intermediate_dim", intermediate_dim)
    patches = (height // patch_size) * (width // patch_size)
    encoder = dict(
        builder=BUILDER,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
    )

    images = keras.Input((height, width, channels), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescaling")(images)
    x = keras.layers.Conv2D(hidden_dim, patch_size, strides=patch_size, name="patch_embedding")(x)
    x = keras.layers.Reshape((patches, hidden_dim), name="patches")(x)
    x = x + PositionEmbedding(patches, name="patch_position_embedding")(x)
    x = Dropout(dropout, name="image_embedding_dropout")(x)
    image = common.encoder_stack(x, sequence_length=patches, name="image_encoder", **encoder)

    tokens = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = TokenAndPositionEmbedding(
        vocabulary_size, sequence_length, hidden_dim, mask_zero=True, name="token_embedding"
    )(tokens)
    x = Dropout(dropout, name="text_embedding_dropout")(x)
    text = common.encoder_stack(x, sequence_length=sequence_length, name="text_encoder", **encoder)

    for i in range(num_fusion_layers):
        prefix = f"fusion_{i}"
        text_in = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_text_norm")(text)
        image_in = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_image_norm")(image)
        updates = MultiModalAttention(
            num_heads=num_heads,
            key_dim=hidden_dim // num_heads,
            mode=fusion,
            attention=attention,
            attention_kwargs=attention_kwargs,
            name=f"{prefix}_attention",
        )(text_in, image_in)
        if fusion == "cross":
            updates = (updates, None)
        streams = {"text": text, "image": image}
        for stream, update in zip(("text", "image"), updates):
            if update is None:
                continue
            x = _residual(streams[stream], update, dropout, f"{prefix}_{stream}_attention")
            h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{prefix}_{stream}_ffn_norm")(x)
            h = keras.layers.Dense(intermediate_dim, activation="gelu", name=f"{prefix}_{stream}_ffn_in")(h)
            h = Dropout(dropout, name=f"{prefix}_{stream}_ffn_hidden_dropout")(h)
            h = keras.layers.Dense(hidden_dim, name=f"{prefix}_{stream}_ffn_out")(h)
            streams[stream] = _residual(x, h, dropout, f"{prefix}_{stream}_ffn")
        text, image = streams["text"], streams["image"]

    pooled = []
    for stream, x in (("text", text), ("image", image)):
        x = keras.layers.LayerNormalization(epsilon=1e-5, name=f"{stream}_norm")(x)
        if pooling == "attention":
            x = AttentionPooling(num_heads=num_heads, name=f"{stream}_pooling")(x)
        else:
            x = MaskedAveragePooling(name=f"{stream}_pooling")(x)
        pooled.append(x)
    x = keras.layers.Concatenate(name="fused")(pooled)
    x = Dropout(dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model({"image": images, "tokens": tokens}, logits, name=name)


def _residual(x, update, dropout, name):
    update = Dropout(dropout, name=f"{name}_dropout")(update)
    # `Add` keeps the stream's padding mask.
    return keras.layers.Add(name=f"{name}_residual")([x, update])
