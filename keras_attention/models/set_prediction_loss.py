"""DETR's set-prediction loss: Hungarian matching, then class, L1 and GIoU terms.

Layouts (shared by `object_detector`, its loss and `detect`):

- predictions `(batch, Q, num_classes + 1 + 4)`: per query, the logits of
  the `num_classes` classes and of "no object" (last), then the box
  `(cx, cy, w, h)` in `[0, 1]` (image fractions);
- targets `(batch, M, 5)`: per object, its box `(cx, cy, w, h)` and its
  label, `-1` for padding (`pack_detection_targets` builds them).
"""

import keras
from keras import ops

from keras_attention.arguments import argument_error
from keras_attention.models.boxes import center_to_corners
from keras_attention.models.boxes import generalized_box_iou
from keras_attention.models.hungarian_matching import hungarian_matching

_NAME = "SetPredictionLoss"


def pack_detection_targets(boxes, labels):
    """Packs padded boxes and labels into the `(..., M, 5)` target layout.

    Args:
        boxes: `(..., M, 4)` center boxes `(cx, cy, w, h)`.
        labels: `(..., M)` integer labels, `-1` for padding.

    Returns:
        float32 `(..., M, 5)`: `(cx, cy, w, h, label)`.

    Example:

    >>> import numpy as np
    >>> packed = pack_detection_targets(np.array([[0.5, 0.5, 0.2, 0.4]]), np.array([3]))
    >>> np.asarray(packed).tolist()
    [[0.5, 0.5, 0.20000000298023224, 0.4000000059604645, 3.0]]
    """
    boxes = ops.cast(boxes, "float32")
    labels = ops.cast(labels, "float32")
    return ops.concatenate([boxes, ops.expand_dims(labels, -1)], axis=-1)


def split_detections(predictions):
    """`(..., Q, num_classes + 5)` predictions -> `(logits, boxes)`:
    `(..., Q, num_classes + 1)` logits (no-object last) and `(..., Q, 4)`
    center boxes."""
    return predictions[..., :-4], predictions[..., -4:]


def _check(y_true, y_pred):
    if len(y_pred.shape) != 3 or y_pred.shape[-1] is None or y_pred.shape[-1] < 6:
        raise argument_error(
            _NAME,
            "y_pred",
            "must be (batch, queries, num_classes + 1 + 4) with num_classes >= 1",
            f"y_pred.shape={tuple(y_pred.shape)}",
        )
    if len(y_true.shape) != 3 or y_true.shape[-1] != 5:
        raise argument_error(
            _NAME,
            "y_true",
            "must be (batch, max_objects, 5) = (cx, cy, w, h, label) per object "
            "(see pack_detection_targets)",
            f"y_true.shape={tuple(y_true.shape)}",
        )
    if y_pred.shape[1] is not None and y_true.shape[1] is not None and y_true.shape[1] > y_pred.shape[1]:
        raise argument_error(
            _NAME,
            "y_true",
            f"must have at most as many objects as the model has queries ({y_pred.shape[1]})",
            f"y_true.shape={tuple(y_true.shape)}",
        )


def matching_terms(y_true, y_pred):
    """The pairwise terms of the matching cost, all `(batch, Q, M)`.

    Returns:
        `(probability, l1, giou)`: the predicted probability of each
        target's class, the L1 distance of the center boxes, and the GIoU
        of the boxes.
    """
    logits, boxes = split_detections(ops.cast(y_pred, "float32"))
    num_labels = logits.shape[-1]
    labels = ops.cast(ops.round(y_true[..., 4]), "int32")
    target_boxes = ops.cast(y_true[..., :4], "float32")
    probabilities = ops.softmax(logits, axis=-1)
    one_hot = ops.one_hot(ops.maximum(labels, 0), num_labels)  # (batch, M, C + 1)
    probability = ops.einsum("bqc,bmc->bqm", probabilities, one_hot)
    l1 = ops.sum(ops.abs(boxes[:, :, None, :] - target_boxes[:, None, :, :]), axis=-1)
    giou = generalized_box_iou(center_to_corners(boxes), center_to_corners(target_boxes))
    return probability, l1, giou


@keras.saving.register_keras_serializable(package="keras_attention")
class SetPredictionLoss(keras.losses.Loss):
    """DETR's bipartite-matching loss for set prediction.

    For each example, every target object is first assigned to its own
    query by `hungarian_matching` on the cost `-class_weight * p(class) +
    l1_weight * L1 + giou_weight * (-GIoU)`; the assignment carries no
    gradient. The loss is then

    - the cross-entropy of every query's logits against its matched
      target's class, or "no object" for the unmatched queries, weighted
      `1` and `no_object_weight` and averaged with those weights;
    - plus, over the matched pairs, `l1_weight` times the L1 distance of
      the center boxes and `giou_weight` times `1 - GIoU`, summed and
      divided by the example's number of objects (at least 1).

    DETR normalises the box terms by the objects of the whole batch; here
    each example is normalised by its own, so the loss is a per-example
    value that `sample_weight` and the reduction treat like any other.

    Args:
        class_weight: float, weight of the class term in the matching cost
            and of the cross-entropy in the loss.
        l1_weight: float, weight of the L1 box distance.
        giou_weight: float, weight of the GIoU term.
        no_object_weight: float in `(0, 1]`, the cross-entropy weight of
            the queries matched to no object (DETR's `eos_coef`).
        reduction: Keras loss reduction, default `"sum_over_batch_size"`.
        name: the loss name.
        dtype: the loss computation dtype.

    Call arguments:
        y_true: `(batch, M, 5)` targets `(cx, cy, w, h, label)`, label
            `-1` for padding; `M` at most the number of queries.
        y_pred: `(batch, Q, num_classes + 1 + 4)` predictions (class
            logits with no-object last, then the box).

    Returns:
        The reduced loss.

    Example:

    ```python
    model = object_detector(64, num_classes=10, num_queries=8)
    model.compile(optimizer="adam", loss=SetPredictionLoss())
    model.fit(images, pack_detection_targets(boxes, labels))
    ```

    Reference:
        - [Carion et al., 2020, "End-to-End Object Detection with
          Transformers"](https://arxiv.org/abs/2005.12872), section 3.1.
    """

    def __init__(
        self,
        class_weight=1.0,
        l1_weight=5.0,
        giou_weight=2.0,
        no_object_weight=0.1,
        reduction="sum_over_batch_size",
        name="set_prediction_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        for argument, value in (
            ("class_weight", class_weight),
            ("l1_weight", l1_weight),
            ("giou_weight", giou_weight),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise argument_error(_NAME, argument, "must be a number >= 0", f"{argument}={value!r}")
        if (
            isinstance(no_object_weight, bool)
            or not isinstance(no_object_weight, (int, float))
            or not 0 < no_object_weight <= 1
        ):
            raise argument_error(
                _NAME, "no_object_weight", "must be a number in (0, 1]", f"no_object_weight={no_object_weight!r}"
            )
        self.class_weight = float(class_weight)
        self.l1_weight = float(l1_weight)
        self.giou_weight = float(giou_weight)
        self.no_object_weight = float(no_object_weight)

    def match(self, y_true, y_pred):
        """The matched query of each target, int32 `(batch, M)` (`-1` for
        padding), as the loss computes it."""
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        _check(y_true, y_pred)
        probability, l1, giou = matching_terms(y_true, y_pred)
        return self._match(y_true, probability, l1, giou)

    def _match(self, y_true, probability, l1, giou):
        cost = -self.class_weight * probability + self.l1_weight * l1 - self.giou_weight * giou
        return hungarian_matching(cost, valid=y_true[..., 4] >= 0)

    def call(self, y_true, y_pred):
        _check(y_true, y_pred)
        y_true = ops.cast(y_true, "float32")
        probability, l1, giou = matching_terms(y_true, y_pred)
        index = self._match(y_true, probability, l1, giou)
        num_queries = y_pred.shape[1]
        # assigned[b, q, m] = 1 when query q is matched to target m.
        assigned = ops.transpose(ops.one_hot(index, num_queries), (0, 2, 1))  # -1 -> zeros
        matched = ops.sum(assigned, axis=-1)  # (batch, Q), 0 or 1
        logits, _ = split_detections(ops.cast(y_pred, "float32"))
        no_object = logits.shape[-1] - 1
        labels = ops.maximum(y_true[..., 4], 0.0)
        classes = ops.einsum("bqm,bm->bq", assigned, labels) + (1.0 - matched) * no_object
        cross_entropy = ops.sparse_categorical_crossentropy(
            ops.cast(ops.round(classes), "int32"), logits, from_logits=True
        )
        weights = matched + (1.0 - matched) * self.no_object_weight
        class_loss = ops.sum(weights * cross_entropy, axis=1) / ops.sum(weights, axis=1)
        objects = ops.maximum(ops.sum(ops.cast(y_true[..., 4] >= 0, "float32"), axis=1), 1.0)
        box_loss = ops.sum(assigned * (self.l1_weight * l1 + self.giou_weight * (1.0 - giou)), axis=(1, 2))
        return self.class_weight * class_loss + box_loss / objects

    def get_config(self):
        return {
            **super().get_config(),
            "class_weight": self.class_weight,
            "l1_weight": self.l1_weight,
            "giou_weight": self.giou_weight,
            "no_object_weight": self.no_object_weight,
        }
