"""Box geometry for object detection: format conversion, IoU and GIoU.

Every function takes NumPy arrays or tensors, works over any leading (batch)
axes, computes in float32 (float16 / bfloat16 inputs are upcast) and traces
under `tf.function(jit_compile=True)`. Corner boxes are `(x0, y0, x1, y1)`
with `x0 <= x1` and `y0 <= y1`; center boxes are `(cx, cy, w, h)`.
"""

from keras import ops


def _split(boxes):
    boxes = ops.cast(boxes, "float32")
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def center_to_corners(boxes):
    """Converts `(cx, cy, w, h)` boxes to `(x0, y0, x1, y1)`.

    Args:
        boxes: `(..., 4)` center boxes.

    Returns:
        float32 tensor `(..., 4)` of corner boxes.

    Example:

    >>> import numpy as np
    >>> np.asarray(center_to_corners(np.array([[2.0, 3.0, 2.0, 4.0]]))).tolist()
    [[1.0, 1.0, 3.0, 5.0]]
    """
    cx, cy, w, h = _split(boxes)
    return ops.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def corners_to_center(boxes):
    """Converts `(x0, y0, x1, y1)` boxes to `(cx, cy, w, h)`.

    Args:
        boxes: `(..., 4)` corner boxes.

    Returns:
        float32 tensor `(..., 4)` of center boxes.

    Example:

    >>> import numpy as np
    >>> np.asarray(corners_to_center(np.array([[1.0, 1.0, 3.0, 5.0]]))).tolist()
    [[2.0, 3.0, 2.0, 4.0]]
    """
    x0, y0, x1, y1 = _split(boxes)
    return ops.stack([0.5 * (x0 + x1), 0.5 * (y0 + y1), x1 - x0, y1 - y0], axis=-1)


def _safe_divide(numerator, denominator):
    """`numerator / denominator`, 0 where the denominator is not positive
    (with finite gradients there too)."""
    positive = denominator > 0
    safe = ops.where(positive, denominator, ops.ones_like(denominator))
    return ops.where(positive, numerator / safe, ops.zeros_like(numerator))


def _pairwise(boxes_a, boxes_b):
    """Areas, intersections and enclosing areas of every pair, `(..., N, M)`."""
    ax0, ay0, ax1, ay1 = _split(boxes_a)
    bx0, by0, bx1, by1 = _split(boxes_b)
    area_a = ops.maximum(ax1 - ax0, 0.0) * ops.maximum(ay1 - ay0, 0.0)
    area_b = ops.maximum(bx1 - bx0, 0.0) * ops.maximum(by1 - by0, 0.0)
    ax0, ay0, ax1, ay1 = (ops.expand_dims(v, -1) for v in (ax0, ay0, ax1, ay1))
    bx0, by0, bx1, by1 = (ops.expand_dims(v, -2) for v in (bx0, by0, bx1, by1))
    inter_w = ops.maximum(ops.minimum(ax1, bx1) - ops.maximum(ax0, bx0), 0.0)
    inter_h = ops.maximum(ops.minimum(ay1, by1) - ops.maximum(ay0, by0), 0.0)
    intersection = inter_w * inter_h
    union = ops.expand_dims(area_a, -1) + ops.expand_dims(area_b, -2) - intersection
    hull_w = ops.maximum(ops.maximum(ax1, bx1) - ops.minimum(ax0, bx0), 0.0)
    hull_h = ops.maximum(ops.maximum(ay1, by1) - ops.minimum(ay0, by0), 0.0)
    return intersection, union, hull_w * hull_h


def box_iou(boxes_a, boxes_b):
    """Pairwise intersection over union of corner boxes.

    `IoU = |A n B| / |A u B|`; a pair whose union has zero area (two
    zero-area boxes) gives 0, never NaN.

    Args:
        boxes_a: `(..., N, 4)` corner boxes.
        boxes_b: `(..., M, 4)` corner boxes (leading axes broadcast with
            `boxes_a`'s).

    Returns:
        float32 tensor `(..., N, M)` in `[0, 1]`.

    Example:

    >>> import numpy as np
    >>> a = np.array([[0.0, 0.0, 2.0, 2.0]])
    >>> b = np.array([[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    >>> np.asarray(box_iou(a, b), 'float64').round(4).tolist()
    [[0.3333, 0.0]]
    """
    intersection, union, _ = _pairwise(boxes_a, boxes_b)
    return _safe_divide(intersection, union)


def generalized_box_iou(boxes_a, boxes_b):
    """Pairwise generalized IoU of corner boxes.

    `GIoU = IoU - |C \\ (A u B)| / |C|`, where `C` is the smallest box
    enclosing both. It is 1 for identical boxes and falls towards -1 as
    disjoint boxes move apart, so `1 - GIoU` gives a gradient even without
    overlap. Pairs with a zero-area enclosing box (the same point twice)
    give 0; the value is always finite and in `[-1, 1]`.

    Args:
        boxes_a: `(..., N, 4)` corner boxes.
        boxes_b: `(..., M, 4)` corner boxes (leading axes broadcast with
            `boxes_a`'s).

    Returns:
        float32 tensor `(..., N, M)` in `[-1, 1]`.

    Example:

    >>> import numpy as np
    >>> a = np.array([[0.0, 0.0, 1.0, 1.0]])
    >>> b = np.array([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    >>> np.asarray(generalized_box_iou(a, b), 'float64').round(4).tolist()
    [[1.0, -0.3333]]

    Reference:
        - [Rezatofighi et al., 2019, "Generalized Intersection over Union"](
          https://arxiv.org/abs/1902.09630).
    """
    intersection, union, hull = _pairwise(boxes_a, boxes_b)
    iou = _safe_divide(intersection, union)
    return iou - _safe_divide(hull - union, hull)
