"""`object_detector`: a DETR-style set-prediction detector with any attention."""

import keras
import numpy as np

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_heads
from keras_attention.arguments import check_image_size
from keras_attention.arguments import check_int
from keras_attention.arguments import check_positive_int
from keras_attention.arguments import check_rate
from keras_attention.layers.embeddings.learned_queries import LearnedQueries
from keras_attention.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attention.models import common
from keras_attention.models.boxes import center_to_corners
from keras_attention.models.mean_average_precision import COCO_THRESHOLDS
from keras_attention.models.mean_average_precision import mean_average_precision
from keras_attention.models.set_prediction_loss import SetPredictionLoss

BUILDER = "object_detector"


def object_detector(
    image_size,
    num_classes,
    channels=1,
    num_queries=16,
    patch_size=8,
    hidden_dim=128,
    num_encoder_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    intermediate_dim=None,
    dropout=0.1,
    attention="multi_head",
    attention_kwargs=None,
    name=BUILDER,
):
    """A DETR-style detector: images in, a set of `num_queries` detections out.

    Backbone: a convolutional stem of `log2(patch_size)` levels, each a
    stride-2 3x3 convolution and a 3x3 convolution (layer-normalised,
    GELU; channels doubling up to `hidden_dim`), gives one token per
    `patch_size x patch_size` cell. Encoder: learned positions and
    `num_encoder_layers` pre-norm transformer blocks with the chosen
    attention over the cells. Decoder: `num_queries` learned object queries
    (`LearnedQueries`) go through `num_decoder_layers` pre-norm
    `TransformerDecoder` blocks (self-attention among the queries, not
    causal, and cross-attention to the encoded cells, both with the chosen
    attention). Heads, shared by all queries: class logits over
    `num_classes + 1` (the last is "no object") and a 3-layer MLP giving
    the box `(cx, cy, w, h)` as image fractions (sigmoid).

    The output packs both, `(batch, num_queries, num_classes + 5)` in
    float32: train with `SetPredictionLoss` (`compile_object_detector`),
    read detections with `detect`, score with `evaluate_detector`.

    Args:
        image_size: int or `(height, width)`, divisible by `patch_size`.
        num_classes: int >= 1, object classes (without "no object").
        channels: int, image channels. Images are floats in `[0, 1]`.
        num_queries: int, the most objects the model can find in one image
            (at least the most objects an image holds).
        patch_size: int, a power of two >= 2, the stride of the encoder's
            cells.
        hidden_dim, num_heads, intermediate_dim, dropout: the transformer's
            sizes (`intermediate_dim` defaults to `2 * hidden_dim`).
        num_encoder_layers, num_decoder_layers: positive ints.
        attention, attention_kwargs: the attention variant of the encoder
            and of the decoder's self- and cross-attention (see
            `keras_attention.layers.available()`).
        name: model name.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:

    >>> model = object_detector(64, num_classes=10, num_queries=8, hidden_dim=64)
    >>> model = compile_object_detector(model)
    >>> model.output_shape
    (None, 8, 15)
    >>> # model.fit(images, pack_detection_targets(boxes, labels), epochs=10)
    >>> # found = detect(model, images)  # boxes, scores, labels per image

    Reference:
        - [Carion et al., 2020, "End-to-End Object Detection with
          Transformers"](https://arxiv.org/abs/2005.12872).
    """
    height, width = check_image_size(BUILDER, image_size)
    check_positive_int(BUILDER, "num_classes", num_classes)
    check_positive_int(BUILDER, "channels", channels)
    check_positive_int(BUILDER, "num_queries", num_queries)
    check_positive_int(BUILDER, "patch_size", patch_size)
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise argument_error(BUILDER, "patch_size", "must be a power of two >= 2", f"patch_size={patch_size}")
    if height % patch_size or width % patch_size:
        raise argument_error(
            BUILDER, "image_size", f"must be divisible by patch_size={patch_size}", f"image_size={(height, width)!r}"
        )
    check_heads(BUILDER, hidden_dim, num_heads)
    check_positive_int(BUILDER, "num_encoder_layers", num_encoder_layers)
    check_positive_int(BUILDER, "num_decoder_layers", num_decoder_layers)
    check_positive_int(BUILDER, "intermediate_dim", intermediate_dim, allow_none=True)
    check_rate(BUILDER, "dropout", dropout)
    intermediate_dim = intermediate_dim or 2 * hidden_dim
    levels = patch_size.bit_length() - 1
    grid = (height // patch_size, width // patch_size)

    images = keras.Input((height, width, channels), name="images")
    x = images
    for k in range(levels):
        filters = max(16, hidden_dim // 2 ** (levels - 1 - k))
        x = common.conv_block(x, filters, 2, f"stem_{k}_down")
        x = common.conv_block(x, filters, 1, f"stem_{k}")
    x = keras.layers.Dense(hidden_dim, name="cell_projection")(x)
    x = keras.layers.Reshape((grid[0] * grid[1], hidden_dim), name="cells")(x)
    memory = common.encode_with_positions(
        x,
        builder=BUILDER,
        num_layers=num_encoder_layers,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        attention=attention,
        attention_kwargs=attention_kwargs,
        dropout=dropout,
    )
    attention, attention_kwargs = common.attention_arguments(
        BUILDER, attention, attention_kwargs, grid[0] * grid[1]
    )
    y = LearnedQueries(num_queries, name="object_queries")(memory)
    for i in range(num_decoder_layers):
        y = TransformerDecoder(
            intermediate_dim=intermediate_dim,
            num_heads=num_heads,
            attention=attention,
            attention_kwargs=attention_kwargs,
            dropout=dropout,
            activation="gelu",
            norm_first=True,
            name=f"decoder_{i}",
        )(y, memory, use_causal_mask=False)
    y = keras.layers.LayerNormalization(epsilon=1e-5, name="decoder_norm")(y)
    logits = keras.layers.Dense(num_classes + 1, dtype="float32", name="class_logits")(y)
    b = keras.layers.Dense(hidden_dim, activation="relu", name="box_hidden_0")(y)
    b = keras.layers.Dense(hidden_dim, activation="relu", name="box_hidden_1")(b)
    b = keras.layers.Dense(4, activation="sigmoid", dtype="float32", name="boxes")(b)
    outputs = keras.layers.Concatenate(dtype="float32", name="detections")([logits, b])
    return keras.Model(images, outputs, name=name)


def compile_object_detector(
    model, learning_rate=1e-4, weight_decay=1e-4, no_object_weight=0.1, **kwargs
):
    """Compiles an `object_detector` with `SetPredictionLoss` (AdamW,
    gradient clipping at 0.1 as in DETR, optional warm-up and cosine decay,
    XLA).

    Args:
        model: the model.
        learning_rate, weight_decay: AdamW's.
        no_object_weight: see `SetPredictionLoss`.
        **kwargs: passed to `compile_model` (`warmup_steps`, `decay_steps`,
            `clipnorm`, ...).

    Returns:
        The compiled model.
    """
    kwargs.setdefault("clipnorm", 0.1)
    return common.compile_model(
        model,
        loss=SetPredictionLoss(no_object_weight=no_object_weight),
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        **kwargs,
    )


def _detections(outputs, score_threshold):
    """NumPy `(batch, Q, C + 5)` outputs -> one detection dict per image."""
    logits, boxes = outputs[..., :-4], outputs[..., -4:]
    logits = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    scores = probabilities[..., :-1].max(axis=-1)
    labels = probabilities[..., :-1].argmax(axis=-1)
    corners = np.asarray(center_to_corners(boxes))
    found = []
    for i in range(outputs.shape[0]):
        keep = scores[i] >= score_threshold
        found.append(
            {
                "boxes": np.clip(corners[i][keep], 0.0, 1.0),
                "scores": scores[i][keep],
                "labels": labels[i][keep].astype(np.int64),
            }
        )
    return found


def detect(model, images, score_threshold=0.0, batch_size=64):
    """Runs a detector and reads its detections.

    Each query gives one detection: its most probable object class (the
    "no object" class left out), that class's probability as the score,
    and its box. No non-maximum suppression is needed: the set loss
    trains the queries not to duplicate each other.

    Args:
        model: an `object_detector` (or a model with its output layout).
        images: float `(batch, height, width, channels)` in `[0, 1]`.
        score_threshold: float in `[0, 1]`, detections scoring below it
            are dropped.
        batch_size: int, images per forward pass.

    Returns:
        A list with one dict per image: `"boxes"` `(K, 4)` corner boxes
        `(x0, y0, x1, y1)` as image fractions, `"scores"` `(K,)`,
        `"labels"` `(K,)` ints; the layout `mean_average_precision` reads.

    Example:

    ```python
    found = detect(model, images, score_threshold=0.5)
    found[0]["boxes"] * 64  # pixels of a 64 x 64 image
    ```
    """
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) or not (
        0.0 <= score_threshold <= 1.0
    ):
        raise argument_error("detect", "score_threshold", "must be a number in [0, 1]", f"score_threshold={score_threshold!r}")
    check_positive_int("detect", "batch_size", batch_size)
    outputs = np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float64)
    if outputs.ndim != 3 or outputs.shape[-1] < 6:
        raise argument_error(
            "detect", "model", "must return (batch, queries, num_classes + 5) detections",
            f"outputs of shape {outputs.shape}",
        )
    return _detections(outputs, score_threshold)


def _ground_truths(targets):
    """Targets (a dict of boxes and labels, or the packed `(batch, M, 5)`
    layout) -> one dict of corner boxes and labels per image."""
    if isinstance(targets, dict):
        boxes, labels = np.asarray(targets["boxes"]), np.asarray(targets["labels"])
    else:
        targets = np.asarray(targets)
        boxes, labels = targets[..., :4], np.round(targets[..., 4])
    corners = np.asarray(center_to_corners(boxes))
    truths = []
    for i in range(boxes.shape[0]):
        keep = labels[i] >= 0
        truths.append({"boxes": corners[i][keep], "labels": labels[i][keep].astype(np.int64)})
    return truths


def evaluate_detector(model, dataset, num_classes, score_threshold=0.0):
    """mAP of a detector on a dataset.

    Args:
        model: an `object_detector`.
        dataset: iterable of `(images, targets)` batches; targets either
            `{"boxes": (batch, M, 4) center boxes, "labels": (batch, M), -1
            padding}` (what `mnist_detection_data` yields) or the packed
            `(batch, M, 5)` layout.
        num_classes: int, object classes.
        score_threshold: see `detect`.

    Returns:
        A dict: `"map_50"` (mAP at IoU 0.5), `"map_50_95"` (COCO's
        mAP@[.5:.95]) and `"images"`, the number of images scored.

    Example:

    ```python
    scores = evaluate_detector(model, data.test, num_classes=10)
    print(f"mAP@0.5 {scores['map_50']:.3f}")
    ```
    """
    check_int("evaluate_detector", "num_classes", num_classes, 1)
    found, truths = [], []
    for images, targets in dataset:
        found.extend(detect(model, images, score_threshold=score_threshold))
        truths.extend(_ground_truths(targets))
    if not truths:
        raise argument_error("evaluate_detector", "dataset", "must hold at least one batch", "an empty dataset")
    result = mean_average_precision(found, truths, num_classes, COCO_THRESHOLDS)
    return {
        "map_50": result["map_per_threshold"][0.5],
        "map_50_95": result["map"],
        "images": len(truths),
    }
