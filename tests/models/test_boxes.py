
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.models.boxes import box_iou
from keras_attention.models.boxes import center_to_corners
from keras_attention.models.boxes import corners_to_center
from keras_attention.models.boxes import generalized_box_iou


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _reference(boxes_a, boxes_b):
    """IoU and GIoU with plain Python loops in float64."""
    iou = np.zeros((len(boxes_a), len(boxes_b)))
    giou = np.zeros((len(boxes_a), len(boxes_b)))
    for i, (ax0, ay0, ax1, ay1) in enumerate(boxes_a):
        for j, (bx0, by0, bx1, by1) in enumerate(boxes_b):
            inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
            union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
            hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
            iou[i, j] = inter / union
            giou[i, j] = iou[i, j] - (hull - union) / hull
    return iou, giou


def _random_boxes(rng, shape):
    centers = rng.uniform(0, 10, size=shape + (2,))
    sizes = rng.uniform(0.5, 5, size=shape + (2,))
    return np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1)


def _pair(a, b):
    return (
        float(_np(box_iou(np.array([a], "float32"), np.array([b], "float32")))[0, 0]),
        float(_np(generalized_box_iou(np.array([a], "float32"), np.array([b], "float32")))[0, 0]),
    )


def test_hand_computed_cases():
    # Identical boxes.
    assert _pair([1, 2, 4, 6], [1, 2, 4, 6]) == pytest.approx((1.0, 1.0))
    # Disjoint: union 1 + 1 = 2, enclosing box [0, 3] x [0, 1] has area 3,
    # GIoU = 0 - (3 - 2) / 3 = -1/3.
    assert _pair([0, 0, 1, 1], [2, 0, 3, 1]) == pytest.approx((0.0, -1 / 3))
    # Diagonally apart: union 2, enclosing [0, 3] x [0, 3] = 9, GIoU = -7/9.
    assert _pair([0, 0, 1, 1], [2, 2, 3, 3]) == pytest.approx((0.0, -7 / 9))
    # One inside another: IoU = 4 / 16, the enclosing box is the outer one.
    assert _pair([0, 0, 4, 4], [1, 1, 3, 3]) == pytest.approx((0.25, 0.25))
    # Touching edges: no overlap, the hull is exactly the union, GIoU 0.
    assert _pair([0, 0, 1, 1], [1, 0, 2, 1]) == pytest.approx((0.0, 0.0))
    # Partial overlap: intersection 1 x 2 = 2, union 4 + 4 - 2 = 6,
    # hull 3 x 2 = 6: IoU = GIoU = 1/3.
    assert _pair([0, 0, 2, 2], [1, 0, 3, 2]) == pytest.approx((1 / 3, 1 / 3))
    # Overlap with slack: [0,2]^2 and [1,3]^2: intersection 1, union 7,
    # hull 9: GIoU = 1/7 - 2/9.
    assert _pair([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx((1 / 7, 1 / 7 - 2 / 9))


def test_zero_area_boxes_are_finite():
    point = [1.0, 1.0, 1.0, 1.0]
    line = [0.0, 0.0, 2.0, 0.0]
    box = [0.0, 0.0, 2.0, 2.0]
    boxes = np.array([point, line, box], "float32")
    iou = _np(box_iou(boxes, boxes))
    giou = _np(generalized_box_iou(boxes, boxes))
    assert np.all(np.isfinite(iou)) and np.all(np.isfinite(giou))
    assert np.all(giou >= -1) and np.all(giou <= 1)
    np.testing.assert_allclose(iou[:2, :], 0.0)  # zero-area boxes overlap nothing
    assert iou[2, 2] == pytest.approx(1.0)
    # A point against itself: zero-area hull, GIoU 0 by convention.
    assert giou[0, 0] == pytest.approx(0.0)
    # The line against itself: zero union, zero hull: 0.
    assert giou[1, 1] == pytest.approx(0.0)
    # A point inside the box: IoU 0, hull = box = union: GIoU 0.
    assert giou[0, 2] == pytest.approx(0.0)
    # A point outside [0,2]^2 at (3,3): union 4, hull 9: GIoU = -5/9.
    assert _pair([3, 3, 3, 3], box)[1] == pytest.approx(-5 / 9)


def test_matches_a_numpy_loop_on_random_boxes():
    rng = np.random.default_rng(0)
    boxes_a, boxes_b = _random_boxes(rng, (7,)), _random_boxes(rng, (5,))
    iou, giou = _reference(boxes_a, boxes_b)
    assert (iou > 0).any() and (iou == 0).any()  # both cases are exercised
    np.testing.assert_allclose(_np(box_iou(boxes_a, boxes_b)), iou, atol=1e-5)
    np.testing.assert_allclose(_np(generalized_box_iou(boxes_a, boxes_b)), giou, atol=1e-5)
    # Symmetric: swapping the arguments transposes the matrix.
    np.testing.assert_allclose(_np(generalized_box_iou(boxes_b, boxes_a)), giou.T, atol=1e-5)


def test_batched_shapes():
    rng = np.random.default_rng(1)
    boxes_a, boxes_b = _random_boxes(rng, (2, 3, 4)), _random_boxes(rng, (2, 3, 6))
    iou = _np(box_iou(boxes_a, boxes_b))
    giou = _np(generalized_box_iou(tf.constant(boxes_a), tf.constant(boxes_b)))
    assert iou.shape == giou.shape == (2, 3, 4, 6)
    for i in range(2):
        for j in range(3):
            expected_iou, expected_giou = _reference(boxes_a[i, j], boxes_b[i, j])
            np.testing.assert_allclose(iou[i, j], expected_iou, atol=1e-5)
            np.testing.assert_allclose(giou[i, j], expected_giou, atol=1e-5)


def test_conversion_round_trip_and_values():
    rng = np.random.default_rng(2)
    corners = _random_boxes(rng, (3, 5))
    center = _np(corners_to_center(corners))
    assert center.shape == (3, 5, 4)
    np.testing.assert_allclose(center[..., :2], (corners[..., :2] + corners[..., 2:]) / 2, atol=1e-5)
    np.testing.assert_allclose(center[..., 2:], corners[..., 2:] - corners[..., :2], atol=1e-5)
    np.testing.assert_allclose(_np(center_to_corners(center)), corners, atol=1e-5)
    np.testing.assert_allclose(_np(center_to_corners(np.array([[5.0, 5.0, 4.0, 2.0]]))), [[3.0, 4.0, 7.0, 6.0]])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_are_computed_in_float32(dtype):
    boxes_a = np.array([[0.0, 0.0, 2.0, 2.0]])
    boxes_b = np.array([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    low_a, low_b = keras.ops.cast(boxes_a, dtype), keras.ops.cast(boxes_b, dtype)
    for fn in (box_iou, generalized_box_iou, center_to_corners, corners_to_center):
        args = (low_a, low_b) if fn in (box_iou, generalized_box_iou) else (low_b,)
        assert keras.backend.standardize_dtype(fn(*args).dtype) == "float32"
    # 1/7 - 2/9 is not representable in float16; float32 math keeps it to 1e-6.
    np.testing.assert_allclose(_np(generalized_box_iou(low_a, low_b)), [[1 / 7 - 2 / 9, 1.0]], atol=1e-6)


def test_giou_loss_gradients_are_finite_under_xla():
    rng = np.random.default_rng(3)
    targets = tf.constant(_random_boxes(rng, (2, 4)), tf.float32)
    predicted = _random_boxes(rng, (2, 4))
    predicted[0, 0] = [1.0, 1.0, 1.0, 1.0]  # a zero-area prediction
    predicted[0, 1] = targets[0, 1].numpy()  # a perfect prediction
    predicted = tf.Variable(predicted, dtype=tf.float32)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            giou = generalized_box_iou(predicted[:, :, None, :], targets[:, :, None, :])[..., 0, 0]
            loss = tf.reduce_mean(1.0 - giou)
        return loss, tape.gradient(loss, predicted)

    loss, grad = step()
    assert np.isfinite(float(loss))
    assert grad.shape == (2, 4, 4)
    assert np.all(np.isfinite(grad.numpy()))
    assert np.abs(grad.numpy()).sum() > 0
    eager = 1.0 - _np(generalized_box_iou(predicted.numpy()[:, :, None], targets.numpy()[:, :, None]))[..., 0, 0]
    assert float(loss) == pytest.approx(float(eager.mean()), abs=1e-5)
    # Gradient descent on 1 - GIoU moves disjoint boxes towards their targets.
    optimizer = keras.optimizers.SGD(5.0)
    for _ in range(60):
        optimizer.apply_gradients([(step()[1], predicted)])
    assert float(step()[0]) < float(loss) - 0.2


def test_gradients_of_degenerate_pairs_are_finite():
    # Zero union and zero hull: the where-guarded divisions must not leak NaN
    # into the gradient.
    point = tf.Variable([[2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 3.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(1.0 - generalized_box_iou(point, point)) + tf.reduce_sum(box_iou(point, point))
    grad = tape.gradient(loss, point).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))


