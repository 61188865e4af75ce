import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

from keras_attention.models import set_prediction_loss as loss_module
from keras_attention.models.set_prediction_loss import SetPredictionLoss
from keras_attention.models.set_prediction_loss import pack_detection_targets

NUM_CLASSES = 4


def _corners(b):
    return np.stack([b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2,
                     b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2], -1)


def _giou(a, b):
    """GIoU of two corner boxes, float64, written out."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def reference(y_true, y_pred, wc=1.0, wl=5.0, wg=2.0, eos=0.1):
    """DETR's loss for one example at a time in float64, matched by SciPy."""
    losses = []
    for target, pred in zip(y_true.astype(np.float64), y_pred.astype(np.float64)):
        logits, boxes = pred[:, :-4], pred[:, -4:]
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        objects = target[target[:, 4] >= 0]
        labels = objects[:, 4].astype(int)
        pc, tc = _corners(boxes), _corners(objects[:, :4])
        cost = np.zeros((len(pred), len(objects)))
        l1 = np.zeros_like(cost)
        giou = np.zeros_like(cost)
        for q in range(len(pred)):
            for m in range(len(objects)):
                l1[q, m] = np.abs(boxes[q] - objects[m, :4]).sum()
                giou[q, m] = _giou(pc[q], tc[m])
                cost[q, m] = -wc * p[q, labels[m]] + wl * l1[q, m] - wg * giou[q, m]
        rows, cols = linear_sum_assignment(cost)
        classes = np.full(len(pred), logits.shape[1] - 1)
        classes[rows] = labels[cols]
        weights = np.where(np.isin(np.arange(len(pred)), rows), 1.0, eos)
        ce = -np.log(p[np.arange(len(pred)), classes])
        class_loss = (weights * ce).sum() / weights.sum()
        box = (wl * l1[rows, cols] + wg * (1 - giou[rows, cols])).sum() / max(len(objects), 1)
        losses.append(wc * class_loss + box)
    return np.array(losses)


def _batch(seed=0, batch=5, queries=6, objects=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (batch, queries, NUM_CLASSES + 1))
    centers = rng.uniform(0.2, 0.8, (batch, queries, 2))
    sizes = rng.uniform(0.05, 0.4, (batch, queries, 2))
    y_pred = np.concatenate([logits, centers, sizes], -1).astype("float32")
    boxes = np.concatenate([rng.uniform(0.2, 0.8, (batch, objects, 2)),
                            rng.uniform(0.05, 0.4, (batch, objects, 2))], -1)
    labels = rng.integers(0, NUM_CLASSES, (batch, objects))
    labels[1, 1:] = -1  # one object
    labels[2, :] = -1  # no object at all
    boxes[labels < 0] = 0.0
    return np.asarray(pack_detection_targets(boxes, labels)), y_pred


def test_matches_the_numpy_and_scipy_reference():
    y_true, y_pred = _batch()
    loss = SetPredictionLoss(reduction=None)
    np.testing.assert_allclose(np.asarray(loss(y_true, y_pred)), reference(y_true, y_pred), rtol=1e-4, atol=1e-5)
    weighted = SetPredictionLoss(class_weight=2.0, l1_weight=1.0, giou_weight=3.0, no_object_weight=0.5, reduction=None)
    np.testing.assert_allclose(
        np.asarray(weighted(y_true, y_pred)), reference(y_true, y_pred, 2.0, 1.0, 3.0, 0.5), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(float(SetPredictionLoss()(y_true, y_pred)), reference(y_true, y_pred).mean(), rtol=1e-4)


def test_under_xla_with_gradients():
    y_true, y_pred = _batch(seed=1)
    loss = SetPredictionLoss(reduction=None)

    @tf.function(jit_compile=True)
    def step(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss(y_true, y_pred)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, y_pred)

    value, gradient = step(tf.constant(y_true), tf.constant(y_pred))
    np.testing.assert_allclose(value.numpy(), reference(y_true, y_pred), rtol=1e-4, atol=1e-5)
    gradient = gradient.numpy()
    assert np.all(np.isfinite(gradient))
    # Central differences on a few entries (the matching is locally constant).
    eps = 1e-3
    rng = np.random.default_rng(3)
    for _ in range(6):
        b, q, c = rng.integers(0, y_pred.shape[0]), rng.integers(0, y_pred.shape[1]), rng.integers(0, y_pred.shape[2])
        plus, minus = y_pred.copy(), y_pred.copy()
        plus[b, q, c] += eps
        minus[b, q, c] -= eps
        numeric = (reference(y_true, plus).sum() - reference(y_true, minus).sum()) / (2 * eps)
        assert abs(numeric - gradient[b, q, c]) < 2e-2 * max(1.0, abs(numeric)), (b, q, c, numeric, gradient[b, q, c])


def test_an_image_without_objects_only_asks_for_no_object():
    y_true, y_pred = _batch()
    values = np.asarray(SetPredictionLoss(reduction=None)(y_true, y_pred))
    logits = y_pred[2, :, :-4].astype(np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    np.testing.assert_allclose(values[2], -log_p[:, -1].mean(), rtol=1e-5)


def test_perfect_predictions_cost_only_the_class_term():
    y_true, _ = _batch()
    batch, objects = y_true.shape[:2]
    queries = 5
    y_pred = np.zeros((batch, queries, NUM_CLASSES + 5), np.float32)
    y_pred[:, :, NUM_CLASSES] = 30.0  # no object
    y_pred[:, :, -4:] = 0.5
    order = [4, 0, 2]  # targets go to queries 4, 0, 2, in that order
    for b in range(batch):
        for m in range(objects):
            label = int(y_true[b, m, 4])
            if label >= 0:
                y_pred[b, order[m], :NUM_CLASSES + 1] = 0.0
                y_pred[b, order[m], label] = 30.0
                y_pred[b, order[m], -4:] = y_true[b, m, :4]
    loss = SetPredictionLoss(reduction=None)
    assert np.asarray(loss(y_true, y_pred)).max() < 1e-6
    index = np.asarray(loss.match(y_true, y_pred))
    expected = np.where(y_true[..., 4] >= 0, np.array(order)[None, :], -1)
    np.testing.assert_array_equal(index, expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_predictions_are_scored_in_float32(dtype):
    y_true, y_pred = _batch(seed=2)
    rounded = np.asarray(keras.ops.cast(keras.ops.cast(y_pred, dtype), "float32"))
    value = SetPredictionLoss(reduction=None)(y_true, keras.ops.cast(y_pred, dtype))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(value), reference(y_true, rounded), rtol=1e-4, atol=1e-4)


def test_config_round_trip():
    loss = SetPredictionLoss(class_weight=2.0, l1_weight=3.0, giou_weight=1.0, no_object_weight=0.2)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, SetPredictionLoss)
    assert restored.get_config() == loss.get_config()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(l1_weight=-1.0), r"SetPredictionLoss.*`l1_weight`.*>= 0.*l1_weight=-1.0"),
        (dict(giou_weight="2"), r"SetPredictionLoss.*`giou_weight`.*giou_weight='2'"),
        (dict(no_object_weight=0.0), r"SetPredictionLoss.*`no_object_weight`.*\(0, 1\].*no_object_weight=0.0"),
    ],
)
def test_bad_weights(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SetPredictionLoss(**kwargs)


def test_bad_shapes():
    y_true, y_pred = _batch()
    loss = SetPredictionLoss()
    with pytest.raises(ValueError, match=r"SetPredictionLoss.*`y_true`.*\(cx, cy, w, h, label\).*y_true.shape=\(5, 3, 4\)"):
        loss(y_true[..., :4], y_pred)
    with pytest.raises(ValueError, match=r"SetPredictionLoss.*`y_pred`.*num_classes \+ 1 \+ 4.*y_pred.shape=\(5, 6\)"):
        loss(y_true, y_pred[:, :, 0])
    with pytest.raises(ValueError, match=r"SetPredictionLoss.*`y_true`.*at most as many objects as the model has queries \(2\)"):
        loss(y_true, y_pred[:, :2])


def test_doctest():
    assert doctest.testmod(loss_module, verbose=False).failed == 0
