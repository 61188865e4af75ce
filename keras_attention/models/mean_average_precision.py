"""Mean average precision of object detections, COCO style, in NumPy."""

import numbers

import numpy as np

from keras_attention.arguments import argument_error
from keras_attention.arguments import check_positive_int

COCO_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))
"""The ten IoU thresholds 0.5, 0.55, ..., 0.95 of COCO's mAP@[.5:.95]."""

_RECALL_POINTS = np.linspace(0.0, 1.0, 101)
_NAME = "mean_average_precision"


def average_precision(recall, precision):
    """COCO's 101-point interpolated average precision.

    The precision is first made monotonically non-increasing from the right
    (each point takes the best precision at any higher recall), then read at
    recall 0, 0.01, ..., 1.0: at each point, the precision of the first
    entry whose recall reaches it, or 0 past the largest recall. The AP is
    the mean of those 101 values.

    Args:
        recall: cumulative recall of the ranked detections, non-decreasing,
            `(K,)`.
        precision: cumulative precision at the same ranks, `(K,)`.

    Returns:
        The AP, a float in `[0, 1]` (0 when there are no detections).

    Example:

    >>> round(average_precision([0.5, 1.0], [1.0, 0.5]), 4)
    0.7525

    Reference:
        - [COCO detection evaluation](https://cocodataset.org/#detection-eval);
          `pycocotools.cocoeval.COCOeval.accumulate`.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise argument_error(
            "average_precision",
            "precision",
            f"must have the shape of recall {recall.shape}",
            f"precision of shape {precision.shape}",
        )
    if recall.size == 0:
        return 0.0
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    indices = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(indices < recall.size, precision[np.minimum(indices, recall.size - 1)], 0.0)
    return float(sampled.mean())


def _pairwise_iou(boxes_a, boxes_b):
    """IoU `(N, M)` of corner boxes in float64 NumPy (0 for empty unions)."""
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = inter_w * inter_h

    def area(boxes):
        return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)

    union = area(a) + area(b) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _array(value, argument, index, trailing, dtype):
    """`value` as an array of shape `(K,) + trailing`, or a clear error."""
    received = f"{argument} of image {index}"
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise argument_error(_NAME, argument, f"must hold {dtype.__name__} arrays", f"{received}: {value!r}") from None
    if array.size == 0:
        array = array.reshape((0,) + trailing)
    if array.ndim != 1 + len(trailing) or array.shape[1:] != trailing:
        shape = "(K, 4)" if trailing else "(K,)"
        raise argument_error(
            _NAME, argument, f"must have shape {shape} per image", f"{received} of shape {array.shape}"
        )
    return array


def _images(values, argument, keys):
    if isinstance(values, (dict, str)) or not hasattr(values, "__len__"):
        raise argument_error(
            _NAME, argument, "must be a list with one dict per image", f"{argument} of type {type(values).__name__}"
        )
    for index, image in enumerate(values):
        if not isinstance(image, dict) or any(key not in image for key in keys):
            raise argument_error(
                _NAME,
                argument,
                f"must hold dicts with keys {list(keys)}",
                (
                    f"keys {sorted(image)} at image {index}"
                    if isinstance(image, dict)
                    else f"{argument}[{index}]={image!r}"
                ),
            )
    return list(values)


def _labels(value, argument, index, num_classes):
    labels = _array(value, f"{argument}['labels']", index, (), np.float64)
    if np.any(labels != np.round(labels)) or np.any(labels < 0) or np.any(labels >= num_classes):
        raise argument_error(
            _NAME,
            f"{argument}['labels']",
            f"must be integers in [0, num_classes={num_classes})",
            f"labels {labels.tolist()} at image {index}",
        )
    return labels.astype(np.int64)


def _thresholds(iou_thresholds):
    if isinstance(iou_thresholds, numbers.Real) and not isinstance(iou_thresholds, bool):
        iou_thresholds = (iou_thresholds,)
    try:
        values = tuple(iou_thresholds)
    except TypeError:
        values = ()
    if not values or any(
        isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t <= 1 for t in values
    ):
        raise argument_error(
            _NAME,
            "iou_thresholds",
            "must be a non-empty sequence of numbers in (0, 1]",
            f"iou_thresholds={iou_thresholds!r}",
        )
    return tuple(float(t) for t in values)


def _class_average_precision(detections, ground_truths, label, threshold):
    """AP of one class at one IoU threshold, or NaN without ground truth."""
    num_truths = 0
    candidates = []  # (score, image, detection index), in input order
    for image, (found, truth) in enumerate(zip(detections, ground_truths)):
        num_truths += int(np.sum(truth["labels"] == label))
        for index in np.flatnonzero(found["labels"] == label):
            candidates.append((found["scores"][index], image, index))
    if num_truths == 0:
        return float("nan")
    if not candidates:
        return 0.0
    scores = np.array([score for score, _, _ in candidates])
    order = np.argsort(-scores, kind="stable")
    matched = {}
    is_true = np.zeros(len(candidates), dtype=bool)
    for rank, position in enumerate(order):
        _, image, index = candidates[position]
        truth = ground_truths[image]
        truth_indices = np.flatnonzero(truth["labels"] == label)
        if truth_indices.size == 0:
            continue
        used = matched.setdefault(image, np.zeros(truth_indices.size, dtype=bool))
        ious = _pairwise_iou(detections[image]["boxes"][index : index + 1], truth["boxes"][truth_indices])[0]
        ious = np.where(used | (ious < threshold), -1.0, ious)
        best = int(np.argmax(ious))
        if ious[best] >= 0:
            used[best] = True
            is_true[rank] = True
    true_positives = np.cumsum(is_true)
    false_positives = np.cumsum(~is_true)
    recall = true_positives / num_truths
    precision = true_positives / (true_positives + false_positives)
    return average_precision(recall, precision)


def mean_average_precision(detections, ground_truths, num_classes, iou_thresholds=(0.5,)):
    """Mean average precision of detections against ground truth boxes.

    For every class and IoU threshold, that class's detections over all
    images are ranked by score (descending; ties keep their input order).
    Each one, in turn, is matched to the unmatched ground truth box of the
    same image and class with the highest IoU, if that IoU is at least the
    threshold (a true positive); otherwise, a duplicate of an already
    matched object included, it is a false positive. The cumulative
    precision and recall give the AP (`average_precision`, COCO's 101-point
    interpolation). Classes without any ground truth box have no AP (NaN)
    and are left out of the means; a class with ground truth but no
    detections has AP 0.

    Args:
        detections: a list with one dict per image: `"boxes"` `(K, 4)`
            corner boxes `(x0, y0, x1, y1)`, `"scores"` `(K,)`, `"labels"`
            `(K,)` integers in `[0, num_classes)`.
        ground_truths: a list of the same length, one dict per image:
            `"boxes"` `(G, 4)` and `"labels"` `(G,)`.
        num_classes: the number of classes, a positive integer.
        iou_thresholds: the IoU thresholds to average over, numbers in
            `(0, 1]`; `COCO_THRESHOLDS` gives COCO's mAP@[.5:.95].

    Returns:
        A dict: `"map"`, the mean AP over classes with ground truth and all
        thresholds (NaN if no class has ground truth); `"ap_per_class"`, a
        float64 array `(num_classes,)` of each class's AP averaged over the
        thresholds (NaN for classes without ground truth);
        `"map_per_threshold"`, `{threshold: mAP at that threshold}`.

    Example:

    >>> import numpy as np
    >>> truth = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]]),
    ...           "labels": np.array([0, 1])}]
    >>> found = [{"boxes": np.array([[0, 0, 10, 9], [50, 50, 60, 60]]),
    ...           "scores": np.array([0.9, 0.8]), "labels": np.array([0, 1])}]
    >>> result = mean_average_precision(found, truth, num_classes=2)
    >>> float(result["map"]), result["ap_per_class"].tolist()
    (0.5, [1.0, 0.0])
    >>> round(mean_average_precision(found, truth, 2, COCO_THRESHOLDS)["map"], 2)
    0.45

    Reference:
        - [Lin et al., 2014, "Microsoft COCO: Common Objects in Context"](
          https://arxiv.org/abs/1405.0312);
          [COCO detection evaluation](https://cocodataset.org/#detection-eval).
    """
    check_positive_int(_NAME, "num_classes", num_classes)
    thresholds = _thresholds(iou_thresholds)
    detections = _images(detections, "detections", ("boxes", "scores", "labels"))
    ground_truths = _images(ground_truths, "ground_truths", ("boxes", "labels"))
    if len(detections) != len(ground_truths):
        raise argument_error(
            _NAME,
            "ground_truths",
            f"must have one entry per image of detections ({len(detections)})",
            f"{len(ground_truths)} ground_truths",
        )
    found, truths = [], []
    for index, (image, truth) in enumerate(zip(detections, ground_truths)):
        boxes = _array(image["boxes"], "detections['boxes']", index, (4,), np.float64)
        scores = _array(image["scores"], "detections['scores']", index, (), np.float64)
        labels = _labels(image["labels"], "detections", index, num_classes)
        if not len(boxes) == len(scores) == len(labels):
            raise argument_error(
                _NAME,
                "detections",
                "must have as many boxes, scores and labels per image",
                f"{len(boxes)} boxes, {len(scores)} scores, {len(labels)} labels at image {index}",
            )
        found.append({"boxes": boxes, "scores": scores, "labels": labels})
        truth_boxes = _array(truth["boxes"], "ground_truths['boxes']", index, (4,), np.float64)
        truth_labels = _labels(truth["labels"], "ground_truths", index, num_classes)
        if len(truth_boxes) != len(truth_labels):
            raise argument_error(
                _NAME,
                "ground_truths",
                "must have as many boxes as labels per image",
                f"{len(truth_boxes)} boxes, {len(truth_labels)} labels at image {index}",
            )
        truths.append({"boxes": truth_boxes, "labels": truth_labels})

    table = np.array(
        [[_class_average_precision(found, truths, label, t) for label in range(num_classes)] for t in thresholds]
    )  # (thresholds, classes)
    present = ~np.isnan(table[0])
    ap_per_class = np.full(num_classes, np.nan)
    ap_per_class[present] = table[:, present].mean(axis=0)
    per_threshold = {
        t: float(row[present].mean()) if present.any() else float("nan") for t, row in zip(thresholds, table)
    }
    total = float(table[:, present].mean()) if present.any() else float("nan")
    return {"map": total, "ap_per_class": ap_per_class, "map_per_threshold": per_threshold}
